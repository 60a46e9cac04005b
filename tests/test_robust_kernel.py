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
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from goldfish_prep.strategies import robust
from goldfish_prep.strategies.normalised_pieces import NormalisedPieces
from goldfish_prep.strategies.robust import TokenBytes, decide, normalised_tokens
from goldfish_prep.tokenizers import load_tokenizer
from goldfish_prep.tokenizers.token_bytes import token_bytes
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
    monkeypatch.setattr(robust, "_BLOCK", block)
    monkeypatch.setattr(robust, "_LOOKBACK", lookback)  # (0, 1): one token of context first, grown until it suffices
    small = [decide(ids, starts, table, h, 2, 5, spec_version=v) for v in (1, 2)]
    assert all(np.array_equal(a, b) for w, s in zip(whole, small) for a, b in zip(w, s))
    check_against_reference(table, EDGES, docs, 2, h, 5)


def test_context_before_a_piece_never_starts_inside_a_character(monkeypatch: pytest.MonkeyPatch) -> None:
    """A piece of a long document is viewed from a token that decodes apart: from b"\\xac" the text would
    start with two escaped bytes where the document has one character, and the window of the last
    token (" ", no unit of its own) would begin at the second of them."""
    index = {piece: i for i, piece in enumerate(EDGES)}
    doc = [index[p] for p in (b"Word", b"Word", b"\xe7", b"\xac", b"\x8a", b"", b"", b" ", b"a", b"  ", b"Word")]
    monkeypatch.setattr(robust, "_BLOCK", 7)  # pieces [0, 7) and [7, 11)
    monkeypatch.setattr(robust, "_LOOKBACK", (0, 1))  # context of 1, then 4 tokens: b"\xac" onwards
    for seed in range(12):
        check_against_reference(TokenBytes.from_list(EDGES), EDGES, [doc], 2, 1, seed)
