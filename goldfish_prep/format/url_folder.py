"""An output folder at a URL (``s3://``, ``gs://``, ``memory://`` ...): the storage primitives over fsspec.

``OutputFolder`` holds every rule (names, life cycle, ownership, records,
manifest, checksums); this class only says how to list, read, write and delete
through an fsspec file system. ``mask -o s3://bucket/prefix`` writes one
(``pipeline.job``), with the file system made from the run's
``--storage-options`` and the provider's own credentials chain.

The commit protocol on an object store, which has no rename:

1. A shard is uploaded under its final name by one upload that becomes visible
   only when it completes: a single PUT for a small object, else one multipart
   upload whose ``CompleteMultipartUpload`` (``commit``) makes the whole object
   appear at once. Until then no listing, HEAD or GET sees any of it; an upload
   abandoned on an error is aborted (``abort``), and one cut off by SIGKILL or a
   lost machine stays an invisible incomplete multipart upload (a bucket
   lifecycle rule ``AbortIncompleteMultipartUpload`` reclaims its parts). No
   byte is staged on local disk: parts (the driver's block size) are held in
   memory and sent by a thread while the next ones are built (``UploadFile``);
   on S3 each request carries its body's SHA-256, which the store checks
   (``s3_upload``: a single PUT carries the sha256 the record will name).
2. The shard's completion record (``.goldfish/shard-NNNNN.json``, its sha256)
   is PUT only after that upload completed; ``--resume`` keeps exactly the
   shards whose record exists and whose object hashes to it, and deletes any
   other shard object (one uploaded whole whose record was never written).
3. ``dataset_info.json``, the manifest, then ``state.json`` last; readers need
   both the manifest and ``state.json``, and refuse the folder while a lock
   object exists.

Steps 2 and 3 are the same code as on a local disk (``OutputFolder``). S3 has
read-after-write consistency for PUTs and listings (since December 2020), which
the protocol relies on: a record written after its shard is never seen before
the shard. The lock checks drop the file system's cached listing of
``.goldfish/`` first: other processes write there. A failed request (after the
provider's retries) is one line naming the object, its cause and the fix
(``StoreError`` with a write's wording when the folder is opened for writing),
with secrets scrubbed (``readers.redact``).

``open_folder`` returns one for a URL, so the library's readers
(``open_shards``, ``load_manifest``) and the write path's pieces work on it,
and so do the reading commands (``stats``, ``show``, ``verify``, ``repeats``,
``export``, ``train``, ``memorization``: docs/remote.md).
``tests/test_folder.py`` runs a folder's whole life on fsspec's in-memory file
system and compares it byte for byte with a ``LocalFolder``; ``tests/test_url_reads.py``
reads an output on a real S3-protocol server, ``tests/test_gcs_urls.py`` writes and reads
one on a GCS emulator.

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
(``open(path, "xb")``), which s3fs sends as a conditional write (``PutObject``
or ``CompleteMultipartUpload`` with ``If-None-Match: *``; AWS S3 and moto honour
it, some S3-compatible stores do not); on GCS it is one multipart upload with
``ifGenerationMatch=0`` (``ObjectLock._one_request_create``), which fake-gcs-server
honours (``tests/test_gcs_urls.py``). There it is a real lock: of two writers that race, the store lets exactly one
create the object. For stores that ignore the header, the lock reads the object
before creating it (a later writer is refused) and after (an overwritten create
backs off); writers starting in the same instant can still both win there, and
one writer at a time is the user's promise (docs/remote.md), as it is for
drivers without an exclusive mode. A store cannot say whether a holder is
alive, but the machine it ran on can: a lock object names its holder's host,
boot and pid namespace (``machine_id``), and a run on that machine takes over
an object whose holder is no longer running (its pid gone or reused), as the
local lock does without flock; so does a later attempt of the same ``owner`` (a
Ray task Ray retries). On S3 the take-over is a PUT conditional on the stale
object's ETag (``If-Match``), so of two runs taking over, one wins. An object
left by a holder on another machine stays until it is removed, and the refusal
says how. Shared holders
(``--num-tasks`` tasks) hold nothing on a store; each task's own lock is
create-once.
"""

from __future__ import annotations

import io
import mmap
import tempfile
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar, cast

import pyarrow as pa

from goldfish_prep.errors import ConfigError, GoldfishError
from goldfish_prep.format.commit import HashingReader
from goldfish_prep.format.folder import OutputFolder
from goldfish_prep.format.lock import Holder, LockHeldError
from goldfish_prep.format.names import PROGRESS_DIR, WRITER_LOCK, is_lock_name, is_shard_filename, shard_record_name
from goldfish_prep.format.object_lock import ObjectLock
from goldfish_prep.format.ownership import progress_path
from goldfish_prep.format.s3_upload import is_s3
from goldfish_prep.format.store_errors import StoreError, short_cause, speaks_of_a_bucket, store_failure, translated
from goldfish_prep.format.upload import UploadFile, part_size_of

#: bytes per ranged GET when a shard is streamed: memory held per open shard, and about 128 requests per GB
READ_BLOCK = 8 << 20
_T = TypeVar("_T")
#: schemes whose "folders" are key prefixes: nothing to create, and fsspec's makedirs would create a bucket
_FLAT = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl"})


class UrlFolder(OutputFolder):
    """An output folder on any fsspec file system (object stores, memory)."""

    streams_shards = True  # a shard read whole would be a copy in memory: readers stream it (``open_shard_file``)
    commits_in_background = True  # a shard's upload overlaps the next shard's work (``pipeline.job``)

    def __init__(self, url: str, owner: str | None = None, writing: bool = False) -> None:
        """``owner``: written into the lock objects this folder creates (``ObjectLock``; a Ray task's id);
        ``writing``: a run writes it (``mask -o``, ``finalize``), so a refused request is worded as a write's."""
        from goldfish_prep.readers.redact import shown_url

        self.url = url.rstrip("/")
        self._shown = shown_url(self.url)  # messages never show a signed URL's query or a password
        try:
            self.fs, self.root = _filesystem(self.url)
        except GoldfishError:  # readers.remote's own line: the package and the extra to install
            raise
        except (ValueError, ImportError) as exc:  # an unknown scheme, or its fsspec driver is not installed
            raise ConfigError(f"cannot open {self._shown} ({exc}); pass a local path, or install the fsspec driver for it") from exc
        self._flat = self.url.split("://", 1)[0].lower() in _FLAT
        self.owner = owner
        self._writing = writing

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}" if name else self.root

    def where(self, name: str = "") -> str:
        return f"{self._shown}/{name}" if name else self._shown

    def _ask(self, name: str, request: Callable[[], _T]) -> _T:
        """Run one request to the store; what it refuses becomes one line naming ``name``."""
        try:
            return request()
        except GoldfishError:
            raise
        except Exception as exc:  # providers raise many types: OSError subclasses, botocore, aiohttp, their own
            raise self._refused(name, exc) from None

    def _refused(self, name: str, exc: BaseException) -> GoldfishError:
        from goldfish_prep.readers.remote import store_error

        if isinstance(exc, TypeError):  # the driver makes its client on first use, with every option it was given
            return ConfigError(f"--storage-options do not fit the file system of {self.where(name)}: {short_cause(exc)}")
        return store_failure(self.where(name), exc) if self._writing else store_error(self.where(name), exc)

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
            if not speaks_of_a_bucket(exc, self._shown):  # s3fs: "The specified bucket does not exist"; gcsfs: "b/NAME/o"
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
        """One PUT: the object appears whole, or not at all."""
        self._write(name, lambda: self.fs.pipe_file(self._path(name), data))

    def _write(self, name: str, operation: Callable[[], _T]) -> _T:
        with translated(self.where(name)):
            return operation()

    def pending(self, name: str) -> UploadFile:
        return UploadFile(self.fs, self._path(name), self.where(name), part_size_of(self.fs))

    def remove(self, name: str) -> None:
        path = self._path(name)

        def remove() -> None:
            if self.fs.isdir(path):
                self.fs.rm(path, recursive=True)
            elif self.fs.exists(path):
                self.fs.rm_file(path)

        try:
            self._write(name, remove)
        except FileNotFoundError:
            pass  # deleted meanwhile (tasks delete concurrently)

    def move(self, name: str, to: str) -> None:
        """A copy and a delete on an object store (no rename there): server-side, so no byte travels through here."""
        self._write(name, lambda: self.fs.mv(self._path(name), self._path(to), recursive=True))

    def abort_open_uploads(self, owns: Callable[[str], bool]) -> int:
        """On S3, abort the multipart uploads of shards left open under this prefix by a run that died (SIGKILL, a
        lost machine), for the shards ``owns`` accepts (a task's own); return how many.

        Called once this run holds the folder's lock (``life_cycle.prepare``), when no
        live run can be sending those shards: the plain run's lock excludes every
        other writer, and a task aborts only its own shards' uploads. Without it
        they stay invisible and billed until a lifecycle rule reclaims them (their
        upload ids died with the run). Best effort: a store or a key that may not
        list or abort uploads (``s3:ListBucketMultipartUploads``,
        ``s3:AbortMultipartUpload``) leaves them to that rule, and the run goes on.
        GCS's resumable sessions and Azure's uncommitted blocks expire by
        themselves (a week), and neither can be listed here."""
        if not is_s3(self.fs):  # the drivers of other stores list no open uploads
            return 0
        bucket, key, _ = self.fs.split_path(self.root)
        prefix = f"{key}/" if key else ""
        aborted = 0
        try:
            markers: dict[str, str] = {}
            while True:
                page = self.fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix, **markers)
                for upload in page.get("Uploads", []):
                    name = upload["Key"][len(prefix) :]
                    if "/" not in name and is_shard_filename(name) and owns(name):
                        self.fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                        aborted += 1
                if not page.get("IsTruncated"):
                    return aborted
                markers = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}
        except Exception:  # refused or failing: the lifecycle rule's work (docs/remote.md), never this run's error
            return aborted

    def make_progress_folder(self) -> None:
        """Nothing on an object store, whose folders are key prefixes (fsspec's ``makedirs`` would even create a
        missing bucket: a bucket that does not exist is refused instead, by the first write)."""
        if not self._flat:
            self._write(PROGRESS_DIR, lambda: self.fs.makedirs(self._path(PROGRESS_DIR), exist_ok=True))

    def check_writable(self) -> None:
        """Nothing to try: an abandoned upload may still appear on some stores, and the lock object just created
        (``writing``) proved that this folder can be written."""

    def lock(self, name: str, shared: bool = False) -> ObjectLock:
        """Lock object ``name``. Tasks hold ``writer.lock`` shared, which is nothing on a store, so the exclusion
        of a plain run (or ``finalize``) and tasks is two flags: each creates its own object, then looks for the
        other's (``writer.lock`` looks for task locks, a task lock for ``writer.lock``) and backs off if it is
        there. With the store's read-after-write consistency at least one of two that race sees the other."""
        base = name.rsplit("/", 1)[-1]
        check: Callable[[], None] | None = None
        if not shared and base == WRITER_LOCK:
            check = self._no_task_holds
        elif not shared and base.startswith("task-"):
            check = self._no_writer_holds
        return ObjectLock(self.fs, self._path(name), self.where(name), shared, check, self.owner)

    def read_shard_records(self, count: int) -> list[dict[str, Any] | None]:
        """One listing of ``.goldfish/``, then every record in concurrent GETs (fsspec's ``cat`` of a list), where
        reading them one by one costs a HEAD and a GET each, in turn: minutes for thousands of shards."""
        self._fresh()  # records other processes (tasks, Ray) committed since this object last listed
        present = set(self.shard_record_names())
        wanted = {index: self._path(progress_path(shard_record_name(index))) for index in range(count)}
        wanted = {index: path for index, path in wanted.items() if path.rsplit("/", 1)[-1] in present}
        fetched: dict[str, bytes] = self._ask(PROGRESS_DIR, lambda: self.fs.cat(list(wanted.values()))) if wanted else {}
        by_path = {self.fs._strip_protocol(path): data for path, data in fetched.items()}
        found: list[dict[str, Any] | None] = [None] * count
        for index, path in wanted.items():
            found[index] = self.parse_shard_record(progress_path(shard_record_name(index)), by_path[self.fs._strip_protocol(path)])
        return found

    def _fresh(self) -> None:
        """Drop the file system's cached listing of ``.goldfish/``: other processes create lock objects there."""
        invalidate = getattr(self.fs, "invalidate_cache", None)
        if invalidate is not None:
            invalidate(self._path(PROGRESS_DIR))

    def _no_task_holds(self) -> None:
        self._fresh()
        for entry in self.entries(PROGRESS_DIR):
            if entry.startswith("task-") and is_lock_name(entry):
                name = f"{PROGRESS_DIR}/{entry}"
                raise LockHeldError(self.where(name), self.lock_holder(name))

    def _no_writer_holds(self) -> None:
        name = f"{PROGRESS_DIR}/{WRITER_LOCK}"
        self._fresh()
        if self.has_file(name):
            raise LockHeldError(self.where(name), self.lock_holder(name))

    def lock_holder(self, name: str) -> Holder | None:
        """The holder named in the lock object (a store cannot tell whether it is still alive)."""
        return ObjectLock(self.fs, self._path(name), self.where(name), True)._holder()

    def held_line(self, lock: str, holder: Holder | None) -> str:
        """The refusal of a second writer: a lock object stays after its holder died, so say how to tell and remove it."""
        who = f" ({holder.describe()})" if holder is not None else ""
        dead = holder is not None and holder.is_dead()
        why = "; that process is no longer running, so the lock was left by a run that was killed" if dead else ""
        tool = {"s3": "aws s3 rm", "s3a": "aws s3 rm", "gs": "gcloud storage rm"}.get(lock.split("://", 1)[0])
        remove = f" (`{tool} {lock}`)" if tool else ""
        return (
            f"output folder {self.where()} is being written by another run{who}{why}. A store cannot tell whether "
            "a holder on another machine is alive: if it ended without letting go (killed, machine lost), delete the "
            f"lock object {lock}{remove} and rerun with --resume"
        )

    def shard_buffer(self, name: str) -> pa.Buffer:
        """The whole shard (``verify`` checks a shard as a whole), as a local shard is: memory-mapped. It is
        streamed in ``READ_BLOCK`` GETs into an unnamed temporary file (``TMPDIR``; nothing to clean up, even
        after SIGKILL), so the process holds one block, not the shard: the mapped pages are the page cache's,
        which the kernel can drop, where a buffer in memory could not be (bench/url_verify_memory.py)."""
        with self.open_shard_file(name) as handle, tempfile.TemporaryFile(prefix="goldfish-shard-") as staged:
            size = int(self._ask(name, lambda: self.fs.size(self._path(name))))
            done = 0
            while block := handle.read(READ_BLOCK):
                try:
                    staged.write(block)
                except OSError as exc:
                    raise OSError(
                        f"no room for a temporary copy of the shard in {tempfile.gettempdir()} ({exc.strerror or exc}); "
                        "set TMPDIR to a folder with room for one shard"
                    ) from exc
                done += len(block)
            if done != size:
                raise OSError(f"the object ended after {done:,} of its {size:,} bytes")
            staged.flush()
            if not size:
                return pa.py_buffer(b"")
            mapped = mmap.mmap(staged.fileno(), size, access=mmap.ACCESS_READ)  # outlives the file's descriptor
        return pa.py_buffer(mapped)

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


__all__ = ["READ_BLOCK", "ObjectLock", "StoreError", "UploadFile", "UrlFolder", "store_failure"]
