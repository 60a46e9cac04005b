"""The fast ``robust`` kernel against the plain-Python reference, where its shortcuts could go wrong.

The kernel gathers each token's normalised characters from a per-id table
(``NormalisedPieces``) and only decodes tokens that split a UTF-8 character, run
by run; " " and "-" runs are collapsed inside each table entry and then across
token boundaries; batches are cut into blocks of whole documents. Each of these
is exact only by an argument (normalised_pieces.py), so these tests aim random
and hand-made inputs at the edges: characters split over several tokens with
empty tokens between them, a document opening with continuation bytes, runs of
spaces and hyphens across tokens and documents, tokens whose whole text
collapses away, many short documents per block, and blocks cut small.

Every test here runs three times: with the numpy kernel, with the compiled scan
(``robust_compiled``, numba), and with the same scan built as LLVM IR
(``robust_llvm``, the default), which read the same table and must give the
same bytes; all are held to the reference, and to each other on real text,
under spec v1 and v2 alike (v2 decides a document's head on partial windows).
"""

from __future__ import annotations

import json
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from goldfish_prep import MaskConfig
from goldfish_prep.strategies import robust, robust_compiled, robust_kernels, robust_llvm, robust_windows
from goldfish_prep.strategies.id_rows import TokenTable, cached_rows, id_rows
from goldfish_prep.strategies.normalised_pieces import NormalisedPieces
from goldfish_prep.strategies.normalize import word_table
from goldfish_prep.strategies.robust import TokenBytes, decide
from goldfish_prep.strategies.robust_windows import normalised_tokens
from goldfish_prep.tokenizers import load_tokenizer
from goldfish_prep.tokenizers.token_bytes import token_bytes
from tests.near_copies import edit
from tests.reference_robust import normalise_one, reference_decisions, reference_normalised

#: a hand-made vocabulary aimed at the kernel's edges
# fmt: off
EDGES = [
    b"a", b"Word", b" ", b"  ", b"\n\n", b"-", b"--", b" -", b"x ", b"- ", b"",  # runs across tokens, empty
    b"\xe7\xac", b"\x8a\xb6", b"\x8a", b"\xe7", b"\xac\x8a", b"\xac",  # U+7B0A spelled in pieces, and stray pieces of it
    b"\xe2\x80", b"\x94", b"\xe2\x80\x94", b" \xe2\x80", b"\x94 ",  # an em dash whole and split (normalises to "-")
    b"A\xc2", b"\xa0b", b"\xc2\xa0", b"\xff", b"\xc0\xaf",  # NBSP split, invalid bytes
    b"\xc2\xad", b"\xef\xac\x81", b"\xe4\xb8\xad\xe6\x96\x87", b"E\xcc\x81", b"\xc3\x89",  # soft hyphen, ligature, CJK, accents
    b"\xf0\x9f", b"\x90\x9f", b"\xf0\x9f\x90\x9f",  # an astral character whole and split
]
# fmt: on


@pytest.fixture(scope="module", params=["numpy", "compiled", "llvm"], autouse=True)
def kernel(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the module under each kernel (module-scoped: hypothesis tests take no function-scoped fixture)."""
    if request.param == "compiled":
        pytest.importorskip("numba")
    if request.param == "llvm":
        pytest.importorskip("llvmlite")
    before = os.environ.get(robust_compiled.KERNEL_VARIABLE)
    os.environ[robust_compiled.KERNEL_VARIABLE] = request.param
    yield request.param
    if before is None:
        del os.environ[robust_compiled.KERNEL_VARIABLE]
    else:
        os.environ[robust_compiled.KERNEL_VARIABLE] = before


def test_the_kernel_asked_for_runs(monkeypatch: pytest.MonkeyPatch, kernel: str) -> None:
    """Each compiled kernel really runs where installed (not a silent fallback), and numpy when asked."""
    assert robust_compiled.use_compiled(1) is (kernel == "compiled")
    ran: list[str] = []
    for name in ("decide_llvm", "decide_compiled"):
        original = getattr(robust_kernels, name)
        monkeypatch.setattr(robust_kernels, name, lambda *args, _f=original, _n=name: ran.append(_n) or _f(*args))
    decide(np.array([0, 1, 3]), np.array([0]), TokenBytes.from_list(EDGES), 1, 2, 0)
    assert ran == {"numpy": [], "compiled": ["decide_compiled"], "llvm": ["decide_llvm"]}[kernel]


def test_auto_is_the_llvm_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default kernel is the llvmlite scan (where llvmlite is installed), from a process's first token."""
    pytest.importorskip("llvmlite")
    monkeypatch.setenv(robust_compiled.KERNEL_VARIABLE, "auto")
    ran: list[int] = []
    original = robust_kernels.decide_llvm
    monkeypatch.setattr(robust_kernels, "decide_llvm", lambda *args: ran.append(1) or original(*args))
    decide(np.array([0, 1, 3]), np.array([0]), TokenBytes.from_list(EDGES), 1, 2, 0)
    assert ran == [1] and robust_llvm.compiled() is not None


def test_the_numpy_rows_are_the_numba_rows() -> None:
    """``id_rows`` (numpy, for the llvmlite scan) lays out exactly what ``robust_compiled._id_tables`` (numba) computes."""
    if robust_compiled.compiled() is None:
        pytest.skip("numba is not installed")
    table = token_bytes(load_tokenizer("cl100k_base"))
    pieces = table.normalised
    for seed in (0, 7):
        offset, base, _ = robust_windows.hash_constants(seed)
        inverse = pow(base, -1, 1 << 64)
        facts = TokenTable.build(pieces.flat, pieces.offsets, offset, inverse)
        constants = (np.uint64(offset), np.uint64(base), np.uint64(inverse))
        rows, prefixes = robust_compiled.id_tables(pieces.flat, pieces.offsets, word_table(), constants)
        assert np.array_equal(id_rows(facts, pieces.offsets, base, inverse), rows)
        assert np.array_equal(facts.rel, prefixes)


@pytest.mark.parametrize("version", [1, 2])
def test_spec_vectors(kernel: str, version: int) -> None:
    vectors = json.loads((Path(__file__).parent / "data" / f"robust_spec_v{version}_vectors.json").read_text(encoding="utf-8"))
    assert len(vectors["cases"]) >= 5
    for case in vectors["cases"]:
        table = TokenBytes.from_list([p.encode("latin-1") for p in case["token_bytes_latin1"]])
        ids = np.asarray(case["ids"], dtype=np.int64)
        dropped, _ = decide(ids, np.zeros(1, np.int64), table, case["context_width"], case["k"], case["seed"], spec_version=version)
        assert np.flatnonzero(dropped).tolist() == case["dropped"], case["text"]


def check_against_reference(table: TokenBytes, pieces: list[bytes], docs: list[list[int]], k: int, h: int, seed: int) -> None:
    lengths = [len(d) for d in docs]
    ids = np.array([i for d in docs for i in d], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    for version in (1, 2):  # spec v2 differs only before each document's h-th unit
        dropped, eligible = decide(ids, starts, table, h, k, seed, spec_version=version)
        expected = [reference_decisions(d, pieces, k, h, seed, version) for d in docs]
        assert dropped.tolist() == [x for drop, _ in expected for x in drop]
        assert eligible.tolist() == [x for _, ok in expected for x in ok]
    view = normalised_tokens(ids, starts, table, h)
    bounds = np.append(view.doc_start, len(view.norm))
    for d, doc in enumerate(docs):
        norm, ends = reference_normalised(doc, pieces)
        assert "".join(map(chr, view.norm[bounds[d] : bounds[d + 1]].tolist())) == norm
        assert (view.token_end[starts[d] : starts[d] + len(doc)] - bounds[d]).tolist() == ends


@settings(max_examples=150, deadline=None)
@given(
    docs=st.lists(st.lists(st.integers(0, len(EDGES) - 1), max_size=14), max_size=12),
    k=st.integers(2, 4),
    h=st.integers(1, 4),
    seed=st.integers(0, 2**64 - 1),
)
def test_hand_made_edges_equal_the_reference(docs: list[list[int]], k: int, h: int, seed: int) -> None:
    check_against_reference(TokenBytes.from_list(EDGES), EDGES, docs, k, h, seed)


def test_a_character_split_around_empty_tokens_and_documents() -> None:
    index = {piece: i for i, piece in enumerate(EDGES)}
    cases = [
        [b"\xe7\xac", b"", b"\x8a\xb6"],  # one character over an empty token
        [b"\xe7", b"", b"", b"\xac\x8a", b"\xe2\x80", b"", b"\x94 ", b" ", b"-", b"--", b"a"],
        [b"\x8a\xb6", b"a", b" ", b"  ", b"\n\n", b"x ", b" -", b"- ", b"--", b"Word"],  # opens with continuation bytes
        [b"A\xc2", b"\xa0b", b" \xe2\x80", b"\x94", b"-", b"\xf0\x9f", b"\x90\x9f", b"\xc2\xad", b" ", b"\xc2\xa0", b"\xff"],
    ]
    docs = [[index[p] for p in case] for case in cases]
    for split in range(1, 4):  # a run cut by a document start: the halves decode alone
        docs.append(docs[1][:split])
        docs.append(docs[1][split:])
    for h in (1, 2, 3):
        check_against_reference(TokenBytes.from_list(EDGES), EDGES, docs, 2, h, 11)


def test_the_table_holds_each_ids_normalised_characters() -> None:
    table = NormalisedPieces.build(EDGES)
    for i, piece in enumerate(EDGES):
        try:
            text = piece.decode("utf-8")
        except UnicodeDecodeError:
            assert not table.whole[i] and table.lengths[i] == 0
            continue
        expected = "".join(normalise_one(c) for c in text)
        while "  " in expected or "--" in expected:
            expected = expected.replace("  ", " ").replace("--", "-")
        assert table.whole[i] and "".join(map(chr, table.flat[table.offsets[i] : table.offsets[i + 1]].tolist())) == expected


def expected_entry(piece: bytes) -> str | None:
    """A table entry by the definition: N of the piece's characters, its runs collapsed (None: does not decode alone)."""
    try:
        text = piece.decode("utf-8")
    except UnicodeDecodeError:
        return None
    expected = "".join(normalise_one(c) for c in text)
    while "  " in expected or "--" in expected:
        expected = expected.replace("  ", " ").replace("--", "-")
    return expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.binary(max_size=6), st.sampled_from(EDGES + [b"\x00", b"a\x00", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"])), max_size=12
    )
)
def test_the_table_decodes_all_pieces_at_once_as_each_alone(pieces: list[bytes]) -> None:
    """``from_bytes`` decodes every piece in one call: no piece's bytes may run on into the next one's."""
    table = NormalisedPieces.build(pieces)
    for i, piece in enumerate(pieces):
        expected = expected_entry(piece)
        assert bool(table.whole[i]) is (expected is not None)
        assert bool(table.solid[i]) is (expected is not None and len(piece) > 0)
        assert "".join(map(chr, table.flat[table.offsets[i] : table.offsets[i + 1]].tolist())) == (expected or "")


@pytest.fixture(scope="module")
def cl100k_pools() -> tuple[TokenBytes, list[bytes], list[list[int]]]:
    """cl100k's ids in pools: split characters, empty, space/hyphen, other non-ASCII, any."""
    table = token_bytes(load_tokenizer("cl100k_base"))
    pieces = table.pieces
    whole = table.normalised.whole
    split = [i for i in range(len(pieces)) if not whole[i]]
    empty = [i for i, p in enumerate(pieces) if not p]
    runs = [i for i, p in enumerate(pieces) if p and (p[:1] in (b" ", b"-", b"\n") or p[-1:] in (b" ", b"-", b"\n")) and len(p) < 4]
    wide = [i for i, p in enumerate(pieces) if whole[i] and any(b >= 0x80 for b in p)]
    return table, pieces, [split, empty, runs, wide, list(range(len(pieces)))]


def test_cl100k_table_by_the_definition(cl100k_pools: tuple[TokenBytes, list[bytes], list[list[int]]]) -> None:
    table, pieces, _ = cl100k_pools
    normalised = table.normalised
    for i in range(0, len(pieces), 7):  # a seventh of the ids: the definition costs about 10 us an id
        expected = expected_entry(pieces[i])
        assert bool(normalised.whole[i]) is (expected is not None)
        assert "".join(map(chr, normalised.flat[normalised.offsets[i] : normalised.offsets[i + 1]].tolist())) == (expected or "")


@settings(max_examples=25, deadline=None)
@given(draw=st.integers(0, 2**32 - 1), h=st.integers(1, 6), k=st.integers(2, 5))
def test_cl100k_ids_that_split_characters_equal_the_reference(
    cl100k_pools: tuple[TokenBytes, list[bytes], list[list[int]]], draw: int, h: int, k: int
) -> None:
    """Many short documents per block, ids drawn mostly from the pools where the shortcuts could fail."""
    table, pieces, pools = cl100k_pools
    rng = random.Random(draw)
    docs = [[rng.choice(rng.choices(pools, weights=(4, 1, 3, 2, 2))[0]) for _ in range(rng.randrange(25))] for _ in range(30)]
    check_against_reference(table, pieces, docs, k, h, draw)


@pytest.mark.parametrize("block", [1, 7, 40])
@pytest.mark.parametrize("h", [1, 3, 9])
@pytest.mark.parametrize("lookback", [(0, 1), (4, 32)])
@pytest.mark.parametrize(
    "favour", [(b" ", b"  ", b"", b"-", b"\xc2\xad"), (b"\xe7", b"\xac", b"\x8a", b"\xac\x8a", b"", b"\xe2\x80", b"\x94")]
)
def test_small_blocks_give_the_same_masks(
    monkeypatch: pytest.MonkeyPatch, block: int, h: int, lookback: tuple[int, int], favour: tuple[bytes, ...]
) -> None:
    """Blocks cut long documents into pieces viewed with context before them: any block size gives the same masks.

    ``favour``: pieces drawn more often, for long stretches without units, or of split characters.
    """
    table = TokenBytes.from_list(EDGES)
    rng = random.Random(block * 100 + h)
    weights = [1 + 6 * (p in favour) for p in EDGES]
    docs = [rng.choices(range(len(EDGES)), weights, k=rng.randrange(200)) for _ in range(12)]
    ids = np.array([i for d in docs for i in d], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum([len(d) for d in docs])[:-1]]).astype(np.int64)
    whole = [decide(ids, starts, table, h, 2, 5, spec_version=v) for v in (1, 2)]
    monkeypatch.setattr(robust_windows, "_BLOCK", block)
    monkeypatch.setattr(robust_windows, "_LOOKBACK", lookback)  # (0, 1): one token of context first, grown until it suffices
    small = [decide(ids, starts, table, h, 2, 5, spec_version=v) for v in (1, 2)]
    assert all(np.array_equal(a, b) for w, s in zip(whole, small) for a, b in zip(w, s))
    check_against_reference(table, EDGES, docs, 2, h, 5)


def test_context_before_a_piece_never_starts_inside_a_character(monkeypatch: pytest.MonkeyPatch) -> None:
    """A piece of a long document is viewed from a token that decodes apart: from b"\\xac" the text would
    start with two escaped bytes where the document has one character, and the window of the last
    token (" ", no unit of its own) would begin at the second of them."""
    index = {piece: i for i, piece in enumerate(EDGES)}
    doc = [index[p] for p in (b"Word", b"Word", b"\xe7", b"\xac", b"\x8a", b"", b"", b" ", b"a", b"  ", b"Word")]
    monkeypatch.setattr(robust_windows, "_BLOCK", 7)  # pieces [0, 7) and [7, 11)
    monkeypatch.setattr(robust_windows, "_LOOKBACK", (0, 1))  # context of 1, then 4 tokens: b"\xac" onwards
    for seed in range(12):
        check_against_reference(TokenBytes.from_list(EDGES), EDGES, [doc], 2, 1, seed)


def real_text_batch(seed: int) -> list[str]:
    """Documents of prose, code, near-copies and non-Latin text: long ones (numpy cuts them in blocks), short
    and empty ones, runs of spaces and dashes, CJK and emoji that cl100k splits inside characters."""
    rng = random.Random(seed)
    words = "the goldfish loss drops one token in k from the loss so a model cannot recite its data".split()
    prose = " ".join(rng.choice(words) for _ in range(400)) + ". "
    code = "def f(x):\n    return x  --  1  # a -- b\n\n\tif a_b.c(x): y = [1, 2]\n" * 20
    other = "中文字符，测试。 Ünïcödé — “quotes” ‘x’ ﬁ … 🐟🐠 Ａ\u00a0b \u00ad " * 30
    docs = [prose * 60, code, other, edit(prose, rng), "", " ", "-", "  --  ", edit(other, rng), prose[:50]]
    rng.shuffle(docs)
    return docs


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("h", [1, 13])
def test_the_kernels_agree_on_real_text(monkeypatch: pytest.MonkeyPatch, kernel: str, seed: int, h: int, version: int) -> None:
    """The three kernels, in one process, on cl100k ids of real-looking text (a long document over several numpy blocks)."""
    monkeypatch.setattr(robust_windows, "_BLOCK", 4096)
    tokenizer = load_tokenizer("cl100k_base")
    table = token_bytes(tokenizer)
    docs = tokenizer.encode_batch(real_text_batch(seed))
    ids = np.concatenate([np.asarray(d, dtype=np.int64) for d in docs])
    starts = np.concatenate([[0], np.cumsum([len(d) for d in docs])[:-1]]).astype(np.int64)
    assert max(len(d) for d in docs) > 4 * robust_windows._BLOCK
    results = {}
    for name in ("numpy", "compiled", "llvm"):
        os.environ[robust_compiled.KERNEL_VARIABLE] = name
        results[name] = decide(ids, starts, table, h, 3, seed, spec_version=version)
    os.environ[robust_compiled.KERNEL_VARIABLE] = kernel
    for name in ("compiled", "llvm"):
        assert np.array_equal(results["numpy"][0], results[name][0]), name
        assert np.array_equal(results["numpy"][1], results[name][1]), name
    assert 0 < results["numpy"][0].sum() < results["numpy"][1].sum()  # repeated text: any rate, but some of each


def test_auto_switches_to_compiled_after_the_first_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """``auto``: numpy for a process's first ``NUMPY_FIRST`` tokens, then compiled (where numba is installed)."""
    monkeypatch.setenv(robust_compiled.KERNEL_VARIABLE, "auto")
    monkeypatch.setattr(robust_compiled, "NUMPY_FIRST", 100)
    monkeypatch.setattr(robust_compiled, "_numpy_tokens", [0])
    monkeypatch.setattr(robust_compiled, "_loader", [])  # no background load started by an earlier test's job
    assert [robust_compiled.use_compiled(60) for _ in range(3)] == [False, False, robust_compiled.compiled() is not None]


@pytest.mark.parametrize("bad", [-1, len(EDGES), 2**31 - 1])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_ids_outside_the_table_are_refused_before_any_is_read(kernel: str, bad: int, dtype: type) -> None:
    table = TokenBytes.from_list(EDGES)
    ids = np.array([0, 1, 2, bad, 3], dtype=dtype)
    with pytest.raises(ValueError, match="outside the tokenizer's"):
        decide(ids, np.array([0, 2]), table, 1, 2, 0)


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("dtype", [np.int32, np.uint16, np.uint32, np.int64])
def test_any_integer_ids_give_the_same_decisions(kernel: str, dtype: type, version: int) -> None:
    table = TokenBytes.from_list(EDGES)
    rng = random.Random(3)
    ids = np.array([rng.randrange(len(EDGES)) for _ in range(500)], dtype=np.int64)
    starts = np.array([0, 100, 250, 250, 400])
    expected = decide(ids, starts, table, 3, 2, 9, spec_version=version)
    reversed_copy = ids.astype(dtype)[::-1].copy()
    got = decide(reversed_copy[::-1], starts, table, 3, 2, 9, spec_version=version)  # the same ids, as a view with a negative stride
    assert all(np.array_equal(a, b) for a, b in zip(expected, got))


def test_a_v2_config_never_gets_v1_decisions(monkeypatch: pytest.MonkeyPatch, kernel: str) -> None:
    """Through the strategy the pipeline calls, each config gets its version's decisions from the kernel asked for.

    Short lines, most of whose tokens come before their 13th unit: v1 never decides
    those, v2 does. A kernel that ignored the version (a compiled scan implementing v1
    only) would return v1's mask for the default config, and fail here.
    """
    calls: list[int] = []
    scan, llvm_scan = robust_kernels.decide_compiled, robust_kernels.decide_llvm
    monkeypatch.setattr(robust_kernels, "decide_compiled", lambda *args: calls.append(args[-1]) or scan(*args))
    monkeypatch.setattr(robust_kernels, "decide_llvm", lambda *args: calls.append(args[-1]) or llvm_scan(*args))
    tokenizer = load_tokenizer("cl100k_base")
    table = token_bytes(tokenizer)
    texts = ["Hello world", "GNU General Public License, version 3", "x", "", "  --  a", "中文字符，测试。"] * 20
    texts += [f"line {i}: the goldfish loss, {i * 7919 % 1000}" for i in range(200)]
    docs = [tokenizer.encode_batch([t])[0] for t in texts]
    ids = np.concatenate([np.asarray(d, dtype=np.int32) for d in docs])
    starts = np.concatenate([[0], np.cumsum([len(d) for d in docs])[:-1]]).astype(np.int64)
    masks = {}
    for version in (None, 1, 2):
        config = MaskConfig(strategy="robust", k=2, context_width=13, seed=11, spec_version=version)
        dropped, counts = config.strategy_object.drop_and_eligible(ids, starts, config, {robust.TOKEN_BYTES: [table]})
        assert config.spec_version == (version or 2)
        expected = [reference_decisions(d, table.pieces, 2, 13, 11, config.spec_version) for d in docs]
        assert dropped.tolist() == [x for drop, _ in expected for x in drop], version
        assert counts.tolist() == [sum(ok) for _, ok in expected], version
        masks[version] = dropped
    assert calls == ([] if kernel == "numpy" else [2, 1, 2])  # the scan ran, told each config's version
    assert np.array_equal(masks[None], masks[2]) and (masks[2] & ~masks[1]).sum() > 50  # v2 drops heads v1 never reaches


def test_spec_versions_beyond_two_are_refused(kernel: str) -> None:
    table = TokenBytes.from_list(EDGES)
    with pytest.raises(ValueError, match="spec versions 1 and 2"):
        decide(np.array([0, 1]), np.array([0]), table, 1, 2, 0, spec_version=3)


def test_auto_switches_to_compiled_when_the_background_load_is_done(monkeypatch: pytest.MonkeyPatch) -> None:
    """``start_loading``: numpy while the loader thread runs, compiled from the first call after it ends."""
    monkeypatch.setenv(robust_compiled.KERNEL_VARIABLE, "auto")
    monkeypatch.setattr(robust_compiled, "_loader", [])
    monkeypatch.setattr(robust_compiled, "spare_core", lambda: True)
    release = threading.Event()
    robust_compiled.start_loading(release.wait)
    (thread,) = robust_compiled._loader
    assert thread.name == robust_compiled.LOADER_NAME
    assert robust_compiled.use_compiled(10**9) is False  # still loading: numpy, whatever the job's size
    release.set()
    thread.join()
    assert robust_compiled.use_compiled(1) is (robust_compiled.compiled() is not None)
    robust_compiled.start_loading(release.wait)  # once per process
    assert robust_compiled._loader == [thread]


def test_no_background_load_without_a_spare_core_or_under_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(robust_compiled, "_loader", [])
    monkeypatch.setattr(robust_compiled, "spare_core", lambda: False)
    monkeypatch.setenv(robust_compiled.KERNEL_VARIABLE, "auto")
    robust_compiled.start_loading(lambda: None)
    monkeypatch.setenv(robust_compiled.KERNEL_VARIABLE, "numpy")
    monkeypatch.setattr(robust_compiled, "spare_core", lambda: True)
    robust_compiled.start_loading(lambda: None)
    assert robust_compiled._loader == []


def test_the_warm_up_loads_the_pipeline_signatures(monkeypatch: pytest.MonkeyPatch) -> None:
    """After ``_warm_compiled``, int32 and int64 ids dispatch to signatures already loaded (none is compiled anew)."""
    kernels = robust_compiled.compiled()
    if kernels is None:
        pytest.skip("numba is not installed")
    robust._warm_compiled()
    before = {name: len(getattr(kernels, name).signatures) for name in kernels._fields}
    monkeypatch.setenv(robust_compiled.KERNEL_VARIABLE, "compiled")
    table = TokenBytes.from_list(EDGES)
    for dtype in (np.int32, np.int64):
        decide(np.arange(len(EDGES), dtype=dtype), np.array([0, 3]), table, 2, 2, 5, spec_version=2)
    assert {name: len(getattr(kernels, name).signatures) for name in kernels._fields} == before


def test_the_normalised_table_is_cached_on_disk_and_rebuilt_when_damaged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``NormalisedPieces.cached``: the same arrays as ``from_bytes`` whether built, read back, or rebuilt from a bad entry."""
    monkeypatch.setenv("GOLDFISH_PREP_CACHE", str(tmp_path))
    rng = random.Random(11)
    pieces = [bytes(rng.randrange(256) for _ in range(rng.randrange(6))) for _ in range(5000)] + EDGES
    table = TokenBytes.from_list(pieces)
    built = NormalisedPieces.from_bytes(table.flat, table.offsets)

    def same(other: NormalisedPieces) -> bool:
        return all(
            np.array_equal(getattr(other, name), getattr(built, name)) and getattr(other, name).dtype == getattr(built, name).dtype
            for name in ("flat", "offsets", "whole", "lengths", "last", "solid")
        )

    assert same(NormalisedPieces.cached(table.flat, table.offsets))
    (entry,) = (tmp_path / "robust").iterdir()
    assert same(NormalisedPieces.cached(table.flat, table.offsets))
    entry.write_bytes(entry.read_bytes()[:1000])  # truncated
    assert same(NormalisedPieces.cached(table.flat, table.offsets))
    assert entry.stat().st_size > 1000  # rewritten whole
    other = TokenBytes.from_list([b"x" + p for p in pieces])
    assert np.array_equal(
        NormalisedPieces.cached(other.flat, other.offsets).flat, NormalisedPieces.from_bytes(other.flat, other.offsets).flat
    )
    assert len(list((tmp_path / "robust").iterdir())) == 2  # keyed by the bytes: another vocabulary, another entry


def test_workers_fork_after_the_background_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """``WorkerPool`` waits for the loader thread, so its workers fork (with the kernels loaded) instead of spawning."""
    from goldfish_prep.pipeline.pool import WorkerPool, safe_start_method

    monkeypatch.setenv(robust_compiled.KERNEL_VARIABLE, "auto")
    monkeypatch.setattr(robust_compiled, "_loader", [])
    monkeypatch.setattr(robust_compiled, "spare_core", lambda: True)
    release = threading.Timer(0.3, lambda: None)
    release.start()
    robust_compiled.start_loading(release.join)  # the loader ends 0.3 s from now
    (thread,) = robust_compiled._loader
    assert thread.is_alive()
    with WorkerPool(2) as pool:
        assert not thread.is_alive()
        # the loader no longer counts against forking; threads left by earlier tests in this process still may
        assert pool.start_method == safe_start_method()


def test_the_rows_are_cached_on_disk_and_rebuilt_when_damaged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``cached_rows``: the rows ``id_rows`` builds, whether built, read back, or rebuilt from a bad entry; keyed by the constants."""
    monkeypatch.setenv("GOLDFISH_PREP_CACHE", str(tmp_path))
    rng = random.Random(5)
    table = TokenBytes.from_list([bytes(rng.randrange(256) for _ in range(rng.randrange(6))) for _ in range(5000)] + EDGES)
    pieces = NormalisedPieces.from_bytes(table.flat, table.offsets)
    offset, base, _ = robust_windows.hash_constants(3)
    inverse = pow(base, -1, 1 << 64)
    facts = TokenTable.build(pieces.flat, pieces.offsets, offset, inverse)
    expected = id_rows(facts, pieces.offsets, base, inverse)

    def same() -> bool:
        rows, prefixes = cached_rows(pieces.flat, pieces.offsets, offset, base, inverse)
        return np.array_equal(rows, expected) and np.array_equal(prefixes, facts.rel) and rows.ctypes.data % 64 == 0

    assert same()
    (entry,) = (tmp_path / "robust").iterdir()
    assert same()
    entry.write_bytes(entry.read_bytes()[:1000])  # truncated
    assert same()
    assert entry.stat().st_size > 1000  # rewritten whole
    cached_rows(pieces.flat, pieces.offsets, offset + 1, base, inverse)
    assert len(list((tmp_path / "robust").iterdir())) == 2  # other constants, another entry


def test_the_llvm_machine_code_is_cached_on_disk_and_recompiled_when_damaged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``robust_llvm.Compiled``: compiled and stored, then loaded; a damaged entry is compiled again; the scans give the same bytes."""
    pytest.importorskip("llvmlite")
    monkeypatch.setenv("GOLDFISH_PREP_CACHE", str(tmp_path))
    table = TokenBytes.from_list(EDGES)
    rng = random.Random(8)
    ids = np.array([rng.randrange(len(EDGES)) for _ in range(400)], dtype=np.int64)
    starts = np.array([0, 90, 90, 300])
    expected = [reference_decisions(ids[a:b].tolist(), table.pieces, 2, 3, 4, 2) for a, b in zip(starts, [*starts[1:], len(ids)])]
    compiled: list[int] = []
    emit = robust_llvm._write_object
    monkeypatch.setattr(robust_llvm, "_write_object", lambda key, code: compiled.append(1) or emit(key, code))
    monkeypatch.setenv(robust_compiled.KERNEL_VARIABLE, "llvm")
    for damage in (None, None, b"\0" * 40, b""):
        entries = list((tmp_path / "robust").glob("*.o"))
        if damage is not None:
            entries[0].write_bytes(damage)
        monkeypatch.setattr(robust_llvm, "_compiled", [])  # a new process
        assert robust_llvm.compiled() is not None
        dropped, eligible = decide(ids, starts, table, 3, 2, 4, spec_version=2)
        assert dropped.tolist() == [x for drop, _ in expected for x in drop]
        assert eligible.tolist() == [x for _, ok in expected for x in ok]
    assert compiled == [1, 1, 1]  # the first run and each damaged entry compiled; the second loaded the stored code


def test_tiktoken_spelling_from_the_ranks_equals_asking_per_id() -> None:
    """``tiktoken_spelling`` reads the encoding's ranks in one pass: the bytes ``decode_single_token_bytes`` gives per id."""
    from goldfish_prep.tokenizers.spelling import tiktoken_spelling

    encoding = load_tokenizer("cl100k_base")._encoding  # type: ignore[attr-defined]

    class PerId:  # the same encoding without its ranks: the per-id path
        special_tokens_set = encoding.special_tokens_set
        encode_single_token = staticmethod(encoding.encode_single_token)
        decode_single_token_bytes = staticmethod(encoding.decode_single_token_bytes)

    fast = tiktoken_spelling(encoding, 100277)
    assert fast == tiktoken_spelling(PerId(), 100277)
    assert fast[13347] == b"Hi" and fast[100257] == b"" and fast[100256] == b""  # a token, <|endoftext|>, an unused id


def test_the_llvm_scan_compiles_without_a_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the cache off (``GOLDFISH_PREP_CACHE=off``) every process compiles the scan, and it still runs."""
    pytest.importorskip("llvmlite")
    monkeypatch.setenv("GOLDFISH_PREP_CACHE", "off")
    monkeypatch.setattr(robust_llvm, "_compiled", [])
    assert robust_llvm._object_path(("any",)) is None  # nowhere to read or write
    kernels = robust_llvm.compiled()
    assert kernels is not None and set(kernels.scans) == {32, 64}
    monkeypatch.setenv(robust_compiled.KERNEL_VARIABLE, "llvm")
    table = TokenBytes.from_list(EDGES)
    ids = np.arange(len(EDGES), dtype=np.int32)
    expected = reference_decisions(ids.tolist(), table.pieces, 2, 2, 0, 2)
    dropped, eligible = decide(ids, np.array([0]), table, 2, 2, 0, spec_version=2)
    assert (dropped.tolist(), eligible.tolist()) == (list(expected[0]), list(expected[1]))
