"""The output format (docs/format.md) in one package: names, schemas, the manifest and the shard reader.

Everything that reads, writes or names files of an output folder goes through here:
``names`` (every file name and constant), ``folder`` (``OutputFolder``: the
commit protocol, the writers' lock, life cycle, task ownership and manifest),
built in layers: ``storage`` (the primitives a folder provides; ``local_folder``
and ``url_folder`` implement them, the latter with ``object_lock`` and
``store_errors``), ``progress`` (the run description, shard records and task
files) and ``shard_bytes`` (a shard read with its checksum checked: ``ChecksumError``),
``life_cycle`` (refuse, ``--overwrite``'s set-aside, ``--resume``: what a
run keeps, deletes or moves), ``ownership`` (which task may touch which file,
what a resume keeps),
``commit`` (the local atomic write and every checksum), ``staging`` (exports'
folders), ``schema`` (the Arrow schemas, column names and ``datasets``
metadata), ``manifest`` (the typed, validated ``Manifest``), ``chat`` (the chat
columns), ``columns`` (Arrow list columns as flat numpy arrays) and ``reader``
(``open_shards``: documents or per-shard flat batches, zero-copy) over
``checked_shards`` (each shard, mapped or streamed, checked against the manifest as it is read).
"""

from goldfish_prep.format.folder import OutputFolder, open_folder
from goldfish_prep.format.local_folder import LocalFolder
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
from goldfish_prep.format.shard_bytes import ChecksumError

__all__ = [
    "ChecksumError",
    "LocalFolder",
    "OutputFolder",
    "open_folder",
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
