"""Recomputing masks whose eligible positions depend on the tokens (``robust``) from a shard.

A robust mask depends on the text the ids spell, and so do its eligible
positions (a token that spells nothing, or ends before the document's first h
words, is never dropped). ``verify`` and ``stats`` therefore cannot count
eligible positions from lengths as for the other strategies; they recompute
both here. A packed stream that opens inside a document is continued from the
whole open document (``prefix``): a robust window reaches back h words, not a
fixed number of ids.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from goldfish_prep.config import MaskConfig
from goldfish_prep.format.columns import Int32s, Int64s, TokenStream
from goldfish_prep.strategies.robust import TokenBytes, decide_config


def robust_recompute(stream: TokenStream, prefix: Int32s, config: MaskConfig, table: TokenBytes) -> tuple[npt.NDArray[np.bool_], Int64s]:
    """(drop for every token of the stream, eligible positions per row), with the recorded tokenizer's ``table``."""
    starts = stream.doc_starts.astype(np.int64)
    if len(prefix) or not (len(starts) and starts[0] == 0):
        starts = np.concatenate([[0], starts + len(prefix)]).astype(np.int64)
    ids = np.concatenate([prefix, stream.ids]) if len(prefix) else stream.ids
    if len(ids) == 0:
        return np.zeros(0, np.bool_), np.zeros(len(stream.row_starts) - 1, np.int64)
    # per position, not per document: a packed row may hold part of a document
    drop, eligible = decide_config(ids, starts, table, config)
    drop, eligible = drop[len(prefix) :], eligible[len(prefix) :]
    running = np.zeros(len(eligible) + 1, dtype=np.int64)
    np.cumsum(eligible, out=running[1:])
    return drop, running[stream.row_starts[1:]] - running[stream.row_starts[:-1]]
