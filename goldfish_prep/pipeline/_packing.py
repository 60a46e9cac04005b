"""``--pack SEQ_LEN``: concatenate masked documents into fixed-length rows.

Masks are computed per document *before* packing, so packing only moves labels
around: each token keeps the label it had in its document, and a passage keeps
its content-addressed mask whatever row or offset it lands in. Each shard packs
its own documents (its last row is padded with label -100), so shards stay
independent units for ``--resume`` and ``--num-tasks``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from goldfish_prep.format.names import IGNORE_INDEX


@dataclasses.dataclass
class PackedRows:
    """``rows`` rows of ``seq_len``: flat int32 ids and labels, per-row counts, and document starts."""

    ids: npt.NDArray[np.int32]
    labels: npt.NDArray[np.int32]
    num_tokens: npt.NDArray[np.int32]
    doc_starts: npt.NDArray[np.int32]  # flat offsets within rows
    doc_start_offsets: npt.NDArray[np.int64]  # row i's starts: doc_starts[o[i]:o[i+1]]
    assistant: npt.NDArray[np.bool_] | None = None  # chat: the assistant's tokens (padding False)

    @property
    def num_dropped(self) -> npt.NDArray[np.int32]:
        rows = len(self.num_tokens)
        if self.assistant is not None:  # chat: prompt tokens are -100 too, but only the assistant's are dropped
            return np.asarray(((self.labels == IGNORE_INDEX) & self.assistant).reshape(rows, -1).sum(axis=1), dtype=np.int32)
        dropped = (self.labels == IGNORE_INDEX).reshape(rows, -1).sum(axis=1)
        padding = self.labels.reshape(rows, -1).shape[1] - self.num_tokens
        return np.asarray(dropped - padding, dtype=np.int32)


class Packer:
    """Accumulates documents and emits full rows; ``finish`` pads the remainder."""

    def __init__(self, seq_len: int, pad_id: int) -> None:
        self.seq_len = seq_len
        self.pad_id = pad_id
        self._ids = np.zeros(0, dtype=np.int32)
        self._labels = np.zeros(0, dtype=np.int32)
        self._is_start = np.zeros(0, dtype=np.bool_)
        self._assistant: npt.NDArray[np.bool_] | None = None

    def add(
        self,
        ids: npt.NDArray[np.int32],
        labels: npt.NDArray[np.int32],
        starts: npt.NDArray[np.int64],
        assistant: npt.NDArray[np.bool_] | None = None,
    ) -> PackedRows | None:
        """Append a flat batch of documents (``starts``: where each begins); return the rows now full."""
        is_start = np.zeros(len(ids), dtype=np.bool_)
        is_start[starts[starts < len(ids)]] = True
        self._ids = np.concatenate([self._ids, ids])
        self._labels = np.concatenate([self._labels, labels])
        self._is_start = np.concatenate([self._is_start, is_start])
        if assistant is not None:
            held = self._assistant if self._assistant is not None else np.zeros(0, dtype=np.bool_)
            self._assistant = np.concatenate([held, assistant])
        full = len(self._ids) // self.seq_len * self.seq_len
        if full == 0:
            return None
        rows = self._rows(self._ids[:full], self._labels[:full], self._is_start[:full], np.full(full // self.seq_len, self.seq_len))
        rows.assistant = None if self._assistant is None else self._assistant[:full]
        self._ids, self._labels, self._is_start = self._ids[full:], self._labels[full:], self._is_start[full:]
        if self._assistant is not None:
            self._assistant = self._assistant[full:]
        return rows

    def finish(self) -> PackedRows | None:
        """The last, partial row padded to ``seq_len`` (pad id, label -100), or None if nothing is left."""
        used = len(self._ids)
        if used == 0:
            return None
        pad = self.seq_len - used
        ids = np.concatenate([self._ids, np.full(pad, self.pad_id, dtype=np.int32)])
        labels = np.concatenate([self._labels, np.full(pad, IGNORE_INDEX, dtype=np.int32)])
        is_start = np.concatenate([self._is_start, np.zeros(pad, dtype=np.bool_)])
        self._ids, self._labels, self._is_start = self._ids[:0], self._labels[:0], self._is_start[:0]
        rows = self._rows(ids, labels, is_start, np.array([used]))
        if self._assistant is not None:
            rows.assistant = np.concatenate([self._assistant, np.zeros(pad, dtype=np.bool_)])
            self._assistant = self._assistant[:0]
        return rows

    def _rows(
        self, ids: npt.NDArray[np.int32], labels: npt.NDArray[np.int32], is_start: npt.NDArray[np.bool_], used: npt.NDArray[np.int64]
    ) -> PackedRows:
        positions = np.flatnonzero(is_start)
        row_of = positions // self.seq_len
        offsets = np.searchsorted(row_of, np.arange(len(used) + 1)).astype(np.int64)
        return PackedRows(
            ids=ids,
            labels=labels,
            num_tokens=used.astype(np.int32),
            doc_starts=(positions % self.seq_len).astype(np.int32),
            doc_start_offsets=offsets,
        )
