"""From repeated windows to repeated passages: merge overlapping windows that always travel together.

A passage of L >= N tokens that occurs c times shows up as L - N + 1 window
groups, each of c occurrences, each shifted by one token from the last. Group g
is *linked* to g' when every occurrence of g is followed, one token later in
the same document, by an occurrence of g', and both have the same count. Runs
of linked windows are passage occurrences; runs that open with the same group
are the same passage. A passage that is sometimes longer (it is part of a
longer repeat in a few places) ends where the counts change, and the longer
part is a passage of its own: maximal where it is cheap to be, and all numpy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from goldfish_prep.format.columns import Int32s, Int64s

#: tokens gathered at once when walking passage occurrences
_GATHER = 1 << 20


@dataclasses.dataclass(frozen=True)
class Passages:
    """Occurrences sorted by passage, then position. ``length[p]`` tokens; ``first[p]``: its first occurrence."""

    length: Int64s
    count: Int64s
    first: Int64s
    occ_passage: Int64s
    occ_start: Int64s

    def __len__(self) -> int:
        return len(self.length)


def merge_windows(window_starts: Int64s, groups: Int64s, doc_starts: Int64s, width: int) -> Passages:
    """Passages from repeated windows (sorted by position) of ``width`` tokens; ``doc_starts`` sorted."""
    if not len(groups):
        empty = np.zeros(0, np.int64)
        return Passages(empty, empty, empty, empty, empty)
    n_groups = int(groups.max()) + 1
    count = np.bincount(groups, minlength=n_groups)
    follows = _follows(window_starts, doc_starts)
    link = _links(groups, follows, count)
    is_head = np.ones(len(groups), np.bool_)
    is_head[1:] = ~(follows & (link[groups[:-1]] == groups[1:]))
    heads = np.flatnonzero(is_head)
    run_windows = np.diff(np.append(heads, len(groups)))
    head_groups, occ_passage = np.unique(groups[heads], return_inverse=True)
    occ_passage = occ_passage.ravel().astype(np.int64)
    order = np.lexsort((window_starts[heads], occ_passage))
    occ_passage, occ_start = occ_passage[order], window_starts[heads][order]
    length = np.zeros(len(head_groups), np.int64)
    length[occ_passage] = run_windows[order] + width - 1  # every run of a passage has the same length
    first_index = np.searchsorted(occ_passage, np.arange(len(head_groups)))
    return Passages(length, np.bincount(occ_passage, minlength=len(head_groups)), occ_start[first_index], occ_passage, occ_start)


def _follows(window_starts: Int64s, doc_starts: Int64s) -> npt.NDArray[np.bool_]:
    """follows[i]: window i+1 starts one token after window i, in the same document."""
    follows: npt.NDArray[np.bool_] = window_starts[1:] == window_starts[:-1] + 1
    after = np.flatnonzero(follows) + 1
    where = np.minimum(np.searchsorted(doc_starts, window_starts[after]), len(doc_starts) - 1)
    follows[after[doc_starts[where] == window_starts[after]] - 1] = False  # window i+1 opens a new document
    return follows


def _links(groups: Int64s, follows: npt.NDArray[np.bool_], count: Int64s) -> Int64s:
    """link[g] = g' when every occurrence of g is followed by one of g', and both occur equally often; else -1."""
    n_groups = len(count)
    pairs = groups[:-1][follows] * n_groups
    pairs += groups[1:][follows]
    pairs.sort()
    opens = np.ones(len(pairs), np.bool_)
    opens[1:] = pairs[1:] != pairs[:-1]
    starts = np.flatnonzero(opens)
    unique, pair_count = pairs[starts], np.diff(np.append(starts, len(pairs)))
    g, h = unique // n_groups, unique % n_groups
    linked = (pair_count == count[g]) & (count[h] == count[g])
    link = np.full(n_groups, -1, np.int64)
    link[g[linked]] = h[linked]
    return link


def spans(passages: Passages, skip: int = 0) -> Iterator[tuple[Int64s, Int64s, Int64s]]:
    """(occurrence, offset in passage, corpus position) for every token of every occurrence, in chunks.

    ``skip`` leaves out each occurrence's first ``skip`` tokens.
    """
    sizes = np.maximum(passages.length[passages.occ_passage] - skip, 0)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    occurrence = 0
    while occurrence < len(sizes):
        stop = max(int(np.searchsorted(bounds, bounds[occurrence] + _GATHER, side="right")) - 1, occurrence + 1)
        chunk = np.arange(occurrence, stop)
        occ = np.repeat(chunk, sizes[chunk])
        offset = np.arange(len(occ), dtype=np.int64) - np.repeat(bounds[chunk] - bounds[occurrence], sizes[chunk]) + skip
        yield occ, offset, passages.occ_start[occ] + offset
        occurrence = stop


def passages_hold(ids: Int32s, passages: Passages) -> bool:
    """True if every occurrence holds exactly the tokens of its passage's first occurrence."""
    for occ, offset, position in spans(passages):
        if not np.array_equal(ids[position], ids[passages.first[passages.occ_passage[occ]] + offset]):
            return False
    return True
