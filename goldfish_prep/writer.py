"""Writes one shard: Arrow IPC stream batches to a temporary name, renamed when complete.

Shards are Arrow *stream* files because that is what ``datasets.save_to_disk``
writes and ``load_from_disk`` memory-maps. Uncompressed on purpose: IPC writes
at GB/s and reads with zero copies; compression would cost more CPU than the
masks themselves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from goldfish_prep.atomic import file_sha256, fsync_and_rename
from goldfish_prep.dataset import IGNORE_INDEX
from goldfish_prep.naming import partial_path


def labels_from(ids: npt.NDArray[np.int32], drop: npt.NDArray[np.bool_]) -> npt.NDArray[np.int32]:
    """HF labels (unshifted): the id, or -100 where the token is dropped from the loss."""
    return np.where(drop, np.int32(IGNORE_INDEX), ids).astype(np.int32, copy=False)


def list_array(values: npt.NDArray[np.int32], offsets: npt.NDArray[np.int64]) -> pa.ListArray:
    """A list<int32> column from flat values and row offsets (zero-copy for the values)."""
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values, type=pa.int32()))


class ShardWriter:
    """Streams record batches into ``final``'s temporary name; ``close`` renames and returns the sha256."""

    def __init__(self, final: Path, schema: pa.Schema) -> None:
        self.final = final
        self.schema = schema
        self._temporary = partial_path(final)
        self._sink = pa.OSFile(str(self._temporary), "wb")
        self._writer = pa.ipc.new_stream(self._sink, schema)
        self.num_rows = 0

    def write(self, columns: dict[str, pa.Array]) -> None:
        batch = pa.RecordBatch.from_arrays([columns[field.name] for field in self.schema], schema=self.schema)
        self._writer.write_batch(batch)
        self.num_rows += batch.num_rows

    def close(self) -> str:
        """Finish the stream, make it durable under its final name, and return its sha256."""
        self._writer.close()
        self._sink.close()
        digest = file_sha256(self._temporary)
        fsync_and_rename(self._temporary, self.final)
        return digest

    def abort(self) -> None:
        """Drop the unfinished temporary file (the final name is never touched)."""
        try:
            self._writer.close()
            self._sink.close()
        finally:
            self._temporary.unlink(missing_ok=True)
