"""The binomial band: how far a dropped count may stray from ``p`` times its eligible positions by chance.

If every eligible position is dropped independently with probability ``p``
(1/k for the hash strategies), a document with ``e`` eligible positions drops
Binomial(e, p) tokens. Hash decisions are independent for distinct windows, but
a window repeated inside a document repeats its decision, so documents full of
repeated text spread wider than the band: exactly the ones worth a look.

Tails are exact (log-factorials, no scipy), computed only for the documents a
normal-approximation screen puts near the edge and only over the pmf's
non-negligible middle, so the work stays small whatever the lengths.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Int64s = npt.NDArray[np.int64]

#: documents whose z-score (with continuity correction) stays below this are inside any band
#: of level <= 0.9999: the exact band edges lie beyond |z| = 2.5 for every e and p (tests check it).
_SCREEN_Z = 2.0
#: below this many eligible positions the normal screen is not trusted: every such count is checked exactly
_SMALL = 64
_LOG_FACTORIALS = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, 256, dtype=np.float64)))])


def _log_factorial(n: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """log(n!) for each n: a table below 256, Stirling's series above (error below 1e-15 there)."""
    out = np.empty(n.shape, dtype=np.float64)
    small = n < len(_LOG_FACTORIALS)
    out[small] = _LOG_FACTORIALS[n[small]]
    m = n[~small].astype(np.float64)
    out[~small] = m * np.log(m) - m + 0.5 * np.log(2 * np.pi * m) + 1 / (12 * m) - 1 / (360 * m**3) + 1 / (1260 * m**5)
    return out


def _limits(n: int, p: float, tail: float) -> tuple[int, int]:
    """Exact band edges for one n, from the pmf over mean +- 40 standard deviations (the mass beyond is < 1e-300)."""
    reach = 40.0 * float(np.sqrt(n * p * (1.0 - p))) + 40.0
    first, last = max(0, int(n * p - reach)), min(n, int(n * p + reach) + 1)
    x = np.arange(first, last + 1, dtype=np.int64)
    log_pmf = _log_factorial(np.array([n]))[0] - _log_factorial(x) - _log_factorial(n - x) + x * np.log(p) + (n - x) * np.log1p(-p)
    pmf = np.exp(log_pmf)
    low = first + int(np.searchsorted(np.cumsum(pmf), tail))
    high = first + int(np.count_nonzero(np.cumsum(pmf[::-1])[::-1] >= tail)) - 1
    return low, high


def band_limits(eligible: npt.ArrayLike, p: float, level: float = 0.999) -> tuple[Int64s, Int64s]:
    """(lowest, highest) dropped counts inside the central ``level`` band, for each eligible count.

    ``lowest`` is the smallest d with P(X <= d) >= (1 - level) / 2; ``highest``
    the largest d with P(X >= d) >= (1 - level) / 2. Cost: O(sqrt(n)) per distinct n.

    >>> band_limits([0, 100, 1000], 0.25)
    (array([  0,  12, 206]), array([  0,  40, 296]))
    """
    e = np.asarray(eligible, dtype=np.int64)
    if p <= 0.0 or p >= 1.0:
        fixed = e if p >= 1.0 else np.zeros_like(e)
        return fixed.copy(), fixed.copy()
    unique, inverse = np.unique(e, return_inverse=True)
    tail = (1.0 - level) / 2.0
    edges = np.array([_limits(n, p, tail) for n in unique.tolist()], dtype=np.int64).reshape(-1, 2)
    return edges[inverse, 0].reshape(e.shape), edges[inverse, 1].reshape(e.shape)


def outside_band(eligible: npt.ArrayLike, dropped: npt.ArrayLike, p: float, level: float = 0.999) -> npt.NDArray[np.bool_]:
    """True where a dropped count lies outside the central ``level`` band for its eligible count.

    >>> outside_band([100, 100, 100], [25, 45, 5], 0.25).tolist()
    [False, True, True]
    """
    e = np.asarray(eligible, dtype=np.int64)
    d = np.asarray(dropped, dtype=np.int64)
    if p <= 0.0 or p >= 1.0:
        low, high = band_limits(e, p, level)
        return (d < low) | (d > high)
    mean = e * p
    spread = np.sqrt(e * p * (1.0 - p))
    candidates = np.flatnonzero((np.abs(d - mean) - 0.5 > _SCREEN_Z * spread) | (e < _SMALL) | (d > e) | (d < 0))
    result = np.zeros(e.shape, dtype=np.bool_)
    if len(candidates):
        low, high = band_limits(e[candidates], p, level)
        result[candidates] = (d[candidates] < low) | (d[candidates] > high)
    return result
