"""What an output folder's storage must provide: the primitives every rule of ``OutputFolder`` is written on.

An output folder is a few files under one location; what differs between a
local disk and an object store is only how a file is listed, read, committed,
removed, renamed and locked. ``FolderStorage`` names exactly those primitives
(and the two ways to read a shard: mapped or streamed), so that the commit
protocol (``folder``), the progress files (``progress``) and checked shard
reads (``shard_bytes``) are written once on top of them.

``LocalFolder`` implements the primitives with ``os`` calls (memory-mapped
reads, ``os.replace``, ``fsync``), which keeps local I/O as fast as it was; a
folder at a URL (``s3://``, via fsspec) is ``UrlFolder``, a second subclass
with its own primitives, not a second copy of the rules: ``open_folder``
chooses between them.
"""

from __future__ import annotations

import abc
import io
from collections.abc import Callable
from typing import Any, Protocol

import pyarrow as pa

from goldfish_prep.format.lock import Holder


class PendingWrite(Protocol):
    """A file being written that becomes visible only on ``commit`` (``commit.PendingFile`` on a local disk)."""

    temporary: Any

    def write(self, data: bytes | memoryview) -> int: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    def commit(self) -> str: ...
    def checksums(self) -> dict[str, str]: ...
    def abort(self) -> None: ...
    def cancel(self) -> None: ...


class HeldLock(Protocol):
    """One lock file held or about to be (``lock.FileLock`` on a local disk)."""

    taken_over: Holder | None

    def acquire(self) -> None: ...
    def release(self) -> None: ...


class FolderStorage(abc.ABC):
    """The storage primitives of one output folder; names inside it are relative (``".goldfish/run.json"``)."""

    # ---- storage primitives: what a second implementation (a URL folder) provides

    @abc.abstractmethod
    def exists(self) -> bool:
        """Whether anything is at the folder's location."""

    @abc.abstractmethod
    def is_folder(self) -> bool: ...

    @abc.abstractmethod
    def has_file(self, name: str) -> bool: ...

    @abc.abstractmethod
    def entries(self, under: str = "") -> list[str]:
        """The names in the folder (or in its subfolder ``under``), sorted; [] when there is none."""

    @abc.abstractmethod
    def read_bytes(self, name: str) -> bytes: ...

    @abc.abstractmethod
    def write_bytes(self, name: str, data: bytes) -> None:
        """Commit ``data`` as ``name`` (step 1 of the protocol); an ``OSError`` when it cannot be written."""

    @abc.abstractmethod
    def pending(self, name: str) -> PendingWrite:
        """Start writing ``name``; it becomes visible on the returned object's ``commit``."""

    @abc.abstractmethod
    def remove(self, name: str) -> None:
        """Delete a file or a subfolder; a name already gone is no error (tasks delete concurrently)."""

    @abc.abstractmethod
    def move(self, name: str, to: str) -> None:
        """Give file or subfolder ``name`` the name ``to`` (its folder made if needed): a rename on a local disk."""

    @abc.abstractmethod
    def make_progress_folder(self) -> None: ...

    def abort_open_uploads(self, owns: Callable[[str], bool]) -> int:
        """Abort the uploads a dead run left open under the names ``owns`` accepts; return how many.

        Nothing to do on a local disk (a killed run's temporaries are files, which
        ``remove`` deletes); an object store's multipart upload is invisible and
        billed until aborted (``UrlFolder``)."""
        return 0

    @abc.abstractmethod
    def shard_buffer(self, name: str) -> pa.Buffer:
        """The bytes of shard ``name``: memory-mapped on a local disk (no copy), read whole elsewhere."""

    #: whether ``mask`` commits a shard (its upload, then its record) in the background while it builds the next one:
    #: a URL folder, where a commit is an upload the run would otherwise wait for (``pipeline.job``); a local
    #: disk commits in place (fsync and rename)
    commits_in_background = False

    #: whether readers stream shards (``open_shard_file``: a URL folder, where reading one whole costs a copy in
    #: memory) rather than map them (``shard_buffer``: a local disk)
    streams_shards = False

    def open_shard_file(self, name: str) -> io.BufferedIOBase:
        """Shard ``name`` opened to be read piece by piece (``checked_shards`` decodes and hashes it as it arrives)."""
        raise NotImplementedError(f"{type(self).__name__} maps its shards (shard_buffer)")

    @abc.abstractmethod
    def sha256(self, name: str) -> str: ...

    @abc.abstractmethod
    def lock(self, name: str, shared: bool = False) -> HeldLock:
        """The lock file ``name`` (not yet taken): exclusive, or shared with other shared holders."""

    @abc.abstractmethod
    def lock_holder(self, name: str) -> Holder | None:
        """Who holds lock file ``name`` exclusively now (None when no live process does): for readers."""

    @abc.abstractmethod
    def where(self, name: str = "") -> str:
        """How a file of the folder is named in messages."""

    def __str__(self) -> str:
        return self.where()


__all__ = ["FolderStorage", "HeldLock", "PendingWrite"]
