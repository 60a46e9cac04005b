"""``static``: the paper's positional baseline, every k-th token of a document.

The reference drops target positions ``start, start+k, ...`` of each shifted
row; on an unshifted document that is ``t >= 1 + start and (t - 1 - start) % k == 0``.
It is *not* content-addressed: the same passage at another offset gets another
mask, which is exactly what the paper shows to fail. ``seed`` is the start
(taken mod k).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from goldfish_prep.strategies.base import Bools, Extras, Int64s, Strategy, local_positions

if TYPE_CHECKING:
    from goldfish_prep.config import MaskConfig


def drop_local(positions: Int64s, k: int, start: int) -> Bools:
    """Drop decisions from each token's position within its document."""
    shifted = positions - (1 + start)
    drop: Bools = (shifted >= 0) & (shifted % k == 0)
    return drop


class StaticStrategy(Strategy):
    """Every k-th position from ``1 + seed % k`` on: deterministic, positional, not content-addressed."""

    name = "static"

    def drop(self, ids: npt.NDArray[np.integer], starts: Int64s, config: MaskConfig, extras: Extras | None = None) -> Bools:
        return drop_local(local_positions(starts, len(ids)), config.k, config.seed % config.k)

    def eligible_counts(self, lengths: Int64s, config: MaskConfig) -> Int64s:
        """Positions ``t >= 1 + start``, of which every k-th is dropped: the expected rate stays 1/k."""
        first = 1 + config.seed % config.k
        return np.maximum(np.asarray(lengths, dtype=np.int64) - first, 0)

    def eligible_rule(self, config: MaskConfig) -> str:
        return f"every {config.k}th position from t = {1 + config.seed % config.k} (all of them are dropped)"
