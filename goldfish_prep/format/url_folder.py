"""An output folder at a URL (``memory://``, ``s3://``, ``gs://`` ...): the storage primitives over fsspec.

``OutputFolder`` holds every rule (names, life cycle, ownership, records,
manifest, checksums); this class only says how to list, read, write and delete
through an fsspec file system. Object stores have no rename, so step 1 of the
commit protocol is the store's own: an object appears whole when its upload
completes (``pipe_file``, or the close of a file opened for writing), and an
upload that is abandoned (``abort``) never appears. Steps 2 and 3 (a shard
record written after its shard, ``state.json`` after everything) are the same
code as on a local disk.

``open_folder`` returns one for a URL, so the library's readers
(``open_shards``, ``load_manifest``) and the write path's pieces work on it,
and so do the reading commands (``stats``, ``show``, ``verify``, ``repeats``,
``export``, ``train``, ``memorization``: docs/remote.md).
``tests/test_folder.py`` runs a folder's whole life on fsspec's in-memory file
system and compares it byte for byte with a ``LocalFolder``; ``tests/test_url_reads.py``
reads an output on a real S3-protocol server.

Reading. A URL of a scheme ``readers.remote`` knows (``s3://``, ``gs://`` ...)
opens the run's file system for it, with the run's ``--storage-options`` and the
provider's credential chain; other fsspec schemes (``memory://``) open as fsspec
opens them. Shards are never fetched whole (no ``cat_file``): ``open_shard_file``
streams one in ``READ_BLOCK`` ranged GETs (about 128 requests per GB, one block of
memory at a time), and ``reader.ShardSet`` decodes its record batches and hashes
the same bytes as they arrive. What the store refuses (no bucket, no such
prefix, wrong credentials, no permission, a store that keeps failing) is one
``InputError`` line from ``readers.remote.store_error``, with no secret in it.

The lock (``ObjectLock``) is a create-once object: fsspec's exclusive mode
(``open(path, "xb")``) fails when the object exists. Drivers that implement it
with the store's conditional write (S3 ``If-None-Match: *``, GCS
``ifGenerationMatch=0``) make it a real lock; those that check, then write
(or refuse the mode) cannot, and there one writer at a time is the user's
promise (docs/format.md). A store cannot say whether a holder on another
machine is alive: a lock object left by a dead run stays until it is removed,
as the refusal says. Shared holders (``--num-tasks`` tasks) hold nothing on a store.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar, cast

import pyarrow as pa

from goldfish_prep.errors import ConfigError, GoldfishError
from goldfish_prep.format.commit import Checksums, HashingReader
from goldfish_prep.format.folder import OutputFolder
from goldfish_prep.format.lock import Holder, LockHeldError
from goldfish_prep.format.names import PROGRESS_DIR

#: bytes per ranged GET when a shard is streamed: memory held per open shard, and about 128 requests per GB
READ_BLOCK = 8 << 20
_T = TypeVar("_T")


class UploadFile:
    """A file being uploaded, hashed on the way; it appears on the store only when ``commit`` closes it."""

    def __init__(self, fs: Any, path: str, where: str) -> None:
        self._fs = fs
        self._path = path
        self.temporary = where  # object stores write to the final name: nothing is visible before the commit
        self._raw = fs.open(path, "wb")
        self._hashes = Checksums()

    def write(self, data: bytes | memoryview) -> int:
        self._hashes.update(data)
        written: int = self._raw.write(data)
        return written

    def flush(self) -> None:
        """Buffered by the upload; the bytes are sent on ``commit``."""

    def close(self) -> None:
        """Closing the Arrow sink must not complete the upload: ``commit`` does."""

    @property
    def closed(self) -> bool:
        return bool(self._raw.closed)

    def commit(self) -> str:
        self._raw.close()
        return self.checksums()["sha256"]

    def checksums(self) -> dict[str, str]:
        """Every checksum of ``commit.CHECKSUMS`` of the bytes written so far."""
        return self._hashes.hexdigests()

    def abort(self) -> None:
        discard = getattr(self._raw, "discard", None)
        if discard is not None:
            discard()
        elif not self._raw.closed:
            self._raw.close()
            self._fs.rm_file(self._path)


class ObjectLock:
    """A lock object created once (``"xb"``) holding its holder's JSON, deleted on release."""

    def __init__(self, fs: Any, path: str, where: str, shared: bool) -> None:
        self._fs, self._path, self._where, self.shared = fs, path, where, shared
        self.taken_over: Holder | None = None
        self._held = False

    def acquire(self) -> None:
        if self.shared:  # a store has no shared lock: refuse only an exclusive holder
            holder = self._holder()
            if holder is not None:
                raise LockHeldError(self._where, holder)
            return
        try:
            with self._fs.open(self._path, "xb") as handle:
                handle.write(Holder.me().to_bytes())
        except FileExistsError:
            raise LockHeldError(self._where, self._holder()) from None
        except (ValueError, NotImplementedError):
            return  # the driver has no create-once mode: nothing can be held (docs/format.md)
        self._held = True

    def _holder(self) -> Holder | None:
        try:
            return Holder.parse(self._fs.cat_file(self._path))
        except (OSError, FileNotFoundError):
            return None

    def release(self) -> None:
        if self._held:
            self._fs.rm_file(self._path)
            self._held = False


class UrlFolder(OutputFolder):
    """An output folder on any fsspec file system (object stores, memory)."""

    streams_shards = True  # a shard read whole would be a copy in memory: readers stream it (``open_shard_file``)

    def __init__(self, url: str) -> None:
        from goldfish_prep.readers.redact import shown_url

        self.url = url.rstrip("/")
        self._shown = shown_url(self.url)  # messages never show a signed URL's query or a password
        try:
            self.fs, self.root = _filesystem(self.url)
        except GoldfishError:  # readers.remote's own line: the package and the extra to install
            raise
        except (ValueError, ImportError) as exc:  # an unknown scheme, or its fsspec driver is not installed
            raise ConfigError(f"cannot open {self._shown} ({exc}); pass a local path, or install the fsspec driver for it") from exc

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}" if name else self.root

    def where(self, name: str = "") -> str:
        return f"{self._shown}/{name}" if name else self._shown

    def _ask(self, name: str, request: Callable[[], _T]) -> _T:
        """Run one request to the store; what it refuses becomes one ``InputError`` line naming ``name``."""
        try:
            return request()
        except GoldfishError:
            raise
        except Exception as exc:  # providers raise many types: OSError subclasses, botocore, aiohttp, their own
            raise self._refused(name, exc) from None

    def _refused(self, name: str, exc: BaseException) -> GoldfishError:
        from goldfish_prep.readers.remote import store_error

        return store_error(self.where(name), exc)

    def exists(self) -> bool:
        return self._kind() is not None

    def is_folder(self) -> bool:
        return self._kind() == "directory"

    def _kind(self) -> str | None:
        """``"directory"``, ``"file"`` or None (nothing there). ``fs.isdir`` would answer False for a bucket that
        does not exist or credentials the store refuses; ``info`` lets the store say which it is."""
        try:
            info = self.fs.info(self.root)
        except FileNotFoundError as exc:
            if "bucket" not in str(exc).lower():  # s3fs: "The specified bucket does not exist"
                return None
            raise self._refused("", exc) from None
        except GoldfishError:
            raise
        except Exception as exc:
            raise self._refused("", exc) from None
        return str(info.get("type"))

    def has_file(self, name: str) -> bool:
        return bool(self._ask(name, lambda: self.fs.isfile(self._path(name))))

    def entries(self, under: str = "") -> list[str]:
        folder = self._path(under)
        if not self._ask(under, lambda: self.fs.isdir(folder)):
            return []
        listed = self._ask(under, lambda: self.fs.ls(folder, detail=False))
        return sorted(str(path).rstrip("/").rsplit("/", 1)[-1] for path in listed)

    def read_bytes(self, name: str) -> bytes:
        data: bytes = self._ask(name, lambda: self.fs.cat_file(self._path(name)))
        return data

    def open_shard_file(self, name: str) -> io.BufferedIOBase:
        """Shard ``name`` streamed in ``READ_BLOCK`` ranged GETs; a failed request is one ``InputError`` line."""
        from goldfish_prep.readers.remote import failing_in_one_line

        handle = self._ask(name, lambda: self.fs.open(self._path(name), "rb", block_size=READ_BLOCK, cache_type="readahead"))
        return failing_in_one_line(handle, self.where(name))

    def write_bytes(self, name: str, data: bytes) -> None:
        self.fs.pipe_file(self._path(name), data)

    def pending(self, name: str) -> UploadFile:
        return UploadFile(self.fs, self._path(name), self.where(name))

    def remove(self, name: str) -> None:
        path = self._path(name)
        if self.fs.isdir(path):
            self.fs.rm(path, recursive=True)
        elif self.fs.exists(path):
            self.fs.rm_file(path)

    def move(self, name: str, to: str) -> None:
        """A copy and a delete on an object store (no rename there)."""
        self.fs.mv(self._path(name), self._path(to), recursive=True)

    def make_progress_folder(self) -> None:
        self.fs.makedirs(self._path(PROGRESS_DIR), exist_ok=True)

    def check_writable(self) -> None:
        """Nothing to try: an abandoned upload may still appear on some stores, and the lock object just created
        (``writing``) proved that this folder can be written."""

    def lock(self, name: str, shared: bool = False) -> ObjectLock:
        return ObjectLock(self.fs, self._path(name), self.where(name), shared)

    def lock_holder(self, name: str) -> Holder | None:
        """The holder named in the lock object (a store cannot tell whether it is still alive)."""
        return ObjectLock(self.fs, self._path(name), self.where(name), True)._holder()

    def shard_buffer(self, name: str) -> pa.Buffer:
        """The whole shard, read block by block into one buffer (``verify`` checks a shard as a whole): one copy
        of it in memory, never two (``cat_file`` would hold the response and then the bytes)."""
        with self.open_shard_file(name) as handle:
            size = int(self._ask(name, lambda: self.fs.size(self._path(name))))
            buffer = pa.allocate_buffer(size, resizable=False)
            view, done = memoryview(buffer).cast("B"), 0
            while done < size:
                read = handle.readinto(view[done : done + READ_BLOCK])
                if not read:
                    raise OSError(f"the object ended after {done:,} of its {size:,} bytes")
                done += read
        return buffer

    def sha256(self, name: str) -> str:
        with self.open_shard_file(name) as handle:
            return HashingReader(cast(BinaryIO, handle)).hexdigest()


def _filesystem(url: str) -> tuple[Any, str]:
    """(file system, path on it) of ``url``: the run's, with its storage options, for a scheme ``readers.remote``
    reads (fresh for each command: credentials set since are used); fsspec's own for any other scheme."""
    from fsspec.core import url_to_fs

    from goldfish_prep.readers.remote import PROVIDERS, filesystem_of

    scheme = url.split("://", 1)[0].lower()
    if scheme in PROVIDERS:
        fs = filesystem_of(url)
        return fs, str(fs._strip_protocol(url)).rstrip("/")
    fs, root = url_to_fs(url)
    return fs, str(root)


__all__ = ["READ_BLOCK", "ObjectLock", "UploadFile", "UrlFolder"]
