"""The one shard reader: an output folder as documents, or as flat per-shard batches.

``open_shards(folder)`` checks the manifest once and then gives two views of
the same bytes, both without copying where Arrow allows:

- ``.batches()``: one ``ShardBatch`` per shard, the shard's tokens end to end
  without padding (``ids``, ``labels``) plus where each document and each row
  begins. This is the shape ``mask_documents`` takes, so stats, verify and
  repeats work on whole shards at once.
- ``.documents()``: one ``ShardDocument`` at a time, ``input_ids`` and ``labels`` as
  numpy views into the memory-mapped shard. Packed rows are turned back into
  the documents they were cut from (docs/format.md: ``doc_starts``), so a
  consumer never needs to know the layout.

Local shards are Arrow IPC streams opened by memory map: a view stays valid as long
as the batch (or document) that holds it is referenced.

Each shard is read, memory-mapped on a local disk or streamed from a URL, and
checked against the manifest as it is read by ``checked_shards.CheckedShards``,
which ``ShardSet`` extends; this file holds only the views.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from goldfish_prep.errors import InputError
from goldfish_prep.format.checked_shards import CheckedShards
from goldfish_prep.format.columns import Int32s, Int64s, TokenStream, shard_stream
from goldfish_prep.format.folder import OutputFolder
from goldfish_prep.format.local_folder import LocalFolder
from goldfish_prep.format.location import Location
from goldfish_prep.format.manifest import Manifest

#: the columns a ShardBatch reads; others (``id``, ``source``) are read when asked for
_TOKEN_COLUMNS = {False: ["input_ids", "labels"], True: ["input_ids", "labels", "num_tokens", "doc_starts"]}


def read_shard(path: str | Path, columns: Sequence[str] | None = None) -> pa.Table:
    """One shard file as a pyarrow Table (memory-mapped, zero-copy)."""
    path = Path(path)
    return LocalFolder(path.parent).read_shard(path.name, None if columns is None else list(columns))


@dataclasses.dataclass(frozen=True)
class ShardBatch:
    """One shard as flat arrays: ``stream`` (tokens end to end, see ``TokenStream``) and the Arrow table behind it.

    ``rows_before`` and ``documents_before`` place the shard in the folder, so a
    consumer can name rows and documents globally (as ``show --row`` does).
    """

    index: int
    table: pa.Table
    stream: TokenStream
    rows_before: int
    documents_before: int

    @property
    def path(self) -> Location:
        return self.stream.path

    @property
    def ids(self) -> Int32s:
        return self.stream.ids

    @property
    def labels(self) -> Int32s:
        return self.stream.labels

    @property
    def row_starts(self) -> Int64s:
        return self.stream.row_starts

    @property
    def doc_starts(self) -> Int64s:
        """Where each document that *begins* in this shard begins in ``ids``."""
        return self.stream.doc_starts

    def column(self, name: str) -> pa.ChunkedArray:
        """Any other column of the shard, as Arrow (``id``, ``source``, ``num_dropped``...)."""
        if name not in self.table.column_names:
            raise InputError(
                str(self.path),
                f"no {name!r} column (columns: {', '.join(self.table.column_names)})",
                "Run `goldfish-prep verify` on the folder",
                "bad-shard",
            )
        return self.table.column(name)


@dataclasses.dataclass(frozen=True)
class ShardDocument:
    """One document as it was masked: ``labels[t]`` is ``input_ids[t]`` or -100.

    ``id`` and ``source`` are the row's columns in document outputs and None in
    packed outputs, which do not keep them; ``row`` is the global row the
    document starts in, ``index`` its number across the folder.
    """

    index: int
    id: str | None
    source: str | None
    row: int
    input_ids: Int32s
    labels: Int32s


class ShardSet(CheckedShards):
    """An opened output folder (``open_shards``): its ``manifest`` and views of its shards.

    Every shard is checked against the manifest as it is read (``CheckedShards``);
    a damaged one is a one-line ``ChecksumError`` before its table is handed out.
    """

    def batch(self, index: int, rows_before: int = 0, documents_before: int = 0, columns: Sequence[str] | None = None) -> ShardBatch:
        """Shard ``index`` as flat arrays; ``columns`` limits what is read (the token columns are always read)."""
        path = self.paths[index]
        wanted = None if columns is None else list(dict.fromkeys([*_TOKEN_COLUMNS[self.packed], *columns]))
        table = self._read(index, wanted)
        return ShardBatch(index, table, shard_stream(table, path, self.packed), rows_before, documents_before)

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[ShardBatch]:
        """Every shard in order, as flat arrays (see ``ShardBatch``)."""
        rows = documents = 0
        for index in range(len(self)):
            batch = self.batch(index, rows, documents, columns)
            rows += batch.stream.num_rows
            documents += len(batch.doc_starts)
            yield batch

    def documents(self) -> Iterator[ShardDocument]:
        """Every document in order; in packed outputs, rebuilt from the rows it was cut into.

        ``input_ids`` and ``labels`` are views into the memory-mapped shard (read one Arrow
        record batch at a time, so even multi-batch shards are not copied), except for a packed
        document that runs across record batches or shards, which is joined by one copy.
        """
        if not self.packed:
            yield from self._row_documents()
            return
        yield from self._packed_documents()

    def _pieces(self, columns: Sequence[str] | None = None) -> Iterator[ShardBatch]:
        """Like ``batches``, but one piece per Arrow record batch: flat arrays that are views of the file."""
        rows = documents = 0
        for index, path in enumerate(self.paths):
            wanted = None if columns is None else list(dict.fromkeys([*_TOKEN_COLUMNS[self.packed], *columns]))
            streamed = self.output.streams_shards
            record_batches = self._streamed(index, wanted)[1] if streamed else self._read(index, wanted).to_batches()
            for record_batch in record_batches:
                table = pa.Table.from_batches([record_batch])
                piece = ShardBatch(index, table, shard_stream(table, path, self.packed), rows, documents)
                rows += piece.stream.num_rows
                documents += len(piece.doc_starts)
                yield piece

    def _row_documents(self) -> Iterator[ShardDocument]:
        for batch in self._pieces(["id", "source"]):
            offsets = batch.row_starts.tolist()
            names, sources = batch.column("id").to_pylist(), batch.column("source").to_pylist()
            for r in range(batch.stream.num_rows):
                a, b = offsets[r], offsets[r + 1]
                yield ShardDocument(
                    batch.documents_before + r, names[r], sources[r], batch.rows_before + r, batch.ids[a:b], batch.labels[a:b]
                )

    def _packed_documents(self) -> Iterator[ShardDocument]:
        """Documents run across rows (no copy within a record batch: only the shard's last row has padding)
        and may run across record batches and, in outputs the format allows but ``mask`` never writes,
        across shards (then they are joined by a copy)."""
        open_doc: tuple[int, list[Int32s], list[Int32s]] | None = None  # (row, id pieces, label pieces)
        index = 0
        for batch in self._pieces():
            starts = batch.doc_starts.tolist()
            if (not starts or starts[0] != 0) and len(batch.ids):
                if open_doc is None:
                    raise InputError(
                        str(batch.path),
                        "the packed stream does not open with a document (doc_starts of the first row lacks 0)",
                        "Recreate the output with `goldfish-prep mask`",
                        "bad-shard",
                    )
                end = starts[0] if starts else len(batch.ids)
                open_doc[1].append(batch.ids[:end])
                open_doc[2].append(batch.labels[:end])
            if starts and open_doc is not None:
                yield _joined(index, open_doc)
                index, open_doc = index + 1, None
            rows = np.searchsorted(batch.row_starts, np.asarray(starts, dtype=np.int64), side="right") - 1
            edges = [*starts, len(batch.ids)]
            for i in range(len(starts) - 1):
                a, b = edges[i], edges[i + 1]
                yield ShardDocument(index, None, None, batch.rows_before + int(rows[i]), batch.ids[a:b], batch.labels[a:b])
                index += 1
            if starts:
                open_doc = (batch.rows_before + int(rows[-1]), [batch.ids[starts[-1] :]], [batch.labels[starts[-1] :]])
        if open_doc is not None:
            yield _joined(index, open_doc)


def _joined(index: int, piece: tuple[int, list[Int32s], list[Int32s]]) -> ShardDocument:
    row, ids, labels = piece
    if len(ids) == 1:
        return ShardDocument(index, None, None, row, ids[0], labels[0])
    return ShardDocument(index, None, None, row, np.concatenate(ids), np.concatenate(labels))


def open_shards(folder: str | Path | OutputFolder, manifest: Manifest | None = None, check_sha256: bool = True) -> ShardSet:
    """Open a complete goldfish-prep output folder for reading (``manifest``: already loaded, to skip reading it again);
    every shard is checked against the manifest as it is read (``ShardSet``).

    >>> # for batch in open_shards("shards/").batches(): batch.ids, batch.labels, batch.doc_starts
    >>> # for doc in open_shards("shards/").documents(): doc.id, doc.input_ids, doc.labels
    """
    return ShardSet(folder, manifest, check_sha256)


def iter_shards(folder: str | Path, columns: Sequence[str] | None = None) -> Iterator[tuple[Location, pa.Table]]:
    """(path, table) for every shard of a complete output folder, in order: the raw Arrow view."""
    shards = open_shards(folder)
    for index, path in enumerate(shards.paths):
        yield path, shards.table(index, columns)


#: the earlier name of ``ShardDocument``, kept for code that imports it
Document = ShardDocument

__all__ = ["Document", "ShardBatch", "ShardDocument", "ShardSet", "iter_shards", "open_shards", "read_shard"]
