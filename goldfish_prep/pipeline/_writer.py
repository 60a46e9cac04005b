"""Writes one shard: Arrow IPC stream batches to a temporary name, renamed when complete.

Shards are Arrow *stream* files because that is what ``datasets.save_to_disk``
writes and ``load_from_disk`` memory-maps. Uncompressed on purpose: IPC writes
at GB/s and reads with zero copies; compression would cost more CPU than the
masks themselves.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from goldfish_prep.atomic import fsync_and_rename, write_failure
from goldfish_prep.format.names import IGNORE_INDEX, partial_path


def labels_from(ids: npt.NDArray[np.int32], drop: npt.NDArray[np.bool_]) -> npt.NDArray[np.int32]:
    """HF labels (unshifted): the id, or -100 where the token is dropped from the loss."""
    return np.where(drop, np.int32(IGNORE_INDEX), ids).astype(np.int32, copy=False)


# Columns are built from buffers, never with ``pa.array``: that call imports pandas
# (about 0.5 s per process) to check for pandas inputs, a real share of a small job.


def int32_array(values: npt.ArrayLike) -> pa.Array:
    """An int32 column from a numpy array (zero-copy when it is already contiguous int32)."""
    array = np.ascontiguousarray(values, dtype=np.int32)
    return pa.Array.from_buffers(pa.int32(), len(array), [None, pa.py_buffer(array)])


def list_array(values: npt.NDArray[np.int32], offsets: npt.NDArray[np.int64]) -> pa.Array:
    """A list<int32> column from flat values and row offsets (``len(offsets) == rows + 1``)."""
    row_offsets = np.ascontiguousarray(offsets, dtype=np.int32)  # a batch holds far fewer than 2**31 ids
    return pa.Array.from_buffers(
        pa.list_(pa.int32()), len(row_offsets) - 1, [None, pa.py_buffer(row_offsets)], children=[int32_array(values)]
    )


def int8_list_array(values: npt.NDArray[np.generic], offsets: npt.NDArray[np.int64]) -> pa.Array:
    """A list<int8> column (0/1 flags such as ``assistant_masks``) from flat values and row offsets."""
    flags = np.ascontiguousarray(values, dtype=np.int8)
    child = pa.Array.from_buffers(pa.int8(), len(flags), [None, pa.py_buffer(flags)])
    row_offsets = np.ascontiguousarray(offsets, dtype=np.int32)
    return pa.Array.from_buffers(pa.list_(pa.int8()), len(row_offsets) - 1, [None, pa.py_buffer(row_offsets)], children=[child])


def string_array(strings: list[str]) -> pa.Array:
    """A string column; characters UTF-8 cannot hold (lone surrogates) become U+FFFD."""
    encoded = [text.encode("utf-8", "replace") for text in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(data) for data in encoded], out=offsets[1:])
    return pa.Array.from_buffers(pa.string(), len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])


class _HashingFile:
    """A write-only file that feeds every byte it writes to a sha256 as well.

    Hashing on the way out, rather than reading the finished shard back, keeps
    the checksum off the end of the run: there, with ``--num-proc``, the
    workers would sit idle while the main process re-reads the last shard.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()

    def close(self) -> None:
        self._raw.close()

    @property
    def closed(self) -> bool:
        return self._raw.closed


class ShardWriter:
    """Streams record batches into ``final``'s temporary name; ``close`` renames and returns the sha256."""

    def __init__(self, final: Path, schema: pa.Schema) -> None:
        self.final = final
        self.schema = schema
        self._temporary = partial_path(final)
        try:
            self._file = _HashingFile(open(self._temporary, "wb", buffering=0))
            self._sink = pa.PythonFile(self._file, mode="w")
            self._writer = pa.ipc.new_stream(self._sink, schema)
        except OSError as exc:
            raise write_failure(self._temporary, exc) from exc
        self.num_rows = 0

    def write(self, columns: dict[str, pa.Array]) -> None:
        batch = pa.RecordBatch.from_arrays([columns[field.name] for field in self.schema], schema=self.schema)
        try:
            self._writer.write_batch(batch)
        except OSError as exc:  # full disk, RLIMIT_FSIZE, a vanished folder
            raise write_failure(self._temporary, exc) from exc
        self.num_rows += batch.num_rows

    def close(self) -> str:
        """Finish the stream, make it durable under its final name, and return its sha256."""
        try:
            self._writer.close()
            self._sink.close()
            fsync_and_rename(self._temporary, self.final)
        except OSError as exc:
            raise write_failure(self._temporary, exc) from exc
        return self._file.sha256.hexdigest()

    def abort(self) -> None:
        """Drop the unfinished temporary file (the final name is never touched).

        Closing may fail again (the disk is still full): that is not news, the
        original error is what the user needs to see.
        """
        for close in (self._writer.close, self._sink.close):
            try:
                close()
            except (OSError, pa.ArrowException):
                pass
        self._temporary.unlink(missing_ok=True)
