"""The boundary to tokenizer libraries: optional imports, and their errors in one line.

Only tiktoken is a hard dependency (the default tokenizer ships with it).
Hugging Face tokenizers/transformers and SentencePiece are extras, imported
only when a spec needs them, so ``import goldfish_prep`` stays light and a
missing library is a one-line error with the fix, not an ImportError traceback.
The libraries' own errors can span lines (Rust and C++ contexts, URLs); they
are quoted as the cause of a ``TokenizerError``, on one line.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from goldfish_prep.errors import TokenizerError


def import_optional(module: str, extra: str, spec: str) -> ModuleType:
    """The module ``module``, or a ``TokenizerError`` naming ``pip install 'goldfish-prep[extra]'``.

    >>> import_optional("json", "hf", "tokenizer.json").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise TokenizerError(
            f"tokenizer {spec!r} needs the Python package {module!r}, which is not installed ({error}). "
            f"Fix: pip install 'goldfish-prep[{extra}]'"
        ) from error


def one_line(error: BaseException, limit: int = 300) -> str:
    """``error`` as ``Type: message`` on one line, cut at ``limit`` characters.

    >>> one_line(ValueError("bad\\n  thing"))
    'ValueError: bad thing'
    """
    text = f"{type(error).__name__}: {' '.join(str(error).split())}"
    return text if len(text) <= limit else text[: limit - 3] + "..."
