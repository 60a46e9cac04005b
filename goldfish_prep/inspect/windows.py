"""Repeated windows: every run of N tokens that occurs at more than one place, found by hashing.

Each N-token window inside a document gets a 64-bit rolling hash (the
vectorised prefix-sum hash of ``strategies.goldfish``, used here with the
window length N: O(1) work per window whatever N is). Sorting the hashes puts
equal windows side by side: no pairwise comparison, O(W log W) time, about
24 bytes per window while sorting and about 50 per *repeated* window while
grouping (a bitmap screen keeps the unrepeated ones out of that). Equal tokens always hash equal, so nothing is missed;
``confirm`` compares tokens window by window, the slow exact path, taken only
if a hash collision is ever found (see ``passages_hold``).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from goldfish_prep.format.columns import Int32s, Int64s
from goldfish_prep.strategies.goldfish import window_hashes

Uint64s = npt.NDArray[np.uint64]

#: tokens hashed per pass step (documents are never split): bounds the temporaries to ~40 bytes * this
_CHUNK = 1 << 20
#: window tokens gathered at once when confirming equal hashes
_GATHER = 1 << 20


def _chunks(starts: Int64s, n: int) -> Iterator[tuple[int, int]]:
    """[a, b) spans of whole documents, about ``_CHUNK`` tokens each."""
    bounds = np.append(starts, n)
    a = 0
    while a < n:
        b = int(bounds[np.searchsorted(bounds, a + _CHUNK, side="right") - 1])
        if b <= a:  # one document longer than a chunk: it is a chunk of its own
            b = int(bounds[np.searchsorted(bounds, a, side="right")])
        yield a, b
        a = b


def _hashes(ids: Int32s, starts: Int64s, a: int, b: int, length: int) -> Uint64s:
    """Hashes of the windows of ``length`` tokens inside the documents of [a, b), in position order."""
    padded = np.concatenate([np.zeros(1, np.int32), ids[a:b]])  # window_hashes leaves its first `length` slots empty
    hashed = window_hashes(padded, length, seed=0)[1:]  # hashed[e]: the window ending at a + e
    inside = starts[(starts >= a) & (starts < b)] - a
    local = np.arange(b - a, dtype=np.int64) - np.repeat(inside, np.diff(np.append(inside, b - a)))
    return hashed[local >= length - 1]


def candidate_windows(ids: Int32s, starts: Int64s, length: int) -> tuple[Int64s, Int64s]:
    """(start positions, hash groups 0..G-1) of every window whose hash occurs twice or more, by position.

    Equal tokens always give equal hashes, so no repeat is missed; a group may
    (odds near 2**-64 per pair) mix different windows: ``confirm`` splits them.
    Windows are numbered in position order, so a number maps back to its
    document and offset by arithmetic: no per-window position is stored.
    Peak memory: about 24 bytes per window, then about 50 per repeated window.
    """
    per_document = np.maximum(np.diff(np.append(starts, len(ids))) - length + 1, 0)
    first_window = np.concatenate([[0], np.cumsum(per_document)])
    chunks = [_hashes(ids, starts, a, b, length) for a, b in _chunks(starts, len(ids))]
    hashes = np.concatenate(chunks) if chunks else np.zeros(0, np.uint64)
    del chunks
    candidates = _maybe_repeated(hashes)
    if candidates is not None:
        hashes = hashes[candidates]
    order = np.argsort(hashes)
    hashes.sort()  # now hashes[i] belongs to window order[i], without a gathered copy
    same = hashes[1:] == hashes[:-1]
    del hashes
    windows, groups = _runs(order, same)
    if candidates is not None:
        windows = candidates[windows]
    document = np.searchsorted(first_window, windows, side="right") - 1
    windows += starts[document] - first_window[document]  # window number -> start position, in place
    return windows, groups


def _maybe_repeated(hashes: Uint64s) -> Int64s | None:
    """Windows whose hash *may* occur twice (None: too many to be worth screening).

    A sort (fast for plain uint64) finds the repeated values, and a bitmap of
    their top bits screens every window in one pass, with few false positives,
    so the costlier grouping only sees the candidates.
    """
    ordered = np.sort(hashes)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    del ordered
    if 4 * len(repeated) > len(hashes):  # mostly repeated: screening would keep nearly everything
        return None
    bits = min(max(len(repeated).bit_length() + 3, 1), 32)  # the bitmap is at most 1/8 full
    shift = np.uint64(64 - bits)
    bitmap = np.zeros(1 << bits, np.bool_)
    bitmap[repeated >> shift] = True
    return np.flatnonzero(bitmap[hashes >> shift])


def _runs(order: Int64s, same: npt.NDArray[np.bool_]) -> tuple[Int64s, Int64s]:
    """(indices, group labels) of the members of runs of equal sorted hashes, in index order.

    ``order`` sorts the hashes; ``same[i]``: sorted hashes i and i+1 are equal.
    """
    member = np.zeros(len(order), np.bool_)
    member[1:] = same
    member[:-1] |= same
    opens = member.copy()
    opens[1:] &= ~same  # the first of each run of equal hashes
    label = np.full(len(order), -1, np.int64)
    label[order[member]] = np.cumsum(opens[member]) - 1  # scattered back: index order without a second sort
    kept = np.flatnonzero(label >= 0)
    return kept, label[kept]


def confirm(ids: Int32s, window_starts: Int64s, groups: Int64s, length: int) -> tuple[Int64s, Int64s]:
    """(start positions, groups 0..G-1) of the windows still repeated once groups are split by exact tokens.

    Each window is compared with the first window of its group, ``_GATHER``
    tokens at a time. Collisions of a 64-bit hash are rare enough that the
    few windows that differ are regrouped by their exact tokens.
    """
    first = np.full(int(groups.max(initial=-1)) + 1, -1, np.int64)
    first[groups[::-1]] = window_starts[::-1]  # the lowest position of each group
    offsets = np.arange(length, dtype=np.int64)
    same = np.ones(len(groups), np.bool_)
    step = max(1, _GATHER // length)
    for i in range(0, len(groups), step):
        mine = ids[window_starts[i : i + step, None] + offsets]
        theirs = ids[first[groups[i : i + step]][:, None] + offsets]
        same[i : i + step] = (mine == theirs).all(axis=1)
    keys = groups.astype(np.int64).copy()
    differ = np.flatnonzero(~same)
    if len(differ):
        windows = ids[window_starts[differ, None] + offsets]
        _, exact = np.unique(np.column_stack([groups[differ], windows]), axis=0, return_inverse=True)
        keys[differ] = len(first) + exact.ravel()
    _, labels, counts = np.unique(keys, return_inverse=True, return_counts=True)
    labels = labels.ravel()
    keep = counts[labels] >= 2
    _, relabelled = np.unique(labels[keep], return_inverse=True)
    return window_starts[keep], relabelled.ravel().astype(np.int64)
