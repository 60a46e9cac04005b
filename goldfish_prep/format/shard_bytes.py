"""A shard file of an output folder read whole, its bytes hashed in the same read: ``ChecksumError`` when they changed.

A reader checks what it reads (docs/format.md): the bytes a shard's table views
are the bytes hashed, once, so a shard swapped, cut or appended to after it was
written is refused, in one line, before its table is handed out. On a local
disk those bytes are the memory-mapped file (``storage.FolderStorage.shard_buffer``),
so the check adds a hash (xxh3-128; its cost is in docs/performance.md) and
no copy. ``verify`` takes the bytes and every checksum of them and compares
the digests itself (``read_shard_bytes``); the shard reader streams a shard at
a URL instead and hashes it as it arrives (``checked_shards``).
"""

from __future__ import annotations

import dataclasses

import pyarrow as pa

from goldfish_prep.errors import InputError
from goldfish_prep.format.commit import CHECKSUMS, buffer_checksums
from goldfish_prep.format.storage import FolderStorage

_UNREADABLE_SHARD_FIX = "Run `goldfish-prep verify` on the folder, or recreate it"


class ChecksumError(InputError):
    """A shard whose bytes do not hash to the checksum its record or the manifest holds."""


@dataclasses.dataclass(frozen=True)
class ShardBytes:
    """A shard's bytes as read (``buffer``), their ``checksums`` (``{algorithm: hex digest}``), and the Arrow
    table they hold."""

    where: str
    buffer: pa.Buffer
    checksums: dict[str, str]

    @property
    def sha256(self) -> str:
        return self.checksums.get("sha256", "")

    def table(self, columns: list[str] | None = None) -> pa.Table:
        """The shard as a Table (views of ``buffer``, no copy); an ``InputError`` naming the file if it is not Arrow."""
        try:
            table = pa.ipc.open_stream(self.buffer).read_all()
        except (OSError, pa.ArrowInvalid) as exc:
            raise InputError(self.where, f"unreadable shard ({exc})", _UNREADABLE_SHARD_FIX, "bad-shard") from exc
        return table.select(columns) if columns is not None else table


class ShardReads(FolderStorage):
    """Reading a shard of the folder with its checksum checked on the way (``shard_buffer``: one read)."""

    def read_shard(self, name: str, columns: list[str] | None = None, sha256: str | None = None, xxh3_128: str | None = None) -> pa.Table:
        """Shard ``name`` as a Table (memory-mapped on a local disk), its bytes checked as read against
        ``xxh3_128`` when given (outputs written since the manifest records it), else against ``sha256``
        when given (older outputs): one checksum, the fastest recorded, is enough to notice a changed file."""
        expected = {"xxh3_128": xxh3_128} if xxh3_128 is not None else {"sha256": sha256} if sha256 is not None else {}
        shard = self._shard_bytes(name, tuple(expected))
        for algorithm, digest in shard.checksums.items():
            if digest != expected[algorithm]:
                raise ChecksumError(
                    self.where(name),
                    f"{algorithm} {digest}, the manifest records {expected[algorithm]}: the file changed after it was written",
                    "Run `goldfish-prep verify` on the folder, and recreate it with `goldfish-prep mask`",
                    "bad-shard",
                )
        return shard.table(columns)

    def read_shard_bytes(self, name: str) -> ShardBytes:
        """Shard ``name``'s bytes and every checksum of them (sha256, xxh3_128), from one read; ``.table()`` parses
        them (``verify`` reports a wrong checksum and still checks the rows, so it compares the digests itself)."""
        return self._shard_bytes(name, CHECKSUMS)

    def _shard_bytes(self, name: str, algorithms: tuple[str, ...]) -> ShardBytes:
        try:
            buffer = self.shard_buffer(name)
        except OSError as exc:
            raise InputError(self.where(name), f"unreadable shard ({exc})", _UNREADABLE_SHARD_FIX, "bad-shard") from exc
        # the pages hashed are the pages the table maps: the file is read once
        return ShardBytes(self.where(name), buffer, buffer_checksums(buffer, algorithms) if algorithms else {})


__all__ = ["ChecksumError", "ShardBytes", "ShardReads"]
