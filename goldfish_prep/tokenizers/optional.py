"""The boundary to tokenizer libraries: optional imports, and their errors in one line.

Only tiktoken is a hard dependency (the default tokenizer ships with it).
Hugging Face tokenizers/transformers, Jinja2 (chat templates) and SentencePiece
are extras, imported only when a spec needs them, so ``import goldfish_prep``
stays light and a missing library is a one-line error naming the extra that
installs it, not an ImportError traceback (tests/test_optional_deps.py runs
each command that needs an extra without it).
The libraries' own errors can span lines (Rust and C++ contexts, URLs); they
are quoted as the cause of a ``TokenizerError``, on one line.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from goldfish_prep.errors import ConfigError, TokenizerError


def import_optional(module: str, extra: str, spec: str, package: str | None = None) -> ModuleType:
    """The module ``module``, or a ``TokenizerError`` naming ``package`` (by default ``module``) and ``pip install 'goldfish-prep[extra]'``.

    >>> import_optional("json", "hf", "tokenizer.json").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise TokenizerError(
            f"tokenizer {spec!r} needs the Python package {package or module!r}, {_why(module, error)}. Fix: pip install 'goldfish-prep[{extra}]'"
        ) from error


def import_for(module: str, extra: str, purpose: str) -> ModuleType:
    """The module ``module``, or a ``ConfigError`` saying that ``purpose`` (an option, a task) needs it and which extra installs it.

    >>> import_for("no_such_module", "plot", "--plot")
    Traceback (most recent call last):
    ...
    goldfish_prep.errors.ConfigError: --plot needs the Python package 'no_such_module', which is not installed. Fix: pip install 'goldfish-prep[plot]'
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ConfigError(
            f"{purpose} needs the Python package {module!r}, {_why(module, error)}. Fix: pip install 'goldfish-prep[{extra}]'"
        ) from error


def _why(module: str, error: ImportError) -> str:
    """ "which is not installed" when the package itself is missing; else the import's own cause (a broken install)."""
    if isinstance(error, ModuleNotFoundError) and error.name is not None and module.startswith(error.name):
        return "which is not installed"
    return f"which failed to import ({one_line(error)})"


def one_line(error: BaseException, limit: int = 300) -> str:
    """``error`` as ``Type: message`` on one line, cut at ``limit`` characters.

    >>> one_line(ValueError("bad\\n  thing"))
    'ValueError: bad thing'
    """
    text = f"{type(error).__name__}: {' '.join(str(error).split())}"
    return text if len(text) <= limit else text[: limit - 3] + "..."
