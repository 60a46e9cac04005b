"""The output format (docs/format.md) in one package: names, schemas, the manifest and the shard reader.

Everything that reads or names files of an output folder goes through here:
``names`` (every file name and constant), ``schema`` (the Arrow schemas and
``datasets`` metadata), ``manifest`` (the typed, validated ``Manifest``),
``columns`` (Arrow list columns as flat numpy arrays) and ``reader``
(``open_shards``: documents or per-shard flat batches, zero-copy).
"""

from goldfish_prep.format.manifest import Manifest, ShardEntry, load_manifest
from goldfish_prep.format.names import (
    DATASET_INFO,
    FORMAT_NAME,
    FORMAT_VERSION,
    IGNORE_INDEX,
    MANIFEST,
    PARTIAL_SUFFIX,
    PROGRESS_DIR,
    RUN_FILE,
    STATE,
    partial_path,
    shard_filename,
    shard_record_path,
    task_filename,
)
from goldfish_prep.format.reader import Document, ShardBatch, ShardDocument, ShardSet, iter_shards, open_shards, read_shard

__all__ = [
    "DATASET_INFO",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "IGNORE_INDEX",
    "MANIFEST",
    "PARTIAL_SUFFIX",
    "PROGRESS_DIR",
    "RUN_FILE",
    "STATE",
    "Document",
    "Manifest",
    "ShardBatch",
    "ShardDocument",
    "ShardEntry",
    "ShardSet",
    "iter_shards",
    "load_manifest",
    "open_shards",
    "partial_path",
    "read_shard",
    "shard_filename",
    "shard_record_path",
    "task_filename",
]
