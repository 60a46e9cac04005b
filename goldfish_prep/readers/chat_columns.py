"""Chat records in columnar inputs (Parquet, Arrow, ``save_to_disk``): rows to the same checks as JSON.

A ``messages`` column is a list of structs (``role``, ``content``, and
whatever else the messages hold); ``prompt``/``completion`` columns hold
strings or such lists. Only the needed columns are read, in slices, and each
row, as a dict, goes through ``readers.conversations.chat_record_from_object``, so a
bad conversation gets the same message and ``reason`` as in a JSON line.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pyarrow as pa

from goldfish_prep.errors import InputError
from goldfish_prep.readers.conversations import chat_record_from_object
from goldfish_prep.readers.fields import missing_id_field
from goldfish_prep.readers.options import ReaderOptions
from goldfish_prep.readers.records import Record

Item = Record | InputError
_ROWS = 256


def chat_columns(names: list[str], path: str, options: ReaderOptions) -> list[str]:
    """The columns chat records need, or the file-level ``InputError`` when they are not there."""
    if options.messages_field in names:
        needed = [options.messages_field]
    elif "prompt" in names and "completion" in names:
        needed = ["prompt", "completion"]
    else:
        raise InputError(
            path,
            f'no "{options.messages_field}" column of messages (and no "prompt" and "completion" columns)',
            f"Is --messages-field correct (ShareGPT data: --messages-field conversations)? Available columns: {names[:20]}",
            "no-messages",
        )
    if options.id_field is not None:
        if options.id_field not in names:
            raise missing_id_field(path, options.id_field, names)
        needed.append(options.id_field)
    if options.k_field is not None and options.k_field in names:  # no such column: every record at standard loss
        needed.append(options.k_field)
    return list(dict.fromkeys(needed))


def chat_rows(
    batches: Iterator[pa.RecordBatch], label: str, columns: list[str], options: ReaderOptions, start: int
) -> Generator[Item, None, int]:
    """Every row as a chat ``Record`` or ``InputError`` named ``label record I``; returns the next row index."""
    index = start
    for batch in batches:
        for offset in range(0, batch.num_rows, _ROWS):
            part = batch.slice(offset, _ROWS).select(columns)
            for row in part.to_pylist():
                yield chat_record_from_object(row, f"{label} record {index}", options)
                index += 1
    return index
