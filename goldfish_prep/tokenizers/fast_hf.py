"""HF tokenizers that tiktoken can run exactly: the fast engine for ``tokenizer.json``.

``bytelevel_bpe.plan_tiktoken`` decides whether a HF tokenizer is exactly a
tiktoken encoding; when it is, ``TiktokenEncodedHF`` encodes with tiktoken
(about 4-6x HF ``tokenizers`` on one core) and keeps the HF tokenizer for
everything else, loaded only when needed: ``decode`` and ``token_pieces``
(so ``show`` displays exactly as before), and texts tiktoken refuses (lone
surrogates), which HF handles as it always did. Its ``kind`` stays ``"hf"``
and its vocabulary parts are the same files, so its fingerprint is the one
the HF engine gives (the probe ids are identical by construction, and the
conformance tests check it).

The decision and the facts a run needs before its first document (ranks,
split pattern, vocab size, BOS/EOS and whether BOS is added) are cached by
content (``cache``): a ``tokenizer.json`` spec that was seen before starts
without loading HF ``tokenizers`` at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tiktoken

from goldfish_prep import __version__
from goldfish_prep.errors import TokenizerError
from goldfish_prep.tokenizers.base import Tokenizer
from goldfish_prep.tokenizers.bytelevel_bpe import NotExact, TiktokenPlan, plan_tiktoken
from goldfish_prep.tokenizers.cache import content_key, read_entry, write_entry
from goldfish_prep.tokenizers.hf import HFTokenizer, file_parts, load_hf_file
from goldfish_prep.tokenizers.identity import AdapterIdentity, name_for
from goldfish_prep.tokenizers.optional import import_optional
from goldfish_prep.tokenizers.spelling import tiktoken_spelling
from goldfish_prep.tokenizers.status import first_build_status


class TiktokenEncodedHF(AdapterIdentity):
    """A HF byte-level BPE tokenizer whose ``encode_batch`` runs in tiktoken, with identical ids."""

    engine = "tiktoken"

    def __init__(
        self,
        spec: str,
        facts: dict[str, Any],
        encoding: tiktoken.Encoding,
        files: Sequence[Path],
        reference: Callable[[], HFTokenizer],
    ) -> None:
        super().__init__(spec, "hf", facts["name"], facts["vocab_size"], facts["bos_id"], facts["eos_id"], facts["default_add_bos"])
        self._encoding = encoding
        self._files = list(files)
        self._load_reference = reference
        self._reference: HFTokenizer | None = None

    def reference(self) -> HFTokenizer:
        """The HF tokenizer itself (loaded on first use)."""
        if self._reference is None:
            self._reference = self._load_reference()
        return self._reference

    def encode_batch(self, texts: Sequence[str]) -> list[npt.NDArray[np.int32]]:
        encoded: list[npt.NDArray[np.int32]] = []
        for text in texts:
            try:
                # no special tokens are registered: special-token text is ordinary text, as in the HF adapter
                ids = self._encoding.encode_to_numpy(text, allowed_special=set(), disallowed_special=())
            except UnicodeEncodeError:  # lone surrogates: whatever HF does with them, do the same
                encoded.append(self.reference().encode_batch([text])[0])
                continue
            encoded.append(ids.astype(np.int32))  # uint32 -> int32: ids < vocab_size <= 2**31
        return encoded

    def chat_backend(self) -> Any:
        """The HF tokenizer's backend: chat rendering needs its offsets and its parsing of special-token text."""
        return self.reference().chat_backend()

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """The named special tokens a chat template sees, as the HF tokenizer has them."""
        return self.reference().special_tokens_map

    def decode(self, ids: Sequence[int]) -> str:
        return self.reference().decode(ids)

    def token_pieces(self, ids: Sequence[int]) -> list[str]:
        return self.reference().token_pieces(ids)

    def spelled_bytes(self) -> list[bytes]:
        # the same ids and bytes as the HF vocabulary (the fast path exists only when they are), read from tiktoken's ranks
        return tiktoken_spelling(self._encoding, self.vocab_size)

    def vocabulary_parts(self) -> Iterable[bytes]:
        if self._files:
            return file_parts(self._files)
        return self.reference().vocabulary_parts()


def load_hf_file_fast(spec: str, path: Path, required: bool) -> Tokenizer:
    """A ``tokenizer.json`` through tiktoken when exact, else HF (or a ``TokenizerError`` if ``required``)."""
    config_path = path.with_name("tokenizer_config.json")
    files = [path, config_path] if config_path.is_file() else [path]
    key = _key(spec, b"file", files)
    cached = read_entry(key)
    if cached is not None:
        facts, ranks = cached
        if ranks is None:
            _refuse_or_pass(spec, facts["not_exact"], required)
            return load_hf_file(spec, path)
        encoding = _encoding(spec, facts["pattern"], ranks)
        # the key is the content: the same files elsewhere hit it, so the name comes from this path
        facts = {**facts, "name": name_for(path)}
        return TiktokenEncodedHF(spec, facts, encoding, files, lambda: load_hf_file(spec, path))
    with first_build_status(spec):  # seconds for a large vocabulary, once: say so on a terminal
        return with_fast_path(load_hf_file(spec, path), required, key)


def with_fast_path(reference: HFTokenizer, required: bool, key: str | None = None) -> Tokenizer:
    """``reference`` encoded by tiktoken when that is exact, else ``reference`` itself."""
    if key is None and reference.files:
        # a folder goes through transformers, whose version can change the tokenizer it builds
        key = _key(reference.spec, b"loaded " + _transformers_version().encode(), reference.files)
    cached = read_entry(key) if key is not None else None
    if cached is None:
        with first_build_status(reference.spec):
            facts, plan = _analyse(reference, key)
    else:
        facts, ranks = {**cached[0], "name": reference.name}, cached[1]
        plan = TiktokenPlan(facts["pattern"], ranks) if ranks is not None else None
    if plan is None:
        _refuse_or_pass(reference.spec, facts["not_exact"], required)
        return reference
    fast = TiktokenEncodedHF(reference.spec, facts, _encoding(reference.spec, plan.pattern, plan.ranks), reference.files, lambda: reference)
    fast._reference = reference
    return fast


def _analyse(reference: HFTokenizer, key: str | None) -> tuple[dict[str, Any], TiktokenPlan | None]:
    """The facts to cache and the plan (None when not exact, the reason then in ``facts``); stores them."""
    facts = _facts(reference)
    try:
        plan = plan_tiktoken(json.loads(reference.backend.to_str()), _bpe_runner(reference))
    except NotExact as error:
        facts["not_exact"] = str(error)
        if key is not None:
            write_entry(key, facts, None)
        return facts, None
    facts["pattern"] = plan.pattern
    if key is not None:
        write_entry(key, facts, plan.ranks)
    return facts, plan


def _facts(reference: HFTokenizer) -> dict[str, Any]:
    return {
        "name": reference.name,
        "vocab_size": reference.vocab_size,
        "bos_id": reference.bos_id,
        "eos_id": reference.eos_id,
        "default_add_bos": reference.default_add_bos,
    }


def _refuse_or_pass(spec: str, reason: str, required: bool) -> None:
    if required:
        raise TokenizerError(
            f"tokenizer {spec!r} cannot run on a faster engine with identical ids: {reason}. "
            "Fix: use --tokenizer-backend auto (or hf), which runs it with HF tokenizers"
        )


def _key(spec: str, kind: bytes, files: Sequence[Path]) -> str:
    # the key names the tokenizers version, so the hf extra is checked here, before its first use
    tokenizers = import_optional("tokenizers", "hf", spec)
    versions = f"{__version__} tokenizers {tokenizers.__version__} tiktoken {tiktoken.__version__}".encode()
    return content_key([kind, versions, *file_parts(files)])


def _transformers_version() -> str:
    try:
        import transformers
    except ImportError:
        return "none"
    return str(transformers.__version__)


def _encoding(spec: str, pattern: str, ranks: dict[bytes, int]) -> tiktoken.Encoding:
    try:
        return tiktoken.Encoding(name=f"exact:{name_for(Path(spec))}", pat_str=pattern, mergeable_ranks=ranks, special_tokens={})
    except Exception as error:  # the Rust core raises several types for a pattern it cannot compile
        raise TokenizerError(
            f"tokenizer {spec!r}: tiktoken rejected the translated tokenizer ({error}). Fix: use --tokenizer-backend hf"
        ) from error


def _bpe_runner(reference: HFTokenizer) -> Callable[[list[str]], list[list[int]]]:
    """The HF BPE model alone, on byte-level strings (no pre-tokenizer, no added tokens)."""

    def run(words: list[str]) -> list[list[int]]:
        import tokenizers

        bare = tokenizers.Tokenizer(reference.backend.model)
        encoded = bare.encode_batch([[word] for word in words], is_pretokenized=True, add_special_tokens=False)
        return [list(e.ids) for e in encoded]

    return run
