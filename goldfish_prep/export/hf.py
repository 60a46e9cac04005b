"""Hugging Face ``save_to_disk`` folder: exactly ``input_ids``, ``attention_mask``, ``labels`` and ``lengths``.

The trainers that take a pre-tokenized dataset folder (LLaMA-Factory's
``tokenized_path``, ms-swift's ``--cached_dataset``, a ``datasets.load_from_disk``
in any training script) pass every column they find to the collator, so the
shards themselves, with their ``id`` strings and bookkeeping columns, cannot go
there as they are. This folder holds only what a causal-LM batch needs:

- ``input_ids``, ``labels``: the shards' rows, copied. Labels are unshifted and
  -100 where the goldfish mask drops a token, as a causal-LM loss expects.
- ``attention_mask``: 1 on each row's tokens, 0 on the padding of packed rows
  (whose labels are already -100).
- ``lengths``: the row's length (``len(input_ids)``), an int32 per row. ms-swift's
  cached datasets must carry it (its length-grouped and packed samplers read it);
  the others ignore a column their model does not take, see docs/training.md.

The folder is written here, not with ``Dataset.save_to_disk``, so that no
``datasets`` release is needed to write it and every supported one reads it:
one Arrow IPC stream file per shard (``data-NNNNN-of-NNNNN.arrow``, the names
``save_to_disk`` gives), a ``state.json`` listing them, and a
``dataset_info.json`` that names no features. ``datasets`` then infers the
features from the plain Arrow types (``list<int32>``), which 3.x reads as
``Sequence(Value('int32'))`` and 4.x/5.x as ``List(Value('int32'))``; written
features would tie the folder to one of the two spellings (3.x cannot read
4.x's ``List``, the error litgpt users meet). Streaming (one shard in memory),
atomic (staged in ``OUT.partial/``) and deterministic, like every export.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from goldfish_prep.errors import ConfigError
from goldfish_prep.export.record import Counts, ExportResult, export_record
from goldfish_prep.export.source import Source
from goldfish_prep.export.staging import RECORD_NAME, Staging, staged_folder
from goldfish_prep.format import IGNORE_INDEX, ShardBatch
from goldfish_prep.format.commit import json_bytes

TOKENS = pa.list_(pa.int32())
SCHEMA = pa.schema([("input_ids", TOKENS), ("attention_mask", TOKENS), ("labels", TOKENS), ("lengths", pa.int32())])
BATCH_TOKENS = 1 << 20  # at most about 12 MiB of columns per Arrow record batch (a longer row gets a batch of its own)


def data_name(index: int, count: int) -> str:
    """The file name ``save_to_disk`` gives shard ``index`` of ``count``.

    >>> data_name(0, 8)
    'data-00000-of-00008.arrow'
    """
    return f"data-{index:05d}-of-{count:05d}.arrow"


def export_hf(source: Source, out: Path, overwrite: bool = False, dtype_name: str | None = None) -> ExportResult:
    """Write the ``save_to_disk`` folder described in the module docstring."""
    if dtype_name is not None:
        raise ConfigError("--dtype does not apply to hf exports (ids and labels are int32, as in the shards); leave it out")
    counts = Counts()
    count = len(source.shards)
    names = [data_name(index, count) for index in range(count)]
    with staged_folder(out, overwrite) as stage:
        for index, name in enumerate(names):
            _write_arrow(stage, name, _rows(source.shards.batch(index), counts))  # one shard mapped at a time
        _write_json(stage, "dataset_info.json", {"citation": "", "description": _description(source), "homepage": "", "license": ""})
        _write_json(stage, "state.json", _state(names, source.manifest_sha256))
        layout = {"files": names, "columns": SCHEMA.names, "load": "datasets.load_from_disk(OUT)"}
        stage.write_record(export_record(source, "hf", "int32", counts, layout))
    return ExportResult("hf", out, out / RECORD_NAME, tuple(out / n for n in names), "int32", counts)


def _rows(batch: ShardBatch, counts: Counts) -> pa.Table:
    """The shard's rows with the four columns; ``counts`` gains the shard's totals.

    ``input_ids`` and ``labels`` are the shard's own Arrow columns (cast, no
    other copy); the attention mask is 1 on each row's tokens, 0 on packed rows' padding.
    """
    stream = batch.stream
    attention = np.ones(int(stream.raw_offsets[-1] - stream.raw_offsets[0]), np.int32)
    attention[stream.padding - stream.raw_offsets[0]] = 0  # flat indices of packed rows' padding (none in document shards)
    counts.add(len(batch.doc_starts), len(stream.ids), int((stream.labels != IGNORE_INDEX).sum()))
    offsets = (stream.raw_offsets - stream.raw_offsets[0]).astype(np.int32)
    columns = [
        batch.column("input_ids").cast(TOKENS),
        pa.ListArray.from_arrays(pa.array(offsets), pa.array(attention)),
        batch.column("labels").cast(TOKENS),
        pa.array(np.diff(offsets).astype(np.int32)),
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def _write_arrow(stage: Staging, name: str, table: pa.Table) -> None:
    """One Arrow IPC stream, as ``save_to_disk`` writes them, in record batches of about ``BATCH_TOKENS`` tokens."""
    lengths = table.column("lengths").to_numpy() if table.num_rows else np.zeros(0, np.int32)
    rows = max(1, int(BATCH_TOKENS // max(1, int(lengths.max()))) if len(lengths) else 1)
    with pa.OSFile(str(stage.path(name)), "wb") as sink, pa.ipc.new_stream(sink, SCHEMA) as writer:
        writer.write_table(table, max_chunksize=rows)
    stage.commit(name)


def _write_json(stage: Staging, name: str, content: dict[str, Any]) -> None:
    with stage.open(name) as out:  # the commit helper: the same bytes as json.dumps(indent=2, sort_keys=True) + newline
        out.write(json_bytes(content))


def _state(names: list[str], manifest_sha256: str) -> dict[str, Any]:
    """``state.json`` as ``save_to_disk`` writes it, with a fingerprint derived from the source (same shards, same bytes)."""
    return {
        "_data_files": [{"filename": n} for n in names],
        "_fingerprint": manifest_sha256[:16],
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    }


def _description(source: Source) -> str:
    mask = source.manifest["mask"]
    return f"goldfish-prep export of {source.folder.name} (goldfish mask {json.dumps(mask, sort_keys=True)}); labels are -100 where a token is dropped"
