"""The default ``goldfish`` strategy, spec version 2: spec v1 with every document's head covered.

Spec v1 never drops a document's first h tokens (their window would reach
before the document). On corpora of short documents (one record per line,
titles, short answers in text form) that is most of the corpus, and a short
document repeated many times is learned verbatim as with standard loss. Spec
v2 hashes the ids since the document's start at those positions, with the
missing length folded into the hash (``partial_windows``, the rule chat
answers already used), so every position is dropped with probability 1/k, the
first included. From position h on every decision is spec v1's, bit for bit::

    t >= h:  drop t  iff  H_t (spec v1) < 2**64 // k
    t <  h:  drop t  iff  H_t (partial window ids[0..t], L = t + 1) < 2**64 // k
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from goldfish_prep.strategies.base import Bools, Extras, Int64s
from goldfish_prep.strategies.goldfish import GoldfishV1Strategy
from goldfish_prep.strategies.partial_windows import partial_window_hashes

if TYPE_CHECKING:
    from goldfish_prep.config import MaskConfig

#: The newest version of the ``goldfish`` spec (docs/mask-spec.md), the default; the manifest records the one used.
GOLDFISH_SPEC_VERSION = 2


def drop_documents(ids: npt.NDArray[np.integer], starts: Int64s, context_width: int, k: int, seed: int) -> Bools:
    """Spec v2 decisions for a flat batch: every position, each document's first h on partial windows."""
    drop: Bools = partial_window_hashes(ids, starts, context_width, seed) < np.uint64((1 << 64) // k)
    return drop


class GoldfishStrategy(GoldfishV1Strategy):
    """The default: spec v1's decisions from position h on, partial windows before (the spec above)."""

    spec_version = GOLDFISH_SPEC_VERSION
    coverage_fix = "check the counts: under goldfish spec version 2 every token is eligible"

    def drop(self, ids: npt.NDArray[np.integer], starts: Int64s, config: MaskConfig, extras: Extras | None = None) -> Bools:
        return drop_documents(ids, np.asarray(starts, dtype=np.int64), config.context_width, config.k, config.seed)

    def eligible_counts(self, lengths: Int64s, config: MaskConfig) -> Int64s:
        counts: Int64s = np.array(lengths, dtype=np.int64)
        return counts

    def eligible_rule(self, config: MaskConfig) -> str:
        return f"every position (the first {config.context_width} of a document hash the ids since its start)"
