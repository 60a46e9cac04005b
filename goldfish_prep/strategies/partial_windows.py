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

from goldfish_prep.strategies.goldfish import hash_constants


@functools.lru_cache(maxsize=64)
def partial_constant(seed: int) -> int:
    """The spec's D for a seed."""
    return xxhash.xxh64_intdigest(b"goldfish-prep/v1/partial", seed=seed)


def _powers(value: int, length: int) -> npt.NDArray[np.uint64]:
    factors = np.full(length, value, dtype=np.uint64)
    if length:
        factors[0] = 1
    return np.cumprod(factors, dtype=np.uint64)  # uint64 products wrap: exactly mod 2**64


def partial_window_hashes(
    ids: npt.NDArray[np.integer], run_starts: npt.NDArray[np.integer], context_width: int, seed: int
) -> npt.NDArray[np.uint64]:
    """H_t for every position of ``ids``: sequences end to end, ``run_starts[j]`` where sequence j begins (first 0).

    Each window holds the ids since its sequence's start, at most ``context_width``.

    Uses prefix sums: with ``P_t = sum_{j<=t} (ids[j] + A) * B**-j`` (B is odd,
    so invertible mod 2**64), ``sum_{j=lo}^{t} (ids[j] + A) * B**(t-j) = B**t * (P_t - P_{lo-1})``.
    """
    n = len(ids)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    offset, base, mix = hash_constants(seed)
    inverse = pow(base, -1, 1 << 64)
    with np.errstate(over="ignore"):
        terms = np.asarray(ids, dtype=np.uint64) + np.uint64(offset)
        terms *= _powers(inverse, n)
        prefix = np.zeros(n + 1, dtype=np.uint64)
        np.cumsum(terms, out=prefix[1:])
        positions = np.arange(n, dtype=np.int64)
        starts = np.asarray(run_starts, dtype=np.int64)
        run_of = np.searchsorted(starts, positions, side="right") - 1
        low = np.maximum(starts[run_of], positions - context_width + 1)
        window = (prefix[1:] - prefix[low]) * _powers(base, n)
        missing = (context_width - (positions - low + 1)).astype(np.uint64)
        window += missing * np.uint64(partial_constant(seed))
        window ^= window >> np.uint64(32)
        window *= np.uint64(mix)
    hashes: npt.NDArray[np.uint64] = window
    return hashes
