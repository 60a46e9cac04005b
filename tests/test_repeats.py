"""`goldfish-prep repeats`: the hashed search finds exactly the repeats a brute-force search finds,
and goldfish masks agree across copies where static masks do not."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from goldfish_prep.config import MaskConfig
from goldfish_prep.inspect.corpus import Corpus, load_corpus
from goldfish_prep.inspect.passages import merge_windows, passages_hold
from goldfish_prep.inspect.repeats import find_repeats, locate_passages, mask_agreement
from goldfish_prep.inspect.windows import confirm
from tests.shards import mask_documents_with_ids as mask
from tests.shards import run

N = 50


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory, real_texts: list[str]) -> dict[str, Path]:
    """Copyright notices: GPL/BSD/Apache paragraphs repeat across files at different offsets."""
    texts = [t for t in real_texts[:120] if len(t) < 12000]
    base = tmp_path_factory.mktemp("repeats")
    return {
        "goldfish": mask(base / "goldfish", texts, "--shard-size", "150KB"),
        "static": mask(base / "static", texts, "--strategy", "static"),
        "packed": mask(base / "packed", texts, "--pack", "300"),
    }


def brute_force(corpus: Corpus, length: int) -> dict[bytes, list[int]]:
    """Every window of ``length`` tokens inside a document, by its exact bytes, with all its start positions."""
    places: dict[bytes, list[int]] = defaultdict(list)
    data = corpus.ids.astype("<i4").tobytes()
    for start, size in zip(corpus.starts.tolist(), corpus.lengths.tolist()):
        for j in range(start, start + size - length + 1):
            places[data[4 * j : 4 * (j + length)]].append(j)
    return {key: value for key, value in places.items() if len(value) > 1}


def covered_by(starts: list[int], length: int) -> int:
    marks = np.zeros(max(starts, default=0) + length + 1, bool)
    for s in starts:
        marks[s : s + length] = True
    return int(marks.sum())


def check_against_brute_force(corpus: Corpus, length: int) -> None:
    passages, _ = locate_passages(corpus, length)
    expected = brute_force(corpus, length)
    found = sorted(
        s + j for s, p in zip(passages.occ_start.tolist(), passages.occ_passage.tolist()) for j in range(passages.length[p] - length + 1)
    )
    assert found == sorted(s for starts in expected.values() for s in starts)  # every repeated window, once
    assert passages_hold(corpus.ids, passages)
    for p in range(len(passages)):  # a passage's count is the number of places its exact tokens occur
        start = int(passages.first[p])
        tokens = corpus.ids[start : start + passages.length[p]].tolist()
        head = corpus.ids[start : start + length].astype("<i4").tobytes()
        places = [
            s
            for s in expected[head]
            if corpus.ids[s : s + len(tokens)].tolist() == tokens
            and corpus.document_of([s])[0] == corpus.document_of([s + len(tokens) - 1])[0]
        ]
        assert len(places) == passages.count[p]


def test_real_repeats_equal_a_brute_force_search(outputs: dict[str, Path]) -> None:
    corpus = load_corpus(outputs["goldfish"])
    check_against_brute_force(corpus, N)
    report = find_repeats(outputs["goldfish"], min_length=N)
    expected = brute_force(corpus, N)
    assert report.covered_tokens == covered_by([s for starts in expected.values() for s in starts], N)
    assert report.passages > 20 and report.top[0].count >= report.top[-1].count


@settings(max_examples=100, deadline=None)
@given(
    documents=st.sampled_from([4, 1000]).flatmap(
        lambda vocabulary: st.lists(st.lists(st.integers(0, vocabulary - 1), max_size=40), min_size=1, max_size=8)
    ),
    length=st.integers(2, 6),
)
def test_small_corpora_equal_a_brute_force_search(documents: list[list[int]], length: int) -> None:
    """4 ids make repeats, overlaps and self-overlapping runs common; 1000 make them rare (the screened path)."""
    corpus = corpus_of(documents)
    check_against_brute_force(corpus, length)


def corpus_of(documents: list[list[int]], drop: Any = None) -> Corpus:
    ids = np.array([i for d in documents for i in d], np.int32)
    starts = np.cumsum([0] + [len(d) for d in documents[:-1]]).astype(np.int64)
    flags = np.zeros(len(ids), bool) if drop is None else drop
    return Corpus("x", {}, MaskConfig(context_width=3), ids, flags, starts, None, np.array([0, len(ids)], np.int64))


def test_a_planted_passage_is_one_passage() -> None:
    rng = np.random.default_rng(3)
    planted = rng.integers(0, 50_000, 80).tolist()
    documents = [rng.integers(0, 50_000, 30).tolist() + planted + rng.integers(0, 50_000, size).tolist() for size in (5, 40, 0)]
    corpus = corpus_of(documents)
    check_against_brute_force(corpus, 20)
    passages, collisions = locate_passages(corpus, 20)
    assert not collisions
    assert passages.length.tolist() == [80] and passages.count.tolist() == [3] and passages.occ_start.tolist() == [30, 145, 295]


def test_a_hash_collision_is_split_by_the_tokens() -> None:
    """Pretend two different windows hashed alike: the exact check refuses the passage, confirm splits it."""
    corpus = corpus_of([[1, 2, 3, 9], [1, 2, 3, 9], [4, 5, 6, 9]])
    starts = np.array([0, 4, 8], np.int64)
    groups = np.array([0, 0, 0], np.int64)  # [4, 5, 6] wrongly grouped with [1, 2, 3]
    merged = merge_windows(starts, groups, corpus.starts, 3)
    assert not passages_hold(corpus.ids, merged)
    kept, labels = confirm(corpus.ids, starts, groups, 3)
    assert kept.tolist() == [0, 4] and labels.tolist() == [0, 0]


def test_mask_agreement_counts_differences_after_the_context_width() -> None:
    documents = [[7, 8, 9, 10, 11, 12], [0, 7, 8, 9, 10, 11, 12]]
    drop = np.array([0, 0, 1, 0, 1, 0] + [0, 0, 0, 1, 0, 1, 1], bool)  # passage offsets 2, 4 in both; offset 5 differs
    corpus = corpus_of(documents, drop)
    passages, _ = locate_passages(corpus, 4)
    differing, everywhere = mask_agreement(corpus, passages)
    assert passages.length.tolist() == [6] and differing.tolist() == [1] and everywhere.tolist() == [2]


def test_goldfish_masks_agree_across_copies_and_static_ones_do_not(outputs: dict[str, Path]) -> None:
    goldfish = find_repeats(outputs["goldfish"], min_length=N, top=5)
    static = find_repeats(outputs["static"], min_length=N, top=5)
    assert goldfish.passages == static.passages and goldfish.passages_differing == 0
    assert static.passages_differing > static.passages // 3
    corpus = load_corpus(outputs["goldfish"])
    for passage in goldfish.top:  # check the reported counts against the labels themselves
        masks = []
        for occurrence in passage.occurrences:
            document = int(occurrence.document.split("-")[1])
            start = int(corpus.starts[document]) + occurrence.position
            masks.append(corpus.drop[start : start + passage.length])
        assert all((m[13:] == masks[0][13:]).all() for m in masks)
        if passage.count == len(masks):
            assert passage.dropped_everywhere == int(np.logical_and.reduce(masks).sum())
        assert passage.supervised == passage.length - passage.dropped_everywhere
    assert sum(p.dropped_everywhere for p in static.top) < sum(p.dropped_everywhere for p in goldfish.top)


def test_packed_output_gives_the_same_passages(outputs: dict[str, Path]) -> None:
    plain = find_repeats(outputs["goldfish"], min_length=N, top=3)
    packed = find_repeats(outputs["packed"], min_length=N, top=3)
    assert (packed.passages, packed.occurrences, packed.covered_tokens) == (plain.passages, plain.occurrences, plain.covered_tokens)
    assert [p.length for p in packed.top] == [p.length for p in plain.top]
    assert packed.top[0].occurrences[0].document.startswith("document ") and " (row " in packed.top[0].occurrences[0].document


def test_cli_text_and_json(outputs: dict[str, Path]) -> None:
    folder = outputs["goldfish"]
    report = find_repeats(folder, min_length=N, top=3)
    text = run("repeats", folder, "--top", 3)
    assert text.exit_code == 0
    lines = text.output.splitlines()
    assert lines[0] == f"{folder}: passages of {N}+ tokens found at two or more places (goldfish, k=4, context width 13)"
    assert lines[2] == "  every occurrence of every passage carries the same mask after its first 13 tokens: copies add no exposure"
    first = report.top[0]
    assert f"  {1:>3}  {first.count:>6,}  {first.length:>6,}  {first.dropped_everywhere:>14,}  {first.supervised:>10,}  same" in lines
    data = json.loads(run("repeats", folder, "--top", 3, "--json").output)
    assert data["passages"] == report.passages and len(data["top"]) == 3
    assert data["top"][0]["supervised"] == first.supervised and data["top"][0]["occurrences"][0]["document"].startswith("doc-")
    static = run("repeats", outputs["static"], "--top", 1).output.splitlines()
    assert static[2].endswith("passages have copies whose masks differ (static masks follow positions, not content):")


def test_longer_minimum_finds_fewer_passages(outputs: dict[str, Path]) -> None:
    assert (
        find_repeats(outputs["goldfish"], min_length=200, top=0).passages < find_repeats(outputs["goldfish"], min_length=N, top=0).passages
    )


def test_missing_folder(tmp_path: Path) -> None:
    result = run("repeats", tmp_path / "nope")
    assert result.exit_code == 1
    assert result.stderr == f"Error: {tmp_path / 'nope'}: no such folder. Pass the output folder of `goldfish-prep mask`\n"
