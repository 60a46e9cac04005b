"""Chat shards as columns: which tokens are the assistant's, where each answer lies, each row's k.

A chat output (docs/format.md, "Chat shards") carries ``assistant_masks``
(int8, 1 on the assistant's part of each turn) next to ``input_ids`` and
``labels``, and optionally a per-row ``k`` (``--k-field``, 0 = standard loss).
The goldfish mask is applied to each *answer*, a maximal run of assistant
tokens, as a sequence of its own; so every consumer (stats, show, verify,
repeats, the trainer, memorisation) needs the same two things: the assistant
flags as a flat array, and the answers as (start, end) pairs that never cross
a document. They are part of the format, computed here on whole shards with no
Python loop over tokens. (``readers/chat_columns.py`` is another matter: it
finds the conversation fields of *input* tables.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from goldfish_prep.config import MaskConfig
from goldfish_prep.errors import InputError
from goldfish_prep.format.columns import Int64s, TokenStream, int_column, list_values
from goldfish_prep.format.location import Location
from goldfish_prep.format.manifest import is_chat
from goldfish_prep.format.schema import ASSISTANT_COLUMN, K_COLUMN

Bools = npt.NDArray[np.bool_]

_RECREATE = "Run `goldfish-prep verify` on the folder, or recreate it with `goldfish-prep mask`"


def assistant_flags(table: Any, path: Location, stream: TokenStream) -> Bools:
    """The ``assistant_masks`` column as one flag per token of ``stream`` (padding left out, like the stream)."""
    values, offsets = list_values(table, ASSISTANT_COLUMN, path)
    if not np.array_equal(offsets, stream.raw_offsets):
        row = int(np.flatnonzero(np.diff(offsets) != np.diff(stream.raw_offsets))[0]) if len(offsets) == len(stream.raw_offsets) else 0
        raise InputError(f"{path} row {row}", "assistant_masks and input_ids differ in length", _RECREATE, "bad-shard")
    bad = np.flatnonzero((values != 0) & (values != 1))
    if len(bad):
        raise InputError(f"{path}", f"assistant_masks holds {int(values[bad[0]])}; its values are 0 and 1", _RECREATE, "bad-shard")
    flags: Bools = values.astype(np.bool_)
    if len(stream.padding):
        flags = np.delete(flags, stream.padding)
    return flags


def run_k(config: MaskConfig) -> int:
    """The k of rows that carry none: the run's ``--k``, or 0 (nothing dropped) for a strategy that drops nothing."""
    return config.k if config.strategy_object.expected_rate(config) > 0 else 0


def row_k(table: Any, path: Location) -> Int64s | None:
    """Each row's own k (``--k-field``; 0: standard loss for that row), or None when rows carry none."""
    if K_COLUMN not in table.column_names:
        return None
    return int_column(table, K_COLUMN, path)


def answer_spans(assistant: Bools, doc_starts: Int64s) -> tuple[Int64s, Int64s]:
    """(starts, ends) of the answers: maximal runs of assistant tokens, cut where a document begins.

    >>> s, e = answer_spans(np.array([0, 1, 1, 0, 1, 1, 1], bool), np.array([0, 5]))
    >>> s.tolist(), e.tolist()
    ([1, 4, 5], [3, 5, 7])
    """
    n = len(assistant)
    flags = assistant.astype(np.int8)
    edges = np.diff(np.concatenate([[0], flags, [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    cuts = np.asarray(doc_starts, dtype=np.int64)
    cuts = cuts[(cuts > 0) & (cuts < n)]
    inside = cuts[assistant[cuts] & assistant[cuts - 1]]  # a document begins inside a run: split it there
    all_starts = np.sort(np.concatenate([starts, inside])).astype(np.int64)
    all_ends = np.sort(np.concatenate([ends, inside])).astype(np.int64)
    return all_starts, all_ends


def answer_positions(starts: Int64s, ends: Int64s, n: int) -> tuple[Int64s, Int64s]:
    """(answer index, position inside the answer) of every token; -1 for tokens outside answers."""
    index = np.full(n, -1, dtype=np.int64)
    local = np.full(n, -1, dtype=np.int64)
    lengths = ends - starts
    covered = np.repeat(np.arange(len(starts), dtype=np.int64), lengths)
    where = np.repeat(starts, lengths) + (np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths))
    index[where] = covered
    local[where] = where - starts[covered]
    return index, local


__all__ = ["ASSISTANT_COLUMN", "K_COLUMN", "Bools", "answer_positions", "answer_spans", "assistant_flags", "is_chat", "row_k", "run_k"]
