"""Parquet: exactly ``input_ids``, ``attention_mask`` and ``labels``, for axolotl and any Parquet reader.

axolotl uses a dataset as already tokenized when its config gives no ``type:``
and the columns are exactly these three; Hugging Face ``datasets`` and plain
pyarrow read it as it is. Rows are the shards' rows: one document per row, or
one packed row of ``SEQ_LEN`` ids whose padding has ``attention_mask`` 0 (its
label is already -100). ``labels`` are the shards' labels, copied: unshifted,
-100 where the goldfish mask drops a token, as a causal-LM loss expects.

One ``part-NNNNN.parquet`` per shard; each row group holds at most
``ROW_GROUP_TOKENS`` tokens (and at least one row), so a streaming reader holds
a few MiB at a time whatever the document sizes. zstd-compressed (no dictionary encoding), no
timestamps: the same shards give the same bytes with the same pyarrow.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from goldfish_prep.errors import ConfigError
from goldfish_prep.export.record import Counts, ExportResult, export_record
from goldfish_prep.export.source import Int64s, Source
from goldfish_prep.format import IGNORE_INDEX, ShardBatch
from goldfish_prep.format.staging import RECORD_NAME, staged_folder

ROW_GROUP_TOKENS = 1 << 20  # about 8 MiB of ids and labels before compression
SCHEMA = pa.schema([("input_ids", pa.list_(pa.int32())), ("attention_mask", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32()))])


def part_name(index: int) -> str:
    """The file name of the part made from shard ``index``.

    >>> part_name(0)
    'part-00000.parquet'
    """
    return f"part-{index:05d}.parquet"


def export_parquet(
    source: Source, out: Path, overwrite: bool = False, dtype_name: str | None = None, row_group_tokens: int = ROW_GROUP_TOKENS
) -> ExportResult:
    """Write the Parquet folder described in the module docstring."""
    if dtype_name is not None:
        raise ConfigError("--dtype does not apply to Parquet exports (ids and labels are int32, as in the shards); leave it out")
    counts = Counts()
    names: list[str] = []
    with staged_folder(out, overwrite) as stage:
        for index in range(len(source.shards)):
            table, row_lengths = _rows(source.shards.batch(index), counts)
            names.append(part_name(index))
            # no dictionary encoding: for token ids it costs twice the time and gives larger files than zstd alone
            with pq.ParquetWriter(stage.path(names[-1]), SCHEMA, compression="zstd", use_dictionary=False) as writer:
                for begin, end in _row_groups(row_lengths, row_group_tokens):
                    writer.write_table(table.slice(begin, end - begin))
            stage.commit(names[-1])
            del table  # one shard mapped at a time
        layout = {"files": "*.parquet", "parts": names, "columns": SCHEMA.names, "row_group_tokens": row_group_tokens}
        stage.write_record(export_record(source, "parquet", "int32", counts, layout))
    return ExportResult("parquet", out, out / RECORD_NAME, tuple(out / n for n in names), "int32", counts)


def _rows(batch: ShardBatch, counts: Counts) -> tuple[pa.Table, Int64s]:
    """The shard's rows with the three columns, and each row's length; ``counts`` gains the shard's.

    ``input_ids`` and ``labels`` are the shard's own Arrow columns (no copy); the
    attention mask is 1 on each row's first ``num_tokens`` ids, 0 on the padding
    of packed rows.
    """
    stream = batch.stream
    attention = np.ones(int(stream.raw_offsets[-1]), np.int32)  # (slots,) 1 real, 0 padding
    attention[stream.padding] = 0  # flat indices of packed rows' padding (none in document shards)
    counts.add(len(batch.doc_starts), len(stream.ids), int((stream.labels != IGNORE_INDEX).sum()))
    offsets = pa.array((stream.raw_offsets - stream.raw_offsets[0]).astype(np.int32))
    columns = [
        batch.column("input_ids").cast(SCHEMA.field("input_ids").type),
        pa.ListArray.from_arrays(offsets, pa.array(attention)),
        batch.column("labels").cast(SCHEMA.field("labels").type),
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA), np.diff(stream.raw_offsets)


def _row_groups(lengths: Int64s, budget: int) -> Iterator[tuple[int, int]]:
    """(begin, end) row ranges of at most ``budget`` tokens each (a longer row gets a group of its own).

    >>> list(_row_groups(np.array([3, 3, 5, 1]), 6))
    [(0, 2), (2, 4)]
    """
    begin, total = 0, 0
    for row, length in enumerate(lengths.tolist()):
        if row > begin and total + length > budget:
            yield begin, row
            begin, total = row, 0
        total += length
    if begin < len(lengths):
        yield begin, len(lengths)
