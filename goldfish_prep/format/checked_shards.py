"""An opened output folder's shards read one at a time, each checked against its manifest entry as it is read.

The manifest is checked once on opening (its totals against its shard entries,
``state.json``'s file list against its own); each shard then, as it is read,
against its entry: its checksum over the very bytes its table is made from,
and its rows and tokens. Nothing is read twice. ``reader.ShardSet`` builds its
views (flat batches, documents) on these reads.

Shards at a URL (``s3://bucket/shards``, any fsspec URL: ``url_folder``) are
streamed, never fetched whole: their bytes arrive in ranged GETs of
``url_folder.READ_BLOCK`` (8 MiB), pass through the folder's hashing reader
(``commit.HashingReader``) and are decoded into record batches as they come,
one pass for both. ``.documents()`` and ``ShardSet.rows`` hold one record
batch at a time (memory flat in the shard's size); ``.batches()`` and
``.table()`` give whole shards, so they hold one decoded shard (one copy, not
the two a download then a parse would make). A streamed shard's checksum and
counts are known only at its end: a damaged one is refused there, before the
next shard is read and before ``batches()`` hands it out (``documents()`` has
then already given out its earlier documents; every command ends in the same
one ``Error:`` line, having written nothing finished). The cost over a local
read is the transfer itself plus about 1 GET per 8 MiB; the hash is the
same ~0.09 ms of CPU per MB (xxh3-128; docs/performance.md), done while the next block downloads.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
import pyarrow as pa

from goldfish_prep.errors import InputError
from goldfish_prep.format.columns import numeric_view
from goldfish_prep.format.commit import HashingReader
from goldfish_prep.format.folder import OutputFolder, open_folder
from goldfish_prep.format.location import Location, location
from goldfish_prep.format.manifest import Manifest, ShardEntry
from goldfish_prep.format.names import MANIFEST, STATE
from goldfish_prep.format.shard_bytes import ChecksumError


def _checked(entry: ShardEntry) -> tuple[str, str]:
    """The checksum a reader checks, and its recorded value: xxh3_128 where the manifest has it, else sha256."""
    return ("xxh3_128", entry.xxh3_128) if entry.xxh3_128 is not None else ("sha256", entry.sha256)


class CheckedShards:
    """An opened output folder: its ``manifest``, and each shard's table read and checked (the base of ``ShardSet``).

    Every reader checks what it reads (``check_sha256``, on unless a caller
    checks by itself, as ``verify`` does): on opening, the manifest's totals
    against its shard entries and ``state.json``'s file list against the
    manifest's (a lost entry); as each shard is read, its xxh3-128 (sha256 in
    outputs written before it was recorded) over the very memory-mapped bytes
    the table views (a shard swapped in or appended to;
    ``OutputFolder.read_shard``), and its rows and tokens against its entry.
    No second pass over the data; the hash costs about 0.09 ms of CPU per MB
    of shard (docs/performance.md). Any difference is a one-line
    ``ChecksumError`` naming the file and pointing to ``verify`` and
    ``--resume``, raised before the shard's table is handed out.
    """

    def __init__(self, folder: str | Path | OutputFolder, manifest: Manifest | None = None, check_sha256: bool = True) -> None:
        self.output = folder if isinstance(folder, OutputFolder) else open_folder(folder)
        self.folder = location(self.output.where())
        self.manifest = manifest if manifest is not None else self.output.read_manifest()
        self.check_sha256 = check_sha256
        if check_sha256:
            self._check_totals()

    @property
    def packed(self) -> bool:
        return self.manifest.packed

    @property
    def paths(self) -> list[Location]:
        return self.manifest.shard_paths()

    def __len__(self) -> int:
        return len(self.manifest.shards)

    def table(self, index: int, columns: Sequence[str] | None = None) -> pa.Table:
        """Shard ``index`` as a pyarrow Table (memory-mapped), for consumers that want Arrow itself."""
        return self._read(index, None if columns is None else list(columns))

    def rows(self, index: int, start: int, count: int = 1) -> pa.Table:
        """Rows ``start`` to ``start + count`` of shard ``index`` (checked as ``table`` is); a streamed shard
        keeps only those rows in memory, not the shard."""
        if not self.output.streams_shards:
            return self._read(index, None).slice(start, count)
        kept: list[pa.RecordBatch] = []
        schema, batches = self._streamed(index, None)
        seen = 0
        for batch in batches:
            if seen < start + count and seen + batch.num_rows > start:
                kept.append(batch.slice(max(start - seen, 0), start + count - max(start, seen)))
            seen += batch.num_rows
        return pa.Table.from_batches(kept, schema)

    def _read(self, index: int, columns: list[str] | None) -> pa.Table:
        entry = self.manifest.shards[index]
        if self.output.streams_shards:
            schema, batches = self._streamed(index, columns)
            return pa.Table.from_batches(list(batches), schema)
        if not self.check_sha256:
            return self.output.read_shard(entry.filename, columns)
        wanted = None if columns is None else list(dict.fromkeys([*columns, "num_tokens"]))
        try:  # the folder hashes the very mapped pages the table then views: the file is read once
            table = self.output.read_shard(entry.filename, wanted, entry.sha256, entry.xxh3_128)
        except ChecksumError as exc:
            raise self._damaged(entry.filename, exc.cause) from exc
        # summed over a numpy view of the data buffer: pyarrow.compute, to_numpy and np.asarray would import
        # pyarrow.compute (~30 ms) or pandas (~0.5 s) into commands that never use them
        column = table.column("num_tokens") if "num_tokens" in table.column_names else None
        tokens = None if column is None else sum(int(numeric_view(chunk).sum(dtype=np.int64)) for chunk in column.chunks)
        if table.num_rows != entry.num_rows or (tokens or 0) != entry.num_tokens:
            found = f"{table.num_rows:,} rows and {tokens or 0:,} tokens"
            listed = f"{entry.num_rows:,} rows and {entry.num_tokens:,} tokens"
            raise self._damaged(entry.filename, f"holds {found}, the manifest lists {listed}")
        return table if columns is None else table.select(columns)

    def _streamed(self, index: int, columns: list[str] | None) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        """(schema, record batches) of shard ``index`` decoded as its bytes arrive (see the module docstring);
        the batches' iterator raises the ``ChecksumError`` of a damaged shard after its last batch."""
        entry = self.manifest.shards[index]
        handle = self.output.open_shard_file(entry.filename)
        hashed = HashingReader(cast(BinaryIO, handle), (_checked(entry)[0],))
        try:
            reader = pa.ipc.open_stream(pa.PythonFile(hashed, mode="r"))
        except (OSError, pa.ArrowInvalid) as exc:
            raise self._stream_error(index, hashed, handle, exc, 0, 0) or exc from exc
        schema = reader.schema if columns is None else pa.schema([reader.schema.field(name) for name in columns])
        return schema, self._batches_of(index, reader, hashed, handle, columns)

    def _batches_of(
        self, index: int, reader: Any, hashed: HashingReader, handle: Any, columns: list[str] | None
    ) -> Iterator[pa.RecordBatch]:
        rows = tokens = 0
        try:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                except (OSError, pa.ArrowInvalid) as exc:
                    raise self._stream_error(index, hashed, handle, exc, rows, tokens) or exc from exc
                rows += batch.num_rows
                if "num_tokens" in batch.schema.names:  # counted before ``columns`` may leave it out
                    tokens += int(numeric_view(batch.column("num_tokens")).sum(dtype=np.int64))
                yield batch if columns is None else batch.select(columns)
            error = self._stream_error(index, hashed, handle, None, rows, tokens)
            if error is not None:
                raise error
        finally:
            handle.close()  # also when the caller stops early

    def _stream_error(
        self, index: int, hashed: HashingReader, handle: Any, failure: BaseException | None, rows: int, tokens: int
    ) -> InputError | None:
        """What is wrong with a streamed shard at its end (or where it could not be parsed), or None: the checksum
        of every byte first (a shard that changed is reported as such, as a local read reports it), then its counts."""
        entry = self.manifest.shards[index]
        try:
            digest = hashed.hexdigest()  # hashes what the decoder left unread (all of it after a failure)
        finally:
            handle.close()
        algorithm, recorded = _checked(entry)
        if self.check_sha256 and digest != recorded:
            return self._damaged(
                entry.filename, f"{algorithm} {digest}, the manifest records {recorded}: the file changed after it was written"
            )
        if failure is not None:
            fix = "Run `goldfish-prep verify` on the folder, or recreate it"
            return InputError(self.output.where(entry.filename), f"unreadable shard ({failure})", fix, "bad-shard")
        if self.check_sha256 and (rows != entry.num_rows or tokens != entry.num_tokens):
            found, listed = f"{rows:,} rows and {tokens:,} tokens", f"{entry.num_rows:,} rows and {entry.num_tokens:,} tokens"
            return self._damaged(entry.filename, f"holds {found}, the manifest lists {listed}")
        return None

    def _check_totals(self) -> None:
        """The manifest's totals are the sums of its shard entries, whose files are the ones ``state.json`` lists."""
        shards, counts = self.manifest.shards, self.manifest.counts
        try:
            listed = [entry["filename"] for entry in self.output.read_json(STATE)["_data_files"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise self._damaged(STATE, f"unreadable ({type(exc).__name__}: {exc})") from exc
        named = [entry.filename for entry in shards]
        if listed != named:
            extra = [name for name in listed if name not in named]
            lacking = [name for name in named if name not in listed]
            cause = (
                f"lists {extra[0]}, which the manifest's {len(named)} shard entries lack"
                if extra
                else f"lacks {lacking[0]}, which the manifest lists"
                if lacking
                else f"lists the shard files in another order than the manifest ({listed[:3]} ...)"
            )
            raise self._damaged(STATE, cause)
        for total, key in (("tokens", "num_tokens"), ("documents_written", "num_documents"), ("dropped_tokens", "num_dropped")):
            summed = sum(getattr(entry, key) for entry in shards)
            if total in counts and counts[total] != summed:
                cause = f"counts.{total} is {counts[total]:,} but its {len(shards)} shard entries add up to {summed:,}"
                raise self._damaged(MANIFEST, cause)

    def _damaged(self, name: str, cause: str) -> ChecksumError:
        return ChecksumError(
            self.output.where(name),
            cause,
            f"The output is damaged: `goldfish-prep verify {self.folder}` says what is wrong; "
            "rerun the `goldfish-prep mask` command that made it with --resume to redo what differs",
            "bad-shard",
        )


__all__ = ["CheckedShards"]
