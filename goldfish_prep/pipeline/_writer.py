"""Writes one shard: Arrow IPC stream batches into a pending file of the output folder, committed when complete.

Shards are Arrow *stream* files because that is what ``datasets.save_to_disk``
writes and ``load_from_disk`` memory-maps. Uncompressed on purpose: IPC writes
at GB/s and reads with zero copies; compression would cost more CPU than the
masks themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from goldfish_prep.format.commit import write_failure
from goldfish_prep.format.folder import OutputFolder
from goldfish_prep.format.names import IGNORE_INDEX, PARTIAL_SUFFIX


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


class ShardWriter:
    """Streams record batches into shard ``name`` of ``folder`` (hashed on the way out); ``close`` commits it
    and returns its checksums (the commit protocol: ``format.folder``)."""

    def __init__(self, folder: OutputFolder, name: str, schema: pa.Schema) -> None:
        self.schema = schema
        self._temporary = Path(folder.where(name) + PARTIAL_SUFFIX)
        try:
            self._file = folder.pending(name)
            self._temporary = Path(str(self._file.temporary))
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

    def close(self) -> dict[str, str]:
        """Finish the stream, make it durable under its final name, and return its ``{"sha256": ..., "xxh3_128": ...}``.

        A failure aborts the file here (in ``finish`` or ``commit``): the caller no longer holds this writer, and an
        upload left open would be completed by the garbage collector (s3fs closes a file in ``__del__``), without the
        part that failed."""
        checksums = self.finish()
        self.commit()
        return checksums

    def finish(self) -> dict[str, str]:
        """Write the stream's last bytes and return its checksums; nothing is visible under the final name yet."""
        with self._aborted_on_failure():
            self._writer.close()
            self._sink.close()
            checksums = self._file.checksums()
        return checksums

    def commit(self) -> None:
        """Make the finished file visible, whole, under its final name (a rename, or an upload that completes)."""
        with self._aborted_on_failure():
            self._file.commit()

    @contextmanager
    def _aborted_on_failure(self) -> Iterator[None]:
        """Abort the file on any failure inside (an ``OSError`` becomes the one-line write failure)."""
        try:
            yield
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError):
                raise write_failure(self._temporary, exc) from exc
            raise

    def abort(self) -> None:
        """Drop the unfinished temporary file (the final name is never touched).

        Closing may fail again (the disk is still full, the store refuses, as the
        ``StoreError`` it raised the first time): that is not news, the original
        error is what the user needs to see, and the file must still be aborted.
        """
        for close in (self._writer.close, self._sink.close):
            try:
                close()
            except Exception:
                pass
        self._file.abort()

    def cancel(self) -> None:
        """From another thread while ``commit`` runs: abandon the upload so that the commit stops waiting on the
        store and fails (``PendingWrite.cancel``); the commit's own thread cleans up."""
        self._file.cancel()
