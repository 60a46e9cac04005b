"""The shards an export reads, one shard at a time, as whole documents with their keep flags.

Every export format wants the same thing from a goldfish output: token ids end
to end, one keep flag per token (``label != -100``: labels are unshifted, at the
same positions as the ids) and where each document ends. The shards are read
only through the format's one reader (``goldfish_prep.format.open_shards``).

Memory stays bounded by one shard: ``iter_documents`` takes one
``ShardBatch`` at a time, yields its documents and drops it before the next is opened.
In packed outputs a document may run from one shard into the next (the format
allows it), so the tokens after the shard's last document start are held back
(at most one document) and yielded with the next shard: every
``DocumentChunk`` holds whole documents only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from goldfish_prep.errors import InputError
from goldfish_prep.format import IGNORE_INDEX, MANIFEST, Manifest, ShardSet, open_shards
from goldfish_prep.format.location import Location

Int32s = npt.NDArray[np.int32]
Int64s = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


@dataclasses.dataclass(frozen=True)
class Source:
    """A complete goldfish output folder, opened, with what every export records about it."""

    shards: ShardSet
    manifest_sha256: str

    @property
    def folder(self) -> Location:
        return self.shards.folder

    @property
    def manifest(self) -> Manifest:
        return self.shards.manifest

    @property
    def packed(self) -> bool:
        return self.shards.packed

    @property
    def vocab_size(self) -> int:
        size = self.manifest.vocab_size
        if size is None:
            raise InputError(
                str(self.folder / MANIFEST),
                "the tokenizer section records no vocab_size, so no token dtype can be chosen",
                "Recreate the output with `goldfish-prep mask`",
                "bad-manifest",
            )
        return size


def open_source(folder: str | Path) -> Source:
    """The output folder of `goldfish-prep mask` at ``folder``; a one-line error for anything else."""
    shards = open_shards(folder)
    return Source(shards, shards.output.manifest_sha256())


@dataclasses.dataclass(frozen=True)
class DocumentChunk:
    """Whole documents end to end: ``ids`` (int32) and ``keep`` (bool), one per token; ``lengths`` per document.

    ``shard`` names the shard that completed the chunk, for error messages.
    """

    shard: Location
    ids: Int32s
    keep: Bools
    lengths: Int64s


def iter_documents(source: Source) -> Iterator[DocumentChunk]:
    """One chunk per shard (padding of packed rows left out), documents in shard order.

    A shard that completes no document (one long document spanning it) yields nothing.
    """
    carry_ids: Int32s = np.zeros(0, np.int32)
    carry_keep: Bools = np.zeros(0, np.bool_)
    for index in range(len(source.shards)):
        batch = source.shards.batch(index)  # not .batches(): its frame would keep the previous shard mapped while reading the next
        ids = np.concatenate([carry_ids, batch.ids]) if len(carry_ids) else batch.ids
        keep = np.concatenate([carry_keep, batch.labels != IGNORE_INDEX])
        starts = batch.doc_starts + len(carry_ids)
        if len(ids) and (not len(starts) or starts[0] != 0):
            if not len(carry_ids):
                raise InputError(
                    str(batch.path),
                    "the first row does not begin a document (doc_starts lacks 0)",
                    "Recreate the output with `goldfish-prep mask`",
                    "bad-shard",
                )
            starts = np.concatenate([[0], starts])
        # in a packed output the last document may go on in the next shard: hold it back, unless none follows
        last = index == len(source.shards) - 1
        end = int(starts[-1]) if source.packed and len(starts) and not last else len(ids)
        carry_ids, carry_keep = ids[end:].copy(), keep[end:].copy()
        if end:  # views into this shard's memory map: the next shard opens only after they are written
            bounds = np.append(starts[starts < end], end).astype(np.int64)
            yield DocumentChunk(batch.path, ids[:end], keep[:end], np.diff(bounds))
        del batch, ids, keep, starts  # the shard's memory map goes before the next shard is opened


def check_ids_fit(chunk: DocumentChunk, dtype: np.dtype[Any], fix: str) -> None:
    """A one-line error when an id does not fit ``dtype`` (the manifest's vocab_size was too small)."""
    if not len(chunk.ids):
        return
    low, high = int(chunk.ids.min()), int(chunk.ids.max())
    if low < 0 or high > np.iinfo(dtype).max:
        bad = low if low < 0 else high
        raise InputError(
            str(chunk.shard), f"token id {bad} does not fit {dtype} (the manifest's vocab_size is too small)", fix, "vocab-mismatch"
        )
