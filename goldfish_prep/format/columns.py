"""Shards as flat numpy arrays: the one place that turns Arrow list columns into values and offsets.

Every consumer works on a whole shard at once, never row by row in Python: a
``list<int32>`` column becomes its flat int32 values (zero-copy from the memory
map when the shard holds one record batch) and int64 row offsets. A
``TokenStream`` then gives document and packed shards one shape, the tokens end
to end without padding plus where each document begins, which is the shape
``mask_documents`` takes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import numpy.typing as npt

from goldfish_prep.errors import InputError
from goldfish_prep.format.location import Location
from goldfish_prep.strategies.base import local_positions

Int32s = npt.NDArray[np.int32]
Int64s = npt.NDArray[np.int64]

_RECREATE = "Run `goldfish-prep verify` on the folder, or recreate it with `goldfish-prep mask`"


def numeric_view(array: Any) -> npt.NDArray[Any]:
    """A zero-copy numpy view of a null-free primitive Arrow array, read straight from its data buffer.

    (``to_numpy`` would do, but in current pyarrow it imports pandas, a second or two per command.)
    """
    dtype = np.dtype(array.type.to_pandas_dtype())
    data = array.buffers()[1]
    if data is None or len(array) == 0:
        return np.zeros(0, dtype)
    return np.frombuffer(data, dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize)


def list_values(table: Any, name: str, path: Location) -> tuple[Int32s, Int64s]:
    """(flat values, row offsets of length rows+1 starting at 0) of a ``list<int32>`` column."""
    if name not in table.column_names:
        raise InputError(str(path), f"no {name!r} column (columns: {', '.join(table.column_names)})", _RECREATE, "bad-shard")
    values: list[Int32s] = []
    offsets: list[Int64s] = [np.zeros(1, dtype=np.int64)]
    base = 0
    for chunk in table.column(name).chunks:
        if chunk.null_count:
            raise InputError(str(path), f"column {name!r} has {chunk.null_count} null rows", _RECREATE, "bad-shard")
        chunk_offsets = numeric_view(chunk.offsets).astype(np.int64)
        flat = chunk.values.slice(int(chunk_offsets[0]), int(chunk_offsets[-1] - chunk_offsets[0]))
        if flat.null_count:
            raise InputError(str(path), f"column {name!r} holds {flat.null_count} null values", _RECREATE, "bad-shard")
        values.append(numeric_view(flat))
        offsets.append(chunk_offsets[1:] - chunk_offsets[0] + base)
        base += int(chunk_offsets[-1] - chunk_offsets[0])
    flat_values = values[0] if len(values) == 1 else np.concatenate(values) if values else np.zeros(0, np.int32)
    return flat_values, np.concatenate(offsets)


def int_column(table: Any, name: str, path: Location) -> Int64s:
    """A scalar integer column (``num_tokens``, ``num_dropped``) as int64."""
    if name not in table.column_names:
        raise InputError(str(path), f"no {name!r} column (columns: {', '.join(table.column_names)})", _RECREATE, "bad-shard")
    column = table.column(name)
    if column.null_count:
        raise InputError(str(path), f"column {name!r} has {column.null_count} nulls", _RECREATE, "bad-shard")
    parts = [numeric_view(chunk).astype(np.int64) for chunk in column.chunks]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def real_token_mask(offsets: npt.ArrayLike, num_tokens: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Over a flat list column: True for the first ``num_tokens[r]`` values of each row r.

    Packed rows end in padding past ``num_tokens`` (docs/format.md); document
    rows have none, so for them every value is True.

    >>> real_token_mask([0, 3, 5], [2, 2]).tolist()
    [True, True, False, True, True]
    """
    bounds = np.asarray(offsets, dtype=np.int64)
    local = local_positions(bounds[:-1] - bounds[0], int(bounds[-1] - bounds[0]))
    mask: npt.NDArray[np.bool_] = local < np.repeat(np.asarray(num_tokens, dtype=np.int64), np.diff(bounds))
    return mask


def per_row_counts(flags: npt.NDArray[np.bool_], row_starts: Int64s) -> Int64s:
    """How many flags are set in each row: a running count over the flat flags, read at the row boundaries.

    >>> per_row_counts(np.array([True, False, True, True]), np.array([0, 1, 4])).tolist()
    [1, 2]
    """
    running = np.zeros(len(flags) + 1, dtype=np.int64)
    np.cumsum(flags, out=running[1:])
    counts: Int64s = running[row_starts[1:]] - running[row_starts[:-1]]
    return counts


def row_of(positions: npt.ArrayLike, offsets: Int64s) -> Int64s:
    """The row holding each flat position, given row offsets (empty rows are skipped correctly)."""
    return np.searchsorted(offsets, np.asarray(positions, dtype=np.int64), side="right").astype(np.int64) - 1


@dataclasses.dataclass
class TokenStream:
    """A shard's tokens end to end without padding.

    ``row_starts`` (rows+1): where each row's tokens begin in the stream.
    ``doc_starts``: where a document begins; in a packed shard the stream may
    open with the continuation of the previous shard's last document, so 0 is
    not always listed. ``padding``: flat indices, in the row-major list values,
    of the padding slots (packed shards only).
    """

    path: Location
    ids: Int32s
    labels: Int32s
    row_starts: Int64s
    doc_starts: Int64s
    padding: Int64s
    raw_offsets: Int64s

    @property
    def num_rows(self) -> int:
        return len(self.row_starts) - 1


def document_stream(table: Any, path: Location) -> TokenStream:
    """Document mode: one row per document, so rows and documents coincide."""
    ids, offsets = list_values(table, "input_ids", path)
    labels, label_offsets = list_values(table, "labels", path)
    _same_lengths(offsets, label_offsets, path)
    return TokenStream(path, ids, labels, offsets, offsets[:-1].copy(), np.zeros(0, np.int64), offsets)


def packed_stream(table: Any, path: Location) -> TokenStream:
    """Packed mode: keep the first ``num_tokens`` slots of each row; shift ``doc_starts`` by the row's place."""
    ids, offsets = list_values(table, "input_ids", path)
    labels, label_offsets = list_values(table, "labels", path)
    _same_lengths(offsets, label_offsets, path)
    used = int_column(table, "num_tokens", path)
    lengths = np.diff(offsets)
    bad = np.flatnonzero((used < 0) | (used > lengths))
    if len(bad):
        row = int(bad[0])
        raise InputError(
            f"{path} row {row}", f"num_tokens {used[row]} is outside [0, {lengths[row]}] (the row's length)", _RECREATE, "bad-shard"
        )
    keep = real_token_mask(offsets, used)
    row_starts = np.concatenate([[0], np.cumsum(used)]).astype(np.int64)
    starts, start_offsets = list_values(table, "doc_starts", path)
    start_rows = np.repeat(np.arange(len(used), dtype=np.int64), np.diff(start_offsets))
    _check_doc_starts(starts.astype(np.int64), start_rows, start_offsets, used, path)
    doc_starts = row_starts[start_rows] + starts
    real = int(row_starts[-1])
    if keep[:real].all():  # padding only at the end, as `mask` writes it: views, not copies
        return TokenStream(path, ids[:real], labels[:real], row_starts, doc_starts, np.arange(real, len(ids), dtype=np.int64), offsets)
    return TokenStream(path, ids[keep], labels[keep], row_starts, doc_starts, np.flatnonzero(~keep), offsets)


def shard_stream(table: Any, path: Location, packed: bool) -> TokenStream:
    """The shard's tokens end to end, whichever layout the manifest records."""
    return packed_stream(table, path) if packed else document_stream(table, path)


def _same_lengths(offsets: Int64s, label_offsets: Int64s, path: Location) -> None:
    if len(offsets) != len(label_offsets) or not np.array_equal(offsets, label_offsets):
        rows = np.flatnonzero(np.diff(offsets) != np.diff(label_offsets)) if len(offsets) == len(label_offsets) else [0]
        row = int(rows[0])
        raise InputError(f"{path} row {row}", "labels and input_ids differ in length", _RECREATE, "bad-shard")


def _check_doc_starts(starts: Int64s, rows: Int64s, start_offsets: Int64s, used: Int64s, path: Location) -> None:
    """Each row's starts must increase strictly and lie inside its tokens."""
    outside = (starts < 0) | (starts >= used[rows])
    step = np.diff(starts) <= 0
    same_row = rows[1:] == rows[:-1]
    bad_rows = np.concatenate([rows[outside], rows[1:][step & same_row]])
    if len(bad_rows):
        row = int(bad_rows.min())
        listed = starts[start_offsets[row] : start_offsets[row + 1]].tolist()
        raise InputError(
            f"{path} row {row}",
            f"doc_starts {listed[:8]} must increase and lie below num_tokens {used[row]}",
            _RECREATE,
            "bad-shard",
        )
