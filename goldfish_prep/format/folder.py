"""The output folder as one object: every read and write of a goldfish-prep output goes through ``OutputFolder``.

It owns what the rest of the code must agree on: the file names (from
``names``), the commit protocol, the folder's life cycle (refuse, overwrite,
resume) and task ownership (``ownership``), the run description, the shard
records and task files, the manifest, reading a shard with its checksum
checked on the way, and the writers' lock (``writing``; ``lock.py``).

The commit protocol, which every implementation keeps:

1. A shard, record or metadata file becomes visible under its final name only
   when complete. On a local disk that is write aside, ``fsync``, ``os.replace``,
   ``fsync`` of the folder (``commit``); on an object store, whose objects
   appear whole when their upload completes, a write to the final name.
2. A shard counts as done only once its completion record
   (``.goldfish/shard-NNNNN.json``, holding its checksums) exists, written after
   the shard: the written-last marker. ``--resume`` keeps exactly the shards
   whose record exists and whose bytes hash to it.
3. The folder counts as complete only once the manifest and ``state.json``
   exist, ``state.json`` written last.

``LocalFolder`` implements the storage primitives with ``os`` calls
(memory-mapped reads, ``os.replace``, ``fsync``), which keeps local I/O as fast
as it was. Everything else is written once, in ``OutputFolder``, on top of
those primitives, so a folder at a URL (``s3://``, via fsspec) is a second
subclass with its own primitives, not a second copy of the rules:
``open_folder`` is where it will be chosen.
"""

from __future__ import annotations

import abc
import dataclasses
import io
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from goldfish_prep.errors import InputError, OutputError
from goldfish_prep.format import life_cycle
from goldfish_prep.format.commit import CHECKSUMS, buffer_checksums, json_bytes, write_failure
from goldfish_prep.format.life_cycle import REPLACED
from goldfish_prep.format.lock import (
    WRITER_LOCK,
    Holder,
    LockHeldError,
    describe_takeover,
    holder_line,
    is_lock_name,
    task_lock_name,
)
from goldfish_prep.format.manifest import Manifest
from goldfish_prep.format.names import (
    DATASET_INFO,
    MANIFEST,
    PROGRESS_DIR,
    RUN_FILE,
    STATE,
    TASK_FILE,
    is_shard_record_name,
    shard_record_name,
)
from goldfish_prep.format.ownership import (
    Task,
    progress_path,
    run_digest,
)

_RECREATE = "Recreate the output with `goldfish-prep mask`"
_UNREADABLE_SHARD_FIX = "Run `goldfish-prep verify` on the folder, or recreate it"


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


class HeldLock(Protocol):
    """One lock file held or about to be (``lock.FileLock`` on a local disk)."""

    taken_over: Holder | None

    def acquire(self) -> None: ...
    def release(self) -> None: ...


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


class OutputFolder(abc.ABC):
    """One output folder of ``goldfish-prep mask``; names inside it are relative (``".goldfish/run.json"``)."""

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
        """Shard ``name`` opened to be read piece by piece (``reader.ShardSet`` decodes and hashes it as it arrives)."""
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

    # ---- the writers' lock: one writer per folder (lock.py has the design)

    @contextmanager
    def writing(self, task: Task | None = None, quiet: bool = False) -> Iterator[None]:
        """Hold the folder for writing while the block runs; an ``OutputError`` at once if another writer holds it.

        A plain run and ``finalize`` (``task`` None or alone) hold ``writer.lock``
        exclusively; task I of N holds it shared plus its own task lock, so tasks
        do not block each other but block a plain run and ``finalize``. Taking the
        lock also proves the progress folder writable before anything is removed. ``quiet`` (``-q``): no note
        when a lock left by a dead run is taken over, as ``mask -q`` prints no other note.
        """
        task = task or Task()
        with self.holding(WRITER_LOCK, shared=not task.alone, quiet=quiet):
            if task.alone:
                yield
            else:
                with self.holding(task_lock_name(task.index, task.count), quiet=quiet):
                    yield

    @contextmanager
    def holding(self, name: str, shared: bool = False, quiet: bool = False) -> Iterator[None]:
        """Hold lock file ``name`` of the progress folder (a Ray driver holds ``writer.lock`` shared and its own)."""
        if self.exists() and not self.is_folder():
            raise OutputError(f"output {self.where()} exists and is not a folder; choose a folder path with -o")
        where = self.where(progress_path(name))
        try:
            self.make_progress_folder()
            lock = self.lock(progress_path(name), shared)
            lock.acquire()
        except LockHeldError as exc:
            holder, held = exc.holder, exc.lock  # the lock found held (a URL folder also checks others)
            if holder is None:  # held shared: by --num-tasks tasks, which name themselves in their own lock files
                holder, held = self._task_holder() or (None, where)
            raise OutputError(self.held_line(held, holder)) from None
        except OSError as exc:
            raise self.unwritable(exc) from exc
        if lock.taken_over is not None and not quiet:
            print(describe_takeover(where, lock.taken_over), file=sys.stderr)
        try:
            yield
        finally:
            lock.release()

    def held_line(self, lock: str, holder: Holder | None) -> str:
        """The one-line refusal of a second writer (a URL folder words the removal of a lock object)."""
        return holder_line(self.where(), lock, holder)

    def writer(self) -> tuple[str, Holder] | None:
        """The lock file and holder of a process writing the folder now, or None: readers refuse such a folder."""
        for name in self.entries(PROGRESS_DIR):
            if is_lock_name(name):
                holder = self.lock_holder(progress_path(name))
                if holder is not None:
                    return self.where(progress_path(name)), holder
        return None

    def _task_holder(self) -> tuple[Holder, str] | None:
        found = self.writer()
        return (found[1], found[0]) if found else None

    def unwritable(self, exc: OSError) -> OutputError:
        """The one line for a folder this run may not change (read-only, gone, full), before anything was changed."""
        cause = exc.strerror or str(exc)
        return OutputError(
            f"cannot write to output folder {self.where()} ({cause}); nothing in it was changed. "
            "Make it writable, or choose a writable location with -o"
        )

    def check_writable(self) -> None:
        """Start and abandon a file in the folder and in its progress folder: ``--overwrite`` and ``--resume``
        call it before removing anything, so a read-only output is refused whole."""
        try:
            for name in (STATE, progress_path(RUN_FILE)):
                self.pending(name).abort()
        except OSError as exc:
            raise self.unwritable(exc) from exc

    # ---- JSON files

    def read_json(self, name: str) -> Any:
        return json.loads(self.read_bytes(name).decode("utf-8"))

    def write_json(self, name: str, data: Any) -> None:
        """Commit ``data`` as stable JSON (sorted keys: byte-identical reruns); an ``OutputError`` naming the file."""
        try:
            self.write_bytes(name, json_bytes(data))
        except OSError as exc:
            raise write_failure(Path(self.where(name)), exc) from exc

    # ---- run description, shard records, task files

    def read_run(self) -> dict[str, Any]:
        run: dict[str, Any] = self.read_json(progress_path(RUN_FILE))
        return run

    def write_run(self, run: dict[str, Any]) -> None:
        """Replace the run description (``mask`` records the inputs' hashes once it has read them)."""
        self.write_json(progress_path(RUN_FILE), run)

    def has_run(self) -> bool:
        return self.has_file(progress_path(RUN_FILE))

    #: the run every shard record this object writes names as the one that made it (``ownership.shard_run``):
    #: set by ``prepare``, so that a task keeps, and ``finalize`` accepts, only shards of one run
    made_by: dict[str, Any] | None = None
    #: how the run that writes the records saw its inputs at its start (``ownership.inputs_seen``), set by ``prepare``
    seen_inputs: str | None = None

    def write_shard_record(self, record: dict[str, Any]) -> None:
        """Mark a shard complete (step 2 of the protocol: after its file was committed), naming the run that made it."""
        if self.made_by is not None:
            record = {**record, "run": self.made_by}
        if self.seen_inputs is not None:
            record = {**record, "inputs_seen": self.seen_inputs}
        self.write_json(progress_path(shard_record_name(int(record["index"]))), record)

    def read_shard_record(self, index: int) -> dict[str, Any] | None:
        """The completion record of shard ``index``, or None when the shard is not complete."""
        name = progress_path(shard_record_name(index))
        if not self.has_file(name):
            return None
        return self.parse_shard_record(name, self.read_bytes(name))

    def parse_shard_record(self, name: str, data: bytes) -> dict[str, Any]:
        """The record ``name`` holds; a damaged one (cut, edited) is one line naming it, and the way out: ``--resume``
        treats an unreadable record as an unfinished shard and redoes it (``life_cycle.completed_shards``)."""
        try:
            record = json.loads(data.decode("utf-8"))
            if not isinstance(record, dict) or "filename" not in record or "sha256" not in record:
                raise ValueError("not a shard completion record")
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise OutputError(
                f"{self.where(name)} is damaged ({str(exc)[:120]}); rerun the task that wrote it with --resume "
                "(a plain run: the same mask command with --resume), which redoes that shard, then finish again"
            ) from None
        return record

    def read_shard_records(self, count: int) -> list[dict[str, Any] | None]:
        """The completion records of shards ``0 .. count-1`` (None where a shard is not complete).

        One call, so that an implementation can fetch them together: on an object store a record read one
        by one costs a HEAD and a GET each, one after another (``UrlFolder`` lists once and GETs concurrently)."""
        return [self.read_shard_record(index) for index in range(count)]

    def shard_record_names(self) -> list[str]:
        return [name for name in self.entries(PROGRESS_DIR) if is_shard_record_name(name)]

    def write_task_summary(self, task: Task, summary: dict[str, Any]) -> None:
        """The end record of one ``--num-tasks`` task: written last by the task, so it means the task finished."""
        self.write_json(progress_path(task.filename), summary)

    def task_summaries(self) -> dict[tuple[int, int], tuple[str, Any]]:
        """``(num_tasks, task_index) -> (where, summary)`` of every task file; an ``OutputError`` for an unreadable one."""
        found: dict[tuple[int, int], tuple[str, Any]] = {}
        for name in self.entries(PROGRESS_DIR):
            match = TASK_FILE.fullmatch(name)
            if match is None:
                continue
            where = self.where(progress_path(name))
            try:
                summary = self.read_json(progress_path(name))
            except (OSError, ValueError) as exc:
                raise OutputError(f"cannot read {where} ({exc}); rerun that task with --resume, then finalize again") from exc
            found[(int(match.group(2)), int(match.group(1)))] = (where, summary)
        return found

    # ---- the finished folder

    def write_finished(self, dataset_info: dict[str, Any], manifest: dict[str, Any], state: dict[str, Any]) -> None:
        """The metadata, the manifest, then ``state.json`` (step 3: last, so whatever opens the folder finds it whole)."""
        self.write_json(DATASET_INFO, dataset_info)
        self.write_json(MANIFEST, manifest)
        self.write_json(STATE, state)
        self.remove(progress_path(REPLACED))  # the output an --overwrite replaced: this one is whole now
        self._aside = False

    def is_finished(self) -> bool:
        return self.has_file(MANIFEST) and self.has_file(STATE)

    def read_manifest(self) -> Manifest:
        """The typed manifest of a complete output folder; a clear error for anything else."""
        if not self.is_folder():
            raise InputError(self.where(), "no such folder", "Pass the output folder of `goldfish-prep mask`", "missing")
        writer = self.writer()
        if writer is not None:
            raise InputError(
                self.where(),
                f"a run is writing this folder ({writer[1].describe()}), so it is not complete",
                f"Wait for that run to end (if it is dead, remove {writer[0]})",
                "being-written",
            )
        if not self.is_finished():
            raise InputError(
                self.where(),
                f"no {MANIFEST} and {STATE}: not a goldfish-prep output, or an interrupted run",
                "Rerun `goldfish-prep mask ... --resume` to finish it",
                "incomplete-output",
            )
        try:
            data = self.read_json(MANIFEST)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(self.where(MANIFEST), f"unreadable manifest ({exc})", _RECREATE, "bad-manifest") from exc
        return Manifest.from_dict(data, self.where(), self.where(MANIFEST))

    def manifest_sha256(self) -> str:
        """The checksum an export records of the manifest it was made from."""
        return self.sha256(MANIFEST)

    # ---- reading shards

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

    # ---- the life cycle: refuse, overwrite, resume (the rules are in ``life_cycle``)

    #: whether this object set a finished output aside (``put_back`` restores only what it moved)
    set_aside_output = False

    def refuse_unless_empty(self) -> None:
        """The rule of a plain run: a new or empty folder, unless the user said otherwise."""
        life_cycle.refuse_unless_empty(self)

    def admit(self, existing: str) -> None:
        """Refuse, changing nothing, a location ``existing`` may not write to (``life_cycle.admit``)."""
        life_cycle.admit(self, existing)

    def previous_run(self) -> dict[str, Any] | None:
        """The run this folder was started with, for ``--resume``; None when none was described yet (read once)."""
        return life_cycle.previous_run(self)

    def prepare(
        self, run: dict[str, Any], existing: str, task: Task | None = None, previous: Any = ..., seen: list[dict[str, Any]] | None = None
    ) -> dict[int, dict[str, Any]]:
        """Make the folder ready for ``run``; return the completed shards' records when resuming (``life_cycle.prepare``)."""
        return life_cycle.prepare(self, run, existing, task, previous, seen)

    def put_back(self) -> bool:
        """After a failed ``--overwrite``: restore the finished output it set aside; whether there was one."""
        return life_cycle.put_back(self)

    def remove_unfinished_shards(self, task: Task) -> None:
        """After a failed run: delete this task's shard temporaries (the final names are never touched)."""
        life_cycle.remove_unfinished_shards(self, task)


def as_folder(folder: OutputFolder | str | Path) -> OutputFolder:
    """``folder`` itself, or the local folder at that path (for callers that still pass paths)."""
    if isinstance(folder, OutputFolder):
        return folder
    from goldfish_prep.format.local_folder import LocalFolder  # it subclasses OutputFolder

    return LocalFolder(folder)


def open_folder(location: str | Path) -> OutputFolder:
    """The output folder at ``location``: a ``LocalFolder`` for a path (or ``file://``), a ``UrlFolder`` for a URL.

    >>> open_folder("shards/").where()
    'shards/'
    """
    text = str(location)
    if isinstance(location, str) and "://" in text and not text.startswith("file://"):
        from goldfish_prep.format.url_folder import UrlFolder  # imports fsspec only when a URL is given

        return UrlFolder(text)
    from goldfish_prep.format.local_folder import LocalFolder  # it subclasses OutputFolder

    return LocalFolder(text.removeprefix("file://") if isinstance(location, str) else location)


__all__ = ["ChecksumError", "OutputFolder", "PendingWrite", "ShardBytes", "Task", "as_folder", "open_folder", "run_digest"]
