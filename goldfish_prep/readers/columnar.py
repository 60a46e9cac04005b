"""Columnar inputs: Parquet files, Arrow IPC files and ``datasets.save_to_disk`` folders.

The schema is checked once per file (a missing or mistyped text column is one
error for the file, not one per row); rows are then read in slices of
``_ROWS``, so memory is bounded by one slice of Python objects whatever the
row-group or batch sizes. Rows are named ``path record I`` (0-based; for a
``save_to_disk`` folder, counted across its Arrow files in ``state.json``
order). Weights: UTF-8 bytes of the text (``pc.binary_length``, vectorised) or
4 bytes per pre-tokenized id.

``mapped`` (from ``InputSnapshot.map_whole``: local files memory-mapped and
hashed, by normalised path) is what the Arrow readers parse when given, so the
bytes recorded in the manifest are the bytes parsed and a file is read once.
Parquet files are not mapped (a mapped file truncated while it is parsed kills
the process with SIGBUS, where one read through ``read`` fails with a message;
Arrow files were always mapped, so mapping them adds no such risk): they are
read through ``opened``, the snapshot's file that hashes what pyarrow reads.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from goldfish_prep.errors import InputError
from goldfish_prep.readers.chat_columns import chat_columns, chat_rows
from goldfish_prep.readers.failures import file_failure
from goldfish_prep.readers.fields import IDS_FIELD, ids_problem, missing_id_field, missing_text_field, text_problem
from goldfish_prep.readers.options import InputSource, ReaderOptions
from goldfish_prep.readers.records import Record
from goldfish_prep.readers.remote import arrow_input, open_arrow
from goldfish_prep.readers.snapshot import InOrderFile

Item = Record | InputError
_ROWS = 256
_ARROW_FILE_MAGIC = b"ARROW1"


@dataclasses.dataclass(frozen=True)
class _Columns:
    """Which columns hold what: ``text`` is None for pre-tokenized ids."""

    text: str | None
    doc_id: str | None
    names: list[str]


#: memory-mapped input files by normalised path (``InputSnapshot.map_whole``)
Mapped = Mapping[str, pa.Buffer]


def read_parquet(source: InputSource, options: ReaderOptions, opened: InOrderFile | None = None) -> Iterator[Item]:
    """Rows of a Parquet file, read batch by batch (only the needed columns); from ``opened`` when given (the
    snapshot's ``InOrderFile``, which hashes what pyarrow reads)."""
    import pyarrow.parquet as pq

    with _parquet_input(source.path, opened) as where, pq.ParquetFile(where) as parquet:
        if options.chat:
            needed = chat_columns(parquet.schema_arrow.names, source.path, options)
            yield from chat_rows(parquet.iter_batches(batch_size=_ROWS, columns=needed), source.path, needed, options, 0)
            return
        columns = _plan_columns(parquet.schema_arrow, source.path, options)
        needed = [name for name in (columns.text or IDS_FIELD, columns.doc_id) if name is not None]
        yield from _rows(parquet.iter_batches(batch_size=_ROWS, columns=needed), source.path, columns, 0)


def read_arrow(source: InputSource, options: ReaderOptions, mapped: Mapped | None = None) -> Iterator[Item]:
    """Rows of an Arrow IPC file (file or stream format)."""
    yield from _read_arrow_file(source.path, source.path, options, 0, mapped)


def read_saved_dataset(source: InputSource, options: ReaderOptions, mapped: Mapped | None = None) -> Iterator[Item]:
    """Rows of a ``save_to_disk`` folder: its Arrow files in ``state.json`` order.

    The first file that fails ends the folder (later row numbers would be unknown).
    """
    folder = source.path
    count = 0
    for path in saved_dataset_files(folder):
        try:
            count = yield from _read_arrow_file(path, folder, options, count, mapped)
        except (OSError, ValueError, pa.ArrowException) as exc:
            yield file_failure(path, exc, count)
            return


def saved_dataset_files(folder: str) -> list[str]:
    """The Arrow files listed in a ``save_to_disk`` folder's ``state.json``."""
    state_path = os.path.join(folder, "state.json")
    try:
        with open(state_path, encoding="utf-8") as handle:
            state = json.load(handle)
        return [os.path.join(folder, entry["filename"]) for entry in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(
            state_path,
            f"cannot read the list of data files ({type(exc).__name__}: {exc})",
            "Write the folder again with datasets' save_to_disk",
            "corrupt-file",
        ) from None


@contextmanager
def _parquet_input(path: str, opened: InOrderFile | None) -> Iterator[str | pa.NativeFile]:
    if opened is None:
        with arrow_input(path) as where:
            yield where
        return
    with pa.PythonFile(opened, mode="r") as handle:
        yield handle


def _mapping(path: str, mapped: Mapped | None) -> pa.Buffer | None:
    return None if mapped is None else mapped.get(os.path.normpath(path))


def _read_arrow_file(path: str, label: str, options: ReaderOptions, start: int, mapped: Mapped | None = None) -> Generator[Item, None, int]:
    """Rows of one Arrow IPC file named ``label record I`` from ``I = start``; returns the next index."""
    buffer = _mapping(path, mapped)
    with pa.BufferReader(buffer) if buffer is not None else open_arrow(path) as opened:
        is_file_format = opened.read(len(_ARROW_FILE_MAGIC)) == _ARROW_FILE_MAGIC
        opened.seek(0)
        if is_file_format:
            reader = pa.ipc.open_file(opened)
            batches: Iterator[pa.RecordBatch] = (reader.get_batch(i) for i in range(reader.num_record_batches))
        else:
            stream = pa.ipc.open_stream(opened)
            batches = iter(stream)
        schema = reader.schema if is_file_format else stream.schema
        if options.chat:
            return (yield from chat_rows(batches, label, chat_columns(schema.names, label, options), options, start))
        columns = _plan_columns(schema, label, options)
        return (yield from _rows(batches, label, columns, start))


def _plan_columns(schema: pa.Schema, path: str, options: ReaderOptions) -> _Columns:
    """Check the schema once; raise the file-level ``InputError`` when no row could be read."""
    names = list(schema.names)
    if options.text_field in names:
        kind = schema.field(options.text_field).type
        if not (_is_text(kind) or pa.types.is_null(kind)):
            raise InputError(
                path,
                f'column "{options.text_field}" holds {kind}, not strings',
                "Name the text column with --text-field",
                "non-string-text",
            )
        text: str | None = options.text_field
    elif IDS_FIELD in names:
        _check_ids_type(schema.field(IDS_FIELD).type, path)
        text = None
    else:
        raise missing_text_field(path, options.text_field, names)
    if options.id_field is not None and options.id_field not in names:
        raise missing_id_field(path, options.id_field, names)
    return _Columns(text, options.id_field, names)


def _check_ids_type(kind: pa.DataType, path: str) -> None:
    lists = pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    if not lists:
        raise InputError(
            path,
            f'column "{IDS_FIELD}" holds {kind}, not lists of token ids',
            "Store each document's ids as a list of integers",
            "invalid-input-ids",
        )
    if not (pa.types.is_integer(kind.value_type) or pa.types.is_null(kind.value_type)):
        raise InputError(
            path,
            f'column "{IDS_FIELD}" holds lists of {kind.value_type}, not integer token ids',
            "Store token ids as integers",
            "non-integer-id",
        )


def _is_text(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        return _is_text(kind.value_type)
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind) or getattr(pa.types, "is_string_view", lambda _: False)(kind))


def _rows(batches: Iterator[pa.RecordBatch], label: str, columns: _Columns, start: int) -> Generator[Item, None, int]:
    """Every row of ``batches`` as an item, in slices of ``_ROWS``; returns the next row index."""
    index = start
    for batch in batches:
        for offset in range(0, batch.num_rows, _ROWS):
            part = batch.slice(offset, _ROWS)
            yield from _slice_items(part, label, columns, index)
            index += part.num_rows
    return index


def _slice_items(part: pa.RecordBatch, label: str, columns: _Columns, start: int) -> Iterator[Item]:
    locations = [f"{label} record {i}" for i in range(start, start + part.num_rows)]
    doc_ids = part.column(columns.doc_id).to_pylist() if columns.doc_id is not None else locations
    values: list[Any]
    sizes: list[Any]
    if columns.text is not None:
        values, sizes = _texts(part.column(columns.text))
    else:
        values = part.column(IDS_FIELD).to_pylist()
        sizes = [4 * len(ids) if ids is not None else 0 for ids in values]
    for location, doc_id, value, size in zip(locations, doc_ids, values, sizes):
        if doc_id is None:
            yield missing_id_field(location, columns.doc_id or "", columns.names)
            continue
        if columns.text is not None:
            problem = text_problem(value, location, columns.text)
            yield problem or Record(str(doc_id), location, text=value, weight=size)
        else:
            problem = ids_problem(value, location)
            yield problem or Record(str(doc_id), location, input_ids=value, weight=size)


def _texts(column: pa.Array) -> tuple[list[Any], list[Any]]:
    """Python strings of a text column and their UTF-8 sizes (computed in C)."""
    if pa.types.is_null(column.type):
        return [None] * len(column), [None] * len(column)
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = column.cast(pa.large_string())
    return column.to_pylist(), pc.binary_length(column).to_pylist()
