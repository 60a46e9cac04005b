"""Assembles one output shard from masked batches and keeps its accounting.

Each shard counts what it read, wrote and skipped (with reasons and locations),
so the manifest's ``read = written + skipped`` holds shard by shard, and a
resumed or multi-task run sums the same records as a single run.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import numpy as np

from goldfish_prep.config import MaskConfig
from goldfish_prep.errors import InputError
from goldfish_prep.format.folder import OutputFolder, as_folder
from goldfish_prep.format.names import shard_filename
from goldfish_prep.format.schema import shard_schema
from goldfish_prep.mask import eligible_counts
from goldfish_prep.pipeline._batch import MaskedBatch
from goldfish_prep.pipeline._packing import PackedRows, Packer
from goldfish_prep.pipeline._writer import ShardWriter, int8_list_array, int32_array, labels_from, list_array, string_array


class ShardBuilder:
    """Writes batches to shard ``index`` in document rows, or in packed rows of ``pack`` ids."""

    def __init__(
        self,
        folder: OutputFolder | Path,
        index: int,
        mask: MaskConfig,
        pack: int | None,
        pad_id: int,
        chat: bool = False,
        k: bool = False,
    ) -> None:
        self.index = index
        self.mask = mask
        self.filename = shard_filename(index)
        self.chat = chat
        self._writer = ShardWriter(as_folder(folder), self.filename, shard_schema(pack is not None, chat, k))
        self._packer = Packer(pack, pad_id) if pack is not None else None
        self.counts = collections.Counter(
            {"documents_read": 0, "documents_written": 0, "tokens": 0, "eligible_tokens": 0, "dropped_tokens": 0}
        )
        self.reasons: collections.Counter[str] = collections.Counter()
        self.skipped: list[dict[str, str]] = []

    def add(self, batch: MaskedBatch) -> None:
        """Account for a batch's errors (already allowed to be skipped) and write its documents."""
        for error in batch.errors:
            self.skip(error)
        n_docs = len(batch.doc_ids)
        self.counts["documents_read"] += n_docs
        self.counts["documents_written"] += n_docs
        if n_docs == 0:
            return
        lengths = batch.lengths
        # chat: tokens off the assistant's part are out of the loss as well as dropped ones
        labels = labels_from(batch.ids, batch.drop if batch.assistant is None else batch.drop | ~batch.assistant)
        self.counts["tokens"] += len(batch.ids)
        self.counts["eligible_tokens"] += int(eligible_counts(lengths, self.mask).sum()) if batch.eligible is None else batch.eligible
        self.counts["dropped_tokens"] += int(batch.drop.sum())
        if batch.assistant is not None:
            self.counts["assistant_tokens"] += int(batch.assistant.sum())
        if self._packer is not None:
            self._write_packed(self._packer.add(batch.ids, labels, batch.starts, batch.assistant))
            return
        offsets = np.append(batch.starts, len(batch.ids))
        dropped_per_doc = np.add.reduceat(batch.drop.astype(np.int32), batch.starts) if len(batch.ids) else np.zeros(n_docs, np.int32)
        dropped_per_doc = np.where(lengths > 0, dropped_per_doc, 0)  # reduceat repeats a value for empty segments
        columns = {
            "id": string_array(batch.doc_ids),
            "source": string_array(batch.sources),
            "input_ids": list_array(batch.ids, offsets),
            "labels": list_array(labels, offsets),
            "num_tokens": int32_array(lengths),
            "num_dropped": int32_array(dropped_per_doc),
        }
        if batch.assistant is not None:
            columns["assistant_masks"] = int8_list_array(batch.assistant, offsets)
        if batch.k is not None:
            columns["k"] = int32_array(batch.k)
        self._writer.write(columns)

    def skip(self, error: InputError) -> None:
        self.counts["documents_read"] += 1
        self.reasons[error.reason] += 1
        self.skipped.append({"location": error.location, "reason": error.reason, "cause": error.cause})

    def close(self) -> dict[str, Any]:
        """Finish the shard file, commit it (renamed into place, or uploaded) and return its completion record."""
        record = self.finish()
        self.commit()
        return record

    def commit(self) -> None:
        """Make the finished shard visible under its final name (``finish`` first); on a store, the upload."""
        self._writer.commit()

    def finish(self) -> dict[str, Any]:
        """Write the shard's last bytes and return its completion record; the shard is not visible before ``commit``."""
        if self._packer is not None:
            self._write_packed(self._packer.finish())
        checksums = self._writer.finish()  # sha256 and xxh3_128, from the one pass that wrote the file
        read, written = self.counts["documents_read"], self.counts["documents_written"]
        return {
            "index": self.index,
            "filename": self.filename,
            **checksums,
            "num_rows": self._writer.num_rows,
            "num_documents": written,
            "num_tokens": self.counts["tokens"],
            "num_dropped": self.counts["dropped_tokens"],
            **dict(self.counts),
            "documents_skipped": read - written,
            "skipped_by_reason": dict(sorted(self.reasons.items())),
            "skipped": self.skipped,
        }

    def abort(self) -> None:
        self._writer.abort()

    def cancel(self) -> None:
        """Abandon the shard's commit running in another thread (``ShardWriter.cancel``)."""
        self._writer.cancel()

    def _write_packed(self, rows: PackedRows | None) -> None:
        if rows is None:
            return
        n_rows = len(rows.num_tokens)
        seq_len = len(rows.ids) // n_rows
        row_offsets = np.arange(n_rows + 1, dtype=np.int64) * seq_len
        columns = {
            "input_ids": list_array(rows.ids, row_offsets),
            "labels": list_array(rows.labels, row_offsets),
            "num_tokens": int32_array(rows.num_tokens),
            "num_dropped": int32_array(rows.num_dropped),
            "doc_starts": list_array(rows.doc_starts, rows.doc_start_offsets),
        }
        if self.chat:
            columns["assistant_masks"] = int8_list_array(
                rows.assistant if rows.assistant is not None else np.zeros(len(rows.ids), np.bool_), row_offsets
            )
        self._writer.write(columns)
