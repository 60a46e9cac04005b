"""The ``goldfish`` strategy, spec version 1: a seeded, order-sensitive hash of each window.

Version 2 (``goldfish_v2``, the default) takes these decisions from position h
on and adds partial windows at a document's start. Spec (version 1,
docs/mask-spec.md, all arithmetic mod 2**64)::

    A = xxh64(b"goldfish-prep/v1/offset", seed)
    B = xxh64(b"goldfish-prep/v1/base",   seed) | 1
    M = xxh64(b"goldfish-prep/v1/mix",    seed) | 1
    w_t = sum_{i=0}^{h-1} (id[t-i] + A) * B**i          # window of h ids ending at t
    H_t = ((w_t ^ (w_t >> 32)) * M)
    drop t  iff  t >= h  and  H_t < 2**64 // k

Why this shape: a polynomial hash can be evaluated for *every* window at a
constant number of vectorised passes (a prefix sum, not one pass per window
position), because B is odd and so invertible mod 2**64:
``w_t = B**t * (P_t - P_{t-h})`` with ``P_t = sum_{j<=t} (id_j + A) * B**-j``.
The xor-shift-multiply finish lets the high bits, which the threshold reads,
depend on every bit of the sum. ``+ A`` keeps id 0 ordinary: an all-zero window
hashes like any other. Comparing integers against ``2**64 // k`` gives a drop
probability of 1/k to within 2**-64, with no float rounding.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import xxhash

from goldfish_prep.strategies.base import Bools, WindowHashStrategy

if TYPE_CHECKING:
    from goldfish_prep.config import MaskConfig

_MASK64 = (1 << 64) - 1
# Windows are hashed in blocks so the uint64 temporaries stay in cache; 2**15
# positions * 8 bytes * 3 buffers is about 0.75 MB.
_BLOCK = 1 << 15


def derive_constants(namespace: bytes, seed: int) -> tuple[int, int, int]:
    """(A, B, M) of a spec: xxh64 of ``namespace + b"/offset"`` (``/base``, ``/mix``) under ``seed``; B and M odd.

    Each spec hashes under its own namespace, so seeds and specs give independent hashes.

    >>> derive_constants(b"goldfish-prep/v1", 0) == hash_constants(0)
    True
    """
    offset = xxhash.xxh64_intdigest(namespace + b"/offset", seed=seed)
    base = xxhash.xxh64_intdigest(namespace + b"/base", seed=seed) | 1
    mix = xxhash.xxh64_intdigest(namespace + b"/mix", seed=seed) | 1
    return offset, base, mix


@functools.lru_cache(maxsize=64)
def hash_constants(seed: int) -> tuple[int, int, int]:
    """The spec's (A, B, M) for a seed."""
    return derive_constants(b"goldfish-prep/v1", seed)


def _powers(value: int, length: int) -> npt.NDArray[np.uint64]:
    """[value**0, value**1, ...] mod 2**64 (uint64 cumprod wraps, which is exactly mod 2**64)."""
    factors = np.full(length, value, dtype=np.uint64)
    factors[0] = 1
    return np.cumprod(factors, dtype=np.uint64)


@functools.lru_cache(maxsize=16)
def _tables(seed: int, context_width: int) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64], np.uint64, np.uint64]:
    offset, base, mix = hash_constants(seed)
    length = _BLOCK + context_width
    base_powers = _powers(base, length)
    inverse_powers = _powers(pow(base, -1, 1 << 64), length)
    # sum_{i<h} A * B**i: the per-token offset folded into one constant per window.
    window_offset = (offset * int(base_powers[:context_width].sum(dtype=np.uint64))) & _MASK64
    return base_powers, inverse_powers, np.uint64(window_offset), np.uint64(mix)


def window_hashes(ids: npt.NDArray[np.integer], context_width: int, seed: int) -> npt.NDArray[np.uint64]:
    """H_t for every t >= context_width of a flat id array; entries t < context_width are 0.

    Windows that straddle two documents of a flat batch are computed too; the
    caller discards them (a document's first ``context_width`` positions are
    never eligible, which is exactly the set of straddling windows).
    """
    h = context_width
    n = len(ids)
    out = np.zeros(n, dtype=np.uint64)
    if n <= h:
        return out
    base_powers, inverse_powers, window_offset, mix = _tables(seed, h)
    prefix = np.empty(_BLOCK + h, dtype=np.uint64)
    shifted = np.empty(_BLOCK, dtype=np.uint64)
    for start in range(h, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        length = stop - start + h
        # ids[start-h : stop] (uint32/int64 -> uint64 cast inside the ufunc), times B**-j
        p = prefix[:length]
        np.multiply(ids[start - h : stop], inverse_powers[:length], out=p, dtype=np.uint64, casting="unsafe")
        np.cumsum(p, out=p)
        w = out[start:stop]
        np.subtract(p[h:], p[:-h], out=w)  # sum over the window j in (i-h, i]
        np.multiply(w, base_powers[h:length], out=w)  # undo B**-j: now sum id * B**(t-j)
        np.add(w, window_offset, out=w)
        s = shifted[: stop - start]
        np.right_shift(w, np.uint64(32), out=s)
        np.bitwise_xor(w, s, out=w)
        np.multiply(w, mix, out=w)
    return out


def drop_flat(ids: npt.NDArray[np.integer], context_width: int, k: int, seed: int) -> npt.NDArray[np.bool_]:
    """Drop decisions for every position of a flat array, before the per-document eligibility rule."""
    threshold = np.uint64((1 << 64) // k)
    drop: npt.NDArray[np.bool_] = window_hashes(ids, context_width, seed) < threshold
    drop[: min(context_width, len(ids))] = False
    return drop


class GoldfishV1Strategy(WindowHashStrategy):
    """Seeded, order-sensitive, spec version 1 (above): a document's first h positions are never dropped."""

    name = "goldfish"
    spec_version = 1
    coverage_fix = "mask again without --spec-version 1 (goldfish spec version 2, the default, makes every token eligible)"
    masks_chat_answers = True  # answer-local v1 (answer_local.py) extends this hash to answers

    def drop_flat(self, ids: npt.NDArray[np.integer], config: MaskConfig) -> Bools:
        return drop_flat(ids, config.context_width, config.k, config.seed)
