"""The writers' lock on an object store: a create-once object (``ObjectLock``), and how a stale one is told apart.

Why a module of its own: a store has no ``flock`` and cannot say whether a
holder is alive, so the lock is an object created with a conditional write
(see ``url_folder``'s docstring for the protocol and the stores that honour it:
s3fs's ``If-None-Match: *``, tested on moto; gcsfs's ``ifGenerationMatch=0`` on one
multipart upload, tested on fake-gcs-server; docs/remote.md says what holds where),
which records the machine its holder ran on (``machine_id``: host, boot and pid
namespace) and, for Ray, the job (``ray_job_ended``); a run on that machine, or
on a cluster whose job table says the job ended, takes a dead holder's object
over with a PUT conditional on its ETag (on GCS: an upload conditional on its
generation, ``ifGenerationMatch``).

On Azure (adlfs) both hold as on S3: the exclusive create is a ``Put Block List``
with ``If-None-Match: *``, refused ``409 BlobAlreadyExists`` (adlfs raises
``FileExistsError``), and the take-over an ``upload_blob`` with ``If-Match`` on the
ETag (``if_match``), refused ``412 ConditionNotMet``; both tested against Azurite
(``tests/test_azure_urls.py``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from goldfish_prep.format.held_stops import held_stops
from goldfish_prep.format.lock import Holder, LockHeldError
from goldfish_prep.format.store_errors import NoCreateOnce, store_answer, translated


class ObjectLock:
    """A lock object created once (``"xb"``) holding its holder's JSON, deleted on release.

    ``check``, when given, runs once the object is created and raises ``LockHeldError`` for a
    conflicting holder (then this lock object is deleted again): ``UrlFolder.lock`` uses it so that
    a plain run and the tasks of a split run, which hold different objects, still exclude each other.

    ``owner`` names a unit of work that a scheduler runs again when its process dies (a Ray task id,
    the same for each of its attempts): it is written into the object, and an object left with the
    same owner is taken over, since the scheduler starts an attempt only once the one before is dead.
    """

    def __init__(
        self, fs: Any, path: str, where: str, shared: bool, check: Callable[[], None] | None = None, owner: str | None = None
    ) -> None:
        self._fs, self._path, self._where, self.shared = fs, path, where, shared
        self.taken_over: Holder | None = None
        self._held = False
        self._check = check
        self._owner = owner

    def acquire(self) -> None:
        if self.shared:  # a store has no shared lock: refuse only an exclusive holder
            holder = self._holder()
            if holder is not None:
                raise LockHeldError(self._where, holder)
            return
        # its command line has secrets scrubbed (a --storage-options key stays out); "machine" tells a later run on
        # the same machine that it can judge whether this process is alive
        fields = {**json.loads(Holder.me().to_bytes()), "machine": machine_id()}
        # this acquisition's own mark: a create whose answer was lost, retried by the driver and refused (412)
        # because the first attempt had landed, finds its own bytes there (``_landed``)
        fields["token"] = secrets.token_hex(8)
        if self._owner is not None:
            fields["owner"] = self._owner
        mine = json.dumps(fields, sort_keys=True).encode() + b"\n"
        # a stop (Ctrl-C) between the create's request and its answer would end the run while the object lands
        # after it: held until this process knows what it holds, then it lets go and stops (``held_stops``)
        with held_stops() as stops:
            try:
                self._create(mine)
            except NoCreateOnce:
                return  # nothing can be held (docs/remote.md)
            except LockHeldError:
                left = self._stale()
                if left is None:
                    raise
                self._take_over(mine, *left)
                self.taken_over = left[0]
            self._held = True
            if stops:
                self.release()
                return  # the held stop is raised as the block ends
        if self._check is not None:
            try:
                self._check()
            except BaseException:
                self.release()
                raise

    def _stale(self) -> tuple[Holder, str | None] | None:
        """(holder, the version read: the object's ETag, or on GCS its generation) when the lock object was left by a
        process known to be dead, else None.

        Known dead: an earlier attempt of this lock's ``owner`` (a Ray task Ray retried), or a process of this very
        machine (same host name, boot and pid namespace: ``machine_id``) whose pid is gone or was reused (``Holder.
        is_dead``), as the local lock judges a holder without flock. A holder on another machine is never judged."""
        with translated(self._where):
            invalidate = getattr(self._fs, "invalidate_cache", None)
            if invalidate is not None:
                invalidate(self._path)  # an ETag cached from a listing would be stale
            data: bytes | None
            try:
                if is_gcs(self._fs):
                    data, etag = gcs_read(self._fs, self._path)
                    if etag is None:
                        return None  # no generation to make the take-over conditional on: never take over blind
                else:
                    etag = etag_of(self._fs.info(self._path)) if self._conditional else None  # first: see _take_over
                    data = self._content()
            except FileNotFoundError:
                return None  # let go meanwhile: the caller's refusal stands, a rerun finds the folder free
        holder = Holder.parse(data) if data is not None else None
        if data is None or holder is None:
            return None
        try:
            fields = json.loads(data.decode("utf-8"))
        except ValueError:
            return None
        if self._owner is not None and fields.get("owner") == self._owner:
            return holder, etag
        here = machine_id()
        if here is not None and fields.get("machine") == here and holder.is_dead():
            return holder, etag
        if ray_job_ended(fields.get("owner")):
            return holder, etag
        return None

    @property
    def _conditional(self) -> bool:
        """Whether the driver can replace an object only if it is still the one read (s3fs, adlfs: ``If-Match``;
        gcsfs: ``ifGenerationMatch``, sent by ``gcs_replace``)."""
        return "s3" in getattr(self._fs, "protocol", ()) or is_azure(self._fs) or is_gcs(self._fs)

    @property
    def _one_request_create(self) -> bool:
        """Whether the create-once is ``pipe_file(mode="create")`` (gcsfs): one multipart upload with
        ``ifGenerationMatch=0`` on the request that creates the object. gcsfs's ``"xb"`` file instead opens a
        resumable upload session with the precondition on its first request, which fake-gcs-server (1.54, the
        emulator of tests/gcs_server.py) ignores: there two writers both won (tests/test_gcs_urls.py)."""
        return "gs" in getattr(self._fs, "protocol", ())

    def _take_over(self, mine: bytes, holder: Holder, etag: str | None) -> None:
        """Replace the dead holder's object with ``mine`` by a write conditional on the version read with the holder's
        bytes: on S3 and Azure a PUT with ``If-Match`` on the ETag read before the holder was judged, on GCS an
        upload with ``ifGenerationMatch`` on the generation of the very answer that held its bytes (``gcs_read``).
        So of two runs taking over at once exactly one succeeds (the store refuses the other's write, 412), and a
        live holder that took the object meanwhile is never overwritten. Elsewhere a delete and a create-once,
        where two runs taking over in the same instant could both delete."""
        with translated(self._where):
            if etag is None:
                self._fs.rm_file(self._path)
                self._create(mine)
                return
            try:
                if is_gcs(self._fs):
                    gcs_replace(self._fs, self._path, mine, etag)
                else:
                    self._fs.pipe_file(self._path, mine, **if_match(self._fs, etag))
            except Exception as exc:  # s3fs raises OSError subclasses; adlfs lets Azure's own errors through
                code, status = store_answer(exc)
                refused = isinstance(exc, (FileNotFoundError, FileExistsError))  # gcsfs: 412 is FileExistsError
                if refused or code in ("PreconditionFailed", "ConditionNotMet") or status == 412:
                    if self._landed(mine):
                        return
                    raise LockHeldError(self._where, self._holder()) from None  # another run took it over first
                raise
            if self._content() != mine:  # a store that ignores If-Match: the last writer's object is the lock
                raise LockHeldError(self._where, self._holder())

    def _create(self, mine: bytes) -> None:
        """Create the object holding ``mine``, or raise ``LockHeldError``."""
        with translated(self._where):
            # a store that ignores If-None-Match would let the create below replace a holder's object:
            # look first (one GET), so that there only writers starting in the same instant can race
            if self._content() is not None:
                raise LockHeldError(self._where, self._holder())
            try:
                if self._one_request_create:
                    self._fs.pipe_file(self._path, mine, mode="create")
                else:
                    try:
                        handle = self._fs.open(self._path, "xb")  # memory:// refuses here
                    except (ValueError, NotImplementedError):
                        raise NoCreateOnce from None  # the driver has no create-once mode: nothing can be held
                    with handle:  # s3fs: the close sends the conditional write
                        handle.write(mine)
            except FileExistsError:  # the store answered 412 Precondition Failed (s3fs: If-None-Match: *, gcsfs: ifGenerationMatch=0)
                if self._landed(mine):
                    return
                raise LockHeldError(self._where, self._holder()) from None
            if self._content() != mine:  # (such a store) another writer's create landed over this one: theirs now
                raise LockHeldError(self._where, self._holder())

    def _landed(self, mine: bytes) -> bool:
        """Whether the object holds ``mine`` after the store refused a conditional write of it: the driver retried
        a write whose answer was lost (a connection cut after the store had stored it), and the retry found the
        first attempt's object. Without this the run would refuse itself, naming its own pid."""
        return self._content() == mine

    def _content(self) -> bytes | None:
        try:
            with translated(self._where):
                data: bytes = self._fs.cat_file(self._path)
                return data
        except FileNotFoundError:
            return None

    def _holder(self) -> Holder | None:
        data = self._content()
        return Holder.parse(data) if data is not None else None

    def release(self) -> None:
        if self._held:
            self._held = False
            try:
                # a stop while the DELETE is on its way would end the process before it lands (fsspec's I/O thread
                # dies with it): held until the answer, as while the object was created
                with held_stops(), translated(self._where):
                    self._fs.rm_file(self._path)
            except FileNotFoundError:
                pass  # deleted by hand meanwhile (the refusal tells a user how): nothing is left to let go of


def is_gcs(fs: Any) -> bool:
    """Whether ``fs`` is gcsfs's Google Cloud Storage file system (``gs://``, ``gcs://``)."""
    return "gs" in getattr(fs, "protocol", ())


def gcs_read(fs: Any, path: str) -> tuple[bytes, str | None]:
    """The object's bytes and their generation, from ONE GET through gcsfs's own request machinery (``call``, with
    its credentials and retries): GCS sends the generation of the bytes it serves in ``X-Goog-Generation`` (what
    google-cloud-storage reads after a download; fake-gcs-server sends it too). Two requests, the metadata and then
    the bytes, could pair one version's generation with another's bytes; fake-gcs-server also ignores
    ``ifGenerationMatch`` on a download, so a read made conditional that way could not be tested. None: no header."""
    headers, data = fs.call("GET", fs.url(path))
    generation = headers.get("X-Goog-Generation")
    return bytes(data), str(generation) if generation else None


def gcs_replace(fs: Any, path: str, data: bytes, generation: str) -> None:
    """Write ``data`` over ``path`` only if the object is still at ``generation``: one multipart upload (the request
    gcsfs's ``simple_upload`` sends for ``pipe_file``, whose only precondition is ``ifGenerationMatch=0``, for
    ``mode="create"``) with ``ifGenerationMatch=generation``. GCS answers 412 when the object is at another
    generation or gone, which gcsfs raises as ``FileExistsError``."""
    bucket, key, _ = fs.split_path(path)
    boundary = f"goldfish-{secrets.token_hex(12)}"  # random: never a line of the JSON it frames
    body = b"\r\n".join(
        [f"--{boundary}".encode(), b"Content-Type: application/json; charset=UTF-8", b"", json.dumps({"name": key}).encode()]
        + [f"--{boundary}".encode(), b"Content-Type: application/octet-stream", b"", data, f"--{boundary}--".encode()]
    )
    fs.call(
        "POST",
        f"{fs._location}/upload/storage/v1/b/{quote(bucket, safe='')}/o",  # gcsfs's own base (STORAGE_EMULATOR_HOST too)
        uploadType="multipart",
        ifGenerationMatch=generation,
        headers={"Content-Type": f'multipart/related; boundary="{boundary}"'},
        data=body,
        json_out=True,
    )
    fs.invalidate_cache(path)


def is_azure(fs: Any) -> bool:
    """Whether ``fs`` is adlfs's Azure Blob file system (``az://``, ``abfs://``)."""
    return "abfs" in getattr(fs, "protocol", ())


def etag_of(info: dict[str, Any]) -> str | None:
    """An object's ETag in a driver's ``info`` (s3fs: ``ETag``; adlfs: ``etag``, quoted as Azure sends it)."""
    value = info.get("ETag") or info.get("etag")
    return str(value) if value else None


def if_match(fs: Any, etag: str) -> dict[str, Any]:
    """The keyword arguments of ``fs.pipe_file`` that make its PUT conditional on the object's ETag being ``etag``:
    s3fs passes ``IfMatch`` to PutObject; adlfs passes ``etag`` and ``match_condition`` to azure-storage-blob's
    ``upload_blob``, which sends ``If-Match`` (Azure answers 412 ConditionNotMet, also for a blob deleted since)."""
    if is_azure(fs):
        from azure.core import MatchConditions

        return {"etag": etag, "match_condition": MatchConditions.IfNotModified}
    return {"IfMatch": etag}


def machine_id() -> str | None:
    """This machine and pid namespace: the boot id and ``/proc/self/ns/pid`` (Linux), or None elsewhere.

    A host name alone is not enough to judge a pid: containers with the host's network share its name but
    not its pids, and a machine keeps its name across reboots. Within one boot and pid namespace, a pid that
    is gone (or was reused, its start time differs) is a dead process."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return f"{boot} {namespace}"


_RAY_OWNER = re.compile(r"ray .* of job ([0-9a-f]+) started (\d+)")


def ray_job_ended(owner: object) -> bool:
    """Whether ``owner`` (a Ray task's or driver's, ``ray_backend.lock_owner``) names a job that has ended on the
    Ray cluster this process is connected to: Ray ends every task of a job whose driver died, on every node.

    The owner names the job by its id and its start time in the cluster's job table; ids restart at 1 in a
    new cluster, so both must match: a job of a cluster started since (its head lost) is never taken for it.

    Why Ray's private ``ray._private.state.jobs()`` (the job table, read from the cluster's GCS through this
    process's own connection): no public API answers without a dashboard. ``JobSubmissionClient.get_job_info``
    (stable) and ``ray.util.state.list_jobs`` (a developer API) do list a driver started by ``ray.init(address=...)``
    (in Ray's source: type DRIVER, SUCCEEDED once it died, the same start time), but only through the dashboard's
    HTTP server, which a minimal ``pip install ray`` (``goldfish-prep[ray]``) cannot start and
    ``ray start --include-dashboard=false`` (tests/test_ray_cluster.py) does not: on Ray 2.60 both then fail,
    after asking ``127.0.0.1:8265`` (another cluster's dashboard, if one listens there).
    ``ray.get_runtime_context()`` knows only this process's own job. If Ray moves the call, nothing is judged
    here (False): the lock stays refused, naming its holder."""
    ray = sys.modules.get("ray")
    match = _RAY_OWNER.fullmatch(owner) if isinstance(owner, str) else None
    if match is None or ray is None or not ray.is_initialized():
        return False
    try:
        from ray._private import state

        listing: Any = state.jobs  # untyped in Ray
        jobs = listing()
    except Exception:  # an API Ray may move: without it, nothing is judged
        return False
    job, started = match.groups()
    return any(entry.get("JobID") == job and str(entry.get("StartTime")) == started and entry.get("IsDead") is True for entry in jobs)
