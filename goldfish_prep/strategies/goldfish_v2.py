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
from goldfish_prep.strategies.goldfish import GoldfishV1Strategy, drop_flat
from goldfish_prep.strategies.partial_windows import partial_window_hashes

if TYPE_CHECKING:
    from goldfish_prep.config import MaskConfig

#: The newest version of the ``goldfish`` spec (docs/mask-spec.md), the default; the manifest records the one used.
GOLDFISH_SPEC_VERSION = 2


def head_positions(starts: Int64s, n: int, width: int) -> tuple[Int64s, Int64s]:
    """(positions t < ``width`` of every document of a flat batch of ``n`` ids, where each document's head begins in them).

    >>> [p.tolist() for p in head_positions(np.array([0, 2, 7]), 8, 3)]
    [[0, 1, 2, 3, 4, 7], [0, 2, 5]]
    """
    lengths = np.diff(np.append(starts, n))
    heads = np.minimum(lengths, width)
    head_starts = np.zeros(len(starts), dtype=np.int64)
    np.cumsum(heads[:-1], out=head_starts[1:])
    local = np.arange(int(heads.sum()), dtype=np.int64) - np.repeat(head_starts, heads)
    return np.repeat(starts, heads) + local, head_starts


def drop_documents(ids: npt.NDArray[np.integer], starts: Int64s, context_width: int, k: int, seed: int) -> Bools:
    """Spec v2 decisions for a flat batch: spec v1's kernel, then each document's first h positions from partial windows."""
    drop = drop_flat(ids, context_width, k, seed)  # every position a document's first h overwrite below
    positions, head_starts = head_positions(starts, len(ids), context_width)
    if len(positions):
        hashes = partial_window_hashes(np.asarray(ids)[positions], head_starts, context_width, seed)
        drop[positions] = hashes < np.uint64((1 << 64) // k)
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
