"""Windows that stop at a sequence's start: the hash of goldfish spec v2 and of answer-local v1.

At a document's (or an answer's) start fewer than h ids precede a token. Spec
v1 leaves those tokens out of every decision, so a short document is never
masked. Here the window holds the ids since the sequence's start (L of them,
L <= h) and the missing length is folded into the hash (docs/mask-spec.md),
mod 2**64, with A, B, M of the goldfish spec v1 for the seed and
``D = xxh64(b"goldfish-prep/v1/partial", seed)``::

    lo = max(start, t - h + 1),  L = t - lo + 1
    w_t = sum_{i=0}^{L-1} (x[t-i] + A) * B**i  +  (h - L) * D
    H_t = (w_t ^ (w_t >> 32)) * M

For L = h the extra term vanishes and H_t is the goldfish spec v1's, so from
position h on both versions take identical decisions. A partial window is
never hashed as the same input as a full one: its length is part of ``w``
(padding with a fixed id instead would equate ``[a, b]`` at a document's
start with ``[pad, ..., a, b]`` anywhere).
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt
import xxhash

from goldfish_prep.strategies.goldfish import hash_constants, window_hashes

_MASK64 = (1 << 64) - 1


@functools.lru_cache(maxsize=64)
def partial_constant(seed: int) -> int:
    """The spec's D for a seed."""
    return xxhash.xxh64_intdigest(b"goldfish-prep/v1/partial", seed=seed)


#: sequences whose heads are hashed together: (h, 2**15) uint64 temporaries, about 3.4 MB at h = 13
_CHUNK = 1 << 15


def partial_window_hashes(
    ids: npt.NDArray[np.integer], run_starts: npt.NDArray[np.integer], context_width: int, seed: int
) -> npt.NDArray[np.uint64]:
    """H_t for every position of ``ids``: sequences end to end, ``run_starts[j]`` where sequence j begins (first 0).

    Each window holds the ids since its sequence's start, at most ``context_width``.
    Full windows are spec v1's kernel (``goldfish.window_hashes``, blocked prefix
    sums); the first ``context_width`` positions of each sequence, whose v1 values
    straddle the sequence before, are then recomputed by Horner's rule,
    ``w_j = w_{j-1} * B + (x_j + A)``, on a (position, sequence) table: one
    vectorised step per position for all sequences of a chunk at once.

    >>> ids = np.array([7, 8, 9, 7, 8])
    >>> h = partial_window_hashes(ids, np.array([0, 3]), 13, 0)
    >>> h[:2].tolist() == h[3:].tolist()   # the same ids at a sequence's start, the same hashes
    True
    """
    flat = np.asarray(ids)
    n = len(flat)
    hashes = window_hashes(flat, context_width, seed) if n > context_width else np.zeros(n, dtype=np.uint64)
    if n == 0:
        return hashes
    starts = np.asarray(run_starts, dtype=np.int64)
    lengths = np.diff(np.append(starts, n))
    width = min(context_width, int(lengths.max()))
    offset, base, mix = hash_constants(seed)
    steps = np.arange(width, dtype=np.int64)
    # (h - L) * D for the window of L = j + 1 ids, one per row
    missing = np.array([((context_width - 1 - j) * partial_constant(seed)) & _MASK64 for j in range(width)], dtype=np.uint64)[:, None]
    for a in range(0, len(starts), _CHUNK):
        positions = steps[:, None] + starts[None, a : a + _CHUNK]  # (width, sequences): row j = each sequence's position j
        inside = steps[:, None] < lengths[None, a : a + _CHUNK]
        np.minimum(positions, n - 1, out=positions)  # rows past a short sequence's end read any id; they are discarded
        w = flat[positions].astype(np.uint64)
        w += np.uint64(offset)
        for j in range(1, width):
            w[j] += w[j - 1] * np.uint64(base)  # uint64 wraps: exactly mod 2**64
        w += missing
        w ^= w >> np.uint64(32)
        w *= np.uint64(mix)
        hashes[positions[inside]] = w[inside]
    return hashes
