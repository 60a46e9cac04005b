"""A whole output folder as documents end to end: what ``repeats`` searches.

The shard reader's flat batches (``format.reader``) already give both layouts
one shape, the tokens end to end without padding plus where each document
begins, so the documents come back exactly as they were masked. Only ids (int32) and drop flags (one byte) are kept per token; document
names are looked up lazily, for the few documents a report names.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from goldfish_prep.config import MaskConfig
from goldfish_prep.errors import InputError
from goldfish_prep.format.columns import Int32s, Int64s, row_of
from goldfish_prep.format.manifest import Manifest
from goldfish_prep.format.names import IGNORE_INDEX
from goldfish_prep.format.reader import open_shards


@dataclasses.dataclass(frozen=True)
class Corpus:
    """``ids`` and ``drop`` of all documents end to end; ``starts[i]``: where document i begins."""

    folder: str
    manifest: Manifest
    config: MaskConfig
    ids: Int32s
    drop: npt.NDArray[np.bool_]
    starts: Int64s
    #: document outputs: the id column; packed outputs: None (documents are named by row)
    doc_ids: Any
    row_starts: Int64s

    @property
    def lengths(self) -> Int64s:
        return np.diff(np.append(self.starts, len(self.ids)))

    def document_of(self, positions: npt.ArrayLike) -> Int64s:
        return row_of(positions, np.append(self.starts, len(self.ids)))

    def name(self, document: int) -> str:
        """A document's id, or in packed outputs where it lies (``document 12 (row 3)``)."""
        if self.doc_ids is not None:
            return str(self.doc_ids[document].as_py())
        row = int(row_of([self.starts[document]], self.row_starts)[0])
        return f"document {document} (row {row})"


def load_corpus(folder: str | Path) -> Corpus:
    """Read every shard once into flat arrays (about 5 bytes per token)."""
    shards = open_shards(folder)
    packed = shards.packed
    ids: list[Int32s] = []
    drop: list[npt.NDArray[np.bool_]] = []
    starts: list[Int64s] = []
    rows: list[Int64s] = [np.zeros(1, np.int64)]
    names: list[Any] = []
    offset = 0
    for batch in shards.batches():
        stream = batch.stream
        ids.append(stream.ids)
        drop.append(stream.labels == IGNORE_INDEX)
        starts.append(stream.doc_starts + offset)
        rows.append(stream.row_starts[1:] + offset)
        if not packed:
            names.extend(batch.column("id").chunks)
        offset += len(stream.ids)
    flat_starts = np.concatenate(starts) if starts else np.zeros(0, np.int64)
    if offset and (not len(flat_starts) or flat_starts[0] != 0):
        raise InputError(
            str(folder),
            "the first row does not begin a document (doc_starts lacks 0)",
            "Recreate the output with `goldfish-prep mask`",
            "bad-shard",
        )
    return Corpus(
        folder=str(folder),
        manifest=shards.manifest,
        config=shards.manifest.mask,
        ids=np.concatenate(ids) if ids else np.zeros(0, np.int32),
        drop=np.concatenate(drop) if drop else np.zeros(0, np.bool_),
        starts=flat_starts.astype(np.int64),
        doc_ids=None if packed else pa.chunked_array(names, type=pa.string()),
        row_starts=np.concatenate(rows),
    )
