"""The output folder as one object: every read and write of a goldfish-prep output goes through ``OutputFolder``.

It owns what the rest of the code must agree on: the file names (from
``names``), the commit protocol, the folder's life cycle (refuse, overwrite,
resume) and task ownership (``ownership``), the manifest and the writers' lock
(``writing``; ``lock.py``). It is built in layers, each a file: the storage
primitives an implementation provides (``storage``), the progress files (the
run description, shard records and task files: ``progress``) and reading a
shard with its checksum checked on the way (``shard_bytes``); this file joins
them and adds the rules that span the whole folder.

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

``LocalFolder`` and ``UrlFolder`` implement the storage primitives; everything
else is written once, here and in the layers below, so a folder at a URL is a
second subclass, not a second copy of the rules: ``open_folder`` chooses it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from goldfish_prep.errors import InputError, OutputError
from goldfish_prep.format import life_cycle
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
from goldfish_prep.format.names import DATASET_INFO, MANIFEST, PROGRESS_DIR, RUN_FILE, STATE
from goldfish_prep.format.ownership import (
    Task,
    progress_path,
    run_digest,
)
from goldfish_prep.format.progress import ProgressFiles
from goldfish_prep.format.shard_bytes import ShardReads

_RECREATE = "Recreate the output with `goldfish-prep mask`"


class OutputFolder(ProgressFiles, ShardReads):
    """One output folder of ``goldfish-prep mask``; names inside it are relative (``".goldfish/run.json"``).

    The storage primitives are ``storage.FolderStorage``'s, the progress files ``progress.ProgressFiles``',
    checked shard reads ``shard_bytes.ShardReads``'."""

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
        try:  # from the instruction after ``acquire``: a stop during the print below must let go of the lock too
            if lock.taken_over is not None and not quiet:
                print(describe_takeover(where, lock.taken_over), file=sys.stderr)
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


__all__ = ["OutputFolder", "Task", "as_folder", "open_folder", "run_digest"]
