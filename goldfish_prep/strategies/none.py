"""``none``: the standard-loss control. Nothing is dropped, so no position is eligible."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from goldfish_prep.strategies.base import Bools, Extras, Int64s, Strategy

if TYPE_CHECKING:
    from goldfish_prep.config import MaskConfig


class NoneStrategy(Strategy):
    """Same format and files as a masked run, every label equal to its id."""

    name = "none"
    masks_chat_answers = True  # nothing is dropped, answers included

    def drop(self, ids: npt.NDArray[np.integer], starts: Int64s, config: MaskConfig, extras: Extras | None = None) -> Bools:
        return np.zeros(len(ids), dtype=np.bool_)

    def eligible_counts(self, lengths: Int64s, config: MaskConfig) -> Int64s:
        return np.zeros_like(np.asarray(lengths, dtype=np.int64))

    def expected_rate(self, config: MaskConfig) -> float:
        return 0.0

    def eligible_rule(self, config: MaskConfig) -> str:
        return "none: strategy none drops nothing"
