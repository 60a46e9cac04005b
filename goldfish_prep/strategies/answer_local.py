"""Answer-local goldfish: the mask inside a conversation's assistant tokens ("answer-local v1").

Each maximal run of assistant tokens (one answer) is masked as a sequence of
its own, so the same answer gets the same drops after any prompt, at any turn,
in any conversation: no window reaches into the prompt or the markup. Windows
at an answer's start are shorter instead of absent, so an answer shorter than
``h`` still loses about 1 token in k. Spec (docs/mask-spec.md), mod 2**64, with
A, B, M of the ``goldfish`` spec v1 for the seed and
``D = xxh64(b"goldfish-prep/v1/partial", seed)``::

    for position t of an answer x[0..m-1]:  lo = max(0, t - h + 1),  L = t - lo + 1
    w_t = sum_{i=0}^{L-1} (x[t-i] + A) * B**i  +  (h - L) * D
    H_t = (w_t ^ (w_t >> 32)) * M
    drop t  iff  t is eligible  and  H_t < 2**64 // k

For L = h the term ``(h - L) * D`` vanishes and ``H_t`` is the document rule's,
so a long answer's mask from its h-th token on equals the ``goldfish`` mask of
the same ids. ``(h - L) * D`` separates the lengths of partial windows.
Ineligible tokens (special tokens, ``--keep-ids``) are never dropped but stay
in the windows of the tokens after them: the decision for any token depends
only on the answer's own ids.

Not a ``Strategy`` in ``REGISTRY``: it is how the ``goldfish`` strategy (spec
v1, whose hash it extends) masks the answers of chat records
(``chat.masking``); ``--strategy none`` drops nothing there either.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt
import xxhash

from goldfish_prep.strategies.goldfish import hash_constants

RULE = "answer-local v1"


@functools.lru_cache(maxsize=64)
def partial_constant(seed: int) -> int:
    """The spec's D for a seed."""
    return xxhash.xxh64_intdigest(b"goldfish-prep/v1/partial", seed=seed)


def _powers(value: int, length: int) -> npt.NDArray[np.uint64]:
    factors = np.full(length, value, dtype=np.uint64)
    if length:
        factors[0] = 1
    return np.cumprod(factors, dtype=np.uint64)  # uint64 products wrap: exactly mod 2**64


def answer_hashes(
    ids: npt.NDArray[np.integer], run_starts: npt.NDArray[np.integer], context_width: int, seed: int
) -> npt.NDArray[np.uint64]:
    """H_t for every position of ``ids``: answers end to end, ``run_starts[j]`` where answer j begins (first 0).

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


def answer_drops(
    ids: npt.NDArray[np.integer],
    run_starts: npt.NDArray[np.integer],
    eligible: npt.NDArray[np.bool_],
    k: npt.NDArray[np.integer] | int,
    context_width: int,
    seed: int,
) -> npt.NDArray[np.bool_]:
    """Drop decisions for answers end to end; ``k`` per position (0: never dropped) or one k for all.

    >>> ids = np.array([9, 8, 7, 6, 9, 8, 7, 6])
    >>> drop = answer_drops(ids, np.array([0, 4]), np.ones(8, bool), 2, 13, 0)
    >>> drop[:4].tolist() == drop[4:].tolist()   # the same answer, the same drops
    True
    """
    hashes = answer_hashes(ids, run_starts, context_width, seed)
    k_array = np.broadcast_to(np.asarray(k, dtype=np.int64), hashes.shape)
    # one threshold per distinct k (few of them); k = 0 gets threshold 0, which no hash is below
    values, which = np.unique(k_array, return_inverse=True)
    table = np.array([(1 << 64) // int(v) if v >= 2 else 0 for v in values], dtype=np.uint64)
    thresholds = table[which.reshape(-1)] if len(values) else np.zeros(0, dtype=np.uint64)
    result: npt.NDArray[np.bool_] = (hashes < thresholds) & np.asarray(eligible, dtype=np.bool_)
    return result
