"""Who may touch which file of an output folder, and what a resumed run keeps: the rules, as pure functions of names.

One rule serves the worker pool (one task of one), ``--num-tasks`` (a Slurm
array, shell loops) and Ray (N tasks of the same kind): shard ``i`` belongs to
task ``i % num_tasks``. A task keeps, redoes or deletes only its own shards,
their records and temporaries, and its own task file; the files that describe
the whole folder (the manifest, ``state.json``, ``dataset_info.json``) are
everyone's to delete, since they are rewritten by whoever finishes. Tasks may
run at the same time, so every deletion tolerates a file already gone.

These functions decide on names alone (and on run descriptions: a resumed
run must be the run that made the shards it keeps); ``folder.OutputFolder.prepare``
applies them to a folder. ``tests/test_folder.py`` tests them directly.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any, Literal

from goldfish_prep.errors import OutputError
from goldfish_prep.format.commit import text_sha256
from goldfish_prep.format.names import (
    DATASET_INFO,
    MANIFEST,
    PROGRESS_DIR,
    RUN_FILE,
    STATE,
    final_name,
    is_temporary,
    shard_index,
    task_filename,
)

#: the entries of an output folder goldfish-prep writes (besides the shards)
_OURS = frozenset({MANIFEST, STATE, DATASET_INFO, PROGRESS_DIR})
#: the files written when a run finishes: any new run makes them stale
FINISHING = (MANIFEST, STATE, DATASET_INFO)


@dataclasses.dataclass(frozen=True)
class Task:
    """Task ``index`` of ``count`` (``--task-index``, ``--num-tasks``); a plain run is task 0 of 1.

    >>> Task(1, 4).owns_shard(5), Task(1, 4).owns("data-00006.arrow"), Task().owns("state.json")
    (True, False, True)
    """

    index: int = 0
    count: int = 1

    @property
    def alone(self) -> bool:
        """Whether this task is the whole run (it may then touch every file)."""
        return self.count == 1

    @property
    def filename(self) -> str:
        """The file this task leaves in the progress folder when it has finished."""
        return task_filename(self.index, self.count)

    def owns_shard(self, shard: int) -> bool:
        return shard % self.count == self.index

    def owns(self, name: str) -> bool:
        """Whether a shard file or record (or its temporary) is this task's; other names belong to a single run."""
        index = shard_index(name)
        return self.owns_shard(index) if index is not None else self.alone


def is_output_entry(name: str) -> bool:
    """Whether a folder entry is one goldfish-prep writes (so ``--overwrite`` and ``--resume`` may touch it)."""
    name = final_name(name)
    return name in _OURS or (name.startswith("data-") and name.endswith(".arrow"))


def stale_entries(entries: Iterable[str], kept_shards: Iterable[str], task: Task, keep_finished: bool = False) -> list[str]:
    """Top-level entries a resumed ``task`` deletes: its shards not kept (and their temporaries), and the finishing
    files (their temporaries only, with ``keep_finished``: a resume keeps a finished output's until it commits)."""
    keep = set(kept_shards)
    stale = []
    for name in entries:
        if name.startswith("data-") and name not in keep and task.owns(name):
            stale.append(name)
        elif final_name(name) in FINISHING and not (keep_finished and name in FINISHING):
            stale.append(name)
    return stale


def stale_progress(entries: Iterable[str], completed: Iterable[int], task: Task) -> list[str]:
    """Progress-folder entries a resumed ``task`` deletes.

    Its records of shards not completed (and record temporaries); its own task
    file and those of an earlier split into another number of tasks; and, run
    alone, any other temporary.
    """
    done = set(completed)
    stale = []
    for name in entries:
        if name.endswith(".lock"):  # lock files are held, not stale (lock.py)
            continue
        if name.startswith("shard-"):
            index = shard_index(name)
            unfinished = index is None or index not in done or is_temporary(name)
            if unfinished and task.owns(name):
                stale.append(name)
        elif name.startswith("task-"):  # a task file or its temporary
            if name.startswith(task.filename) or not final_name(name).endswith(f"-of-{task.count:05d}.json"):
                stale.append(name)
        elif is_temporary(name) and task.alone:
            stale.append(name)
    return stale


def first_difference(old: Any, new: Any, path: str = "") -> str:
    """A short description of the first setting that differs between two runs, or ''.

    It goes into one ``Error:`` line, so lists are compared item by item (their lengths first) and a
    long value is cut: resuming another run's folder once printed both runs' whole input lists.

    >>> first_difference({"mask": {"k": 4}}, {"mask": {"k": 8}})
    'mask.k: 4 then, 8 now'
    >>> first_difference({"inputs": [{"path": "a.txt", "size": 1}]}, {"inputs": [{"path": "b.txt", "size": 1}, {"path": "c.txt"}]})
    "inputs: 1 item(s) then, 2 now; the first: inputs[0].path: 'a.txt' then, 'b.txt' now"
    >>> first_difference({"inputs": [{"path": "a", "mtime_ns": 1, "size": 5}]}, {"inputs": [{"path": "a", "mtime_ns": 2, "size": 9}]})
    'inputs[0].size: 5 then, 9 now'
    """
    if isinstance(old, dict) and isinstance(new, dict):
        # an input's path first: it says which input; then its size, which says what changed more plainly
        # than a modification time or a hash
        for key in sorted(set(old) | set(new), key=lambda key: (_FIRST_KEYS.get(key, len(_FIRST_KEYS)), key)):
            found = first_difference(old.get(key, _ABSENT), new.get(key, _ABSENT), f"{path}.{key}" if path else key)
            if found:
                return found
        return ""
    if isinstance(old, list) and isinstance(new, list):
        first = next((first_difference(a, b, f"{path}[{i}]") for i, (a, b) in enumerate(zip(old, new)) if a != b), "")
        if len(old) == len(new):
            return first
        return f"{path}: {len(old)} item(s) then, {len(new)} now" + (f"; the first: {first}" if first else "")
    return "" if old == new else f"{path}: {_shown(old)} then, {_shown(new)} now"


#: keys a difference is looked for first, in this order (the rest alphabetically)
_FIRST_KEYS = {"path": 0, "size": 1}


class _Absent:
    """A key one run description has and the other lacks (its value there is not None: there is none)."""


_ABSENT = _Absent()


def _shown(value: Any, limit: int = 80) -> str:
    """``value`` for the message: 'absent', or its repr, cut to ``limit`` characters (a value long enough
    to drown the message)."""
    text = "absent" if value is _ABSENT else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def without_engine(run: Any) -> Any:
    """``run`` less ``tokenizer.engine``: engines give identical ids (docs/format.md), so a run resumed
    or a task run where another engine is installed (or chosen) makes the same shards."""
    if not isinstance(run, dict) or not isinstance(run.get("tokenizer"), dict):
        return run
    return {**run, "tokenizer": {k: v for k, v in run["tokenizer"].items() if k != "engine"}}


#: what an input entry of a run description holds besides its identity: the size and modification time are
#: recorded when the run starts, the size read and xxh3-128 once it has been read, or ``unreadable`` instead
#: (``pipeline._inputs``), so none of them ties a shard to a run; ``inputs_seen`` covers size and time (and more)
_INPUT_STATE = frozenset({"mtime_ns", "xxh3_128", "size", "unreadable"})


def shard_run(run: dict[str, Any]) -> dict[str, Any]:
    """The run a shard record names as the one that made it: ``run`` less the engine, with its inputs
    (path and kind of each) as one digest.

    Tasks share one folder and each keeps its own completed shards, so a task
    that did not get ``--overwrite`` after another task started a new run would
    keep shards of the run before: the record says which run made it, and a task
    keeps (and ``finalize`` accepts) only shards of its own run. It must be the
    same for every task and every moment of one run, so it leaves out what a run
    description learns as it goes (the inputs' sizes and times, then their sizes read and hashes, or that one
    could not be read: an input skipped as unreadable has no size at the end) and what
    may differ between machines (the engine); the inputs are a digest, since a
    record is written per shard and a corpus may be thousands of files.

    >>> made = shard_run({"mask": {"k": 4}, "inputs": [{"path": "a", "size": 3, "mtime_ns": 7}]})
    >>> made == shard_run({"mask": {"k": 4}, "inputs": [{"path": "a", "unreadable": "Permission denied"}]}), sorted(made)
    (True, ['inputs_sha256', 'mask'])
    """
    inputs = [
        {key: value for key, value in entry.items() if key not in _INPUT_STATE} if isinstance(entry, dict) else entry
        for entry in run.get("inputs") or []
    ]
    settings = {key: value for key, value in without_engine(run).items() if key != "inputs"}
    return {**settings, "inputs_sha256": text_sha256(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode())}


def inputs_seen(inputs: list[dict[str, Any]]) -> str:
    """A digest of the inputs as a run saw them when it started: path, kind, size and modification time of
    each, and for local files each file's inode number and inode change time (``InputSnapshot.seen``).

    ``shard_run`` leaves sizes and times out, so an input rewritten (or grown)
    between two runs leaves the run the same: a record also holds this, and a
    resumed task keeps a shard only if it sees its inputs as the run that made
    the shard did (else it redoes it). The hash could not serve: a shard is
    recorded before its run has read every input to the end. Size and
    modification time alone could: a rewrite to the same size whose time is
    put back (``os.utime``) left them as they were, but not its inode change
    time, which no call sets back. A difference only ever redoes shards, so
    what moves these without changing the bytes (a chmod, a copy restored from
    a backup) costs time, never a refusal. They are the same seen from every
    machine that mounts one shared file system (NFS, Lustre, GPFS serve the
    inode number and times), which the tasks of a split run read; the device
    number is not, and is left out.

    >>> seen = {"path": "a", "size": 3, "mtime_ns": 7, "inodes": [[12, 9]]}
    >>> inputs_seen([seen]) == inputs_seen([{**seen, "mtime_ns": 8}]), inputs_seen([seen]) == inputs_seen([{**seen, "inodes": [[12, 10]]}])
    (False, False)
    """
    return text_sha256(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode())


def run_difference(made: Any, run: dict[str, Any]) -> str:
    """The first difference between the run a shard record names (``made``) and ``run``'s, for an ``Error:``
    line; '' when they are the same run (or the record predates ``shard_run`` and names none).

    >>> run_difference(shard_run({"mask": {"k": 3}, "inputs": []}), {"mask": {"k": 4}, "inputs": []})
    'mask.k: 3 then, 4 now'
    >>> run_difference(shard_run({"inputs": [{"path": "a", "size": 3}]}), {"inputs": [{"path": "b", "size": 3}]})
    'inputs: the paths or kinds of the inputs differ'
    """
    if made is None:
        return ""
    difference = first_difference(made, shard_run(run))
    if difference.startswith("inputs_sha256"):
        return "inputs: the paths or kinds of the inputs differ"
    return difference


#: how a refusal of another run's shard reads, by who meets it: a resumed task (it would keep the shard, so the
#: tasks were not all given --overwrite) or ``finalize`` (the folder would list two runs' shards under one manifest)
_ANOTHER_RUN = {
    "resume": (
        "cannot resume {where}: shard {index} ({filename}) was made by another run ({difference}), which this run "
        "would keep: a task of a new run got --overwrite and this one did not. Rerun every task of the new run with "
        "--overwrite (a plain run: --overwrite), or rerun with the inputs and options of the run that made the shard"
    ),
    "finalize": (
        f"{{where}}: shard {{index}} ({{filename}}) was made by another run than the one in {PROGRESS_DIR}/{RUN_FILE} "
        "({difference}); rerun every task with --overwrite (a plain run: mask --overwrite), then finalize again"
    ),
}


def refuse_another_run(where: str, record: dict[str, Any], run: dict[str, Any], when: Literal["resume", "finalize"]) -> None:
    """Raise ``OutputError`` if a shard record names another run than ``run`` (``run_difference``), worded for
    ``when`` it is met; a record that names no run predates the check and passes.

    Tasks keep their own completed shards, so a task that did not get
    ``--overwrite`` after another started a new run would keep the old run's
    shards, and ``finalize`` would list them beside the new run's (as would a
    shard copied in by hand). Both places ask the same question of the same
    record; only the way on differs.

    >>> record = {"index": 0, "filename": "data-00000.arrow", "run": shard_run({"mask": {"k": 3}})}
    >>> refuse_another_run("out", record, {"mask": {"k": 4}}, "finalize")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    goldfish_prep.errors.OutputError: out: shard 0 (data-00000.arrow) was made by another run than ... (mask.k: 3 then, 4 now); ...
    """
    difference = run_difference(record.get("run"), run)
    if difference:
        raise OutputError(
            _ANOTHER_RUN[when].format(where=where, index=record.get("index"), filename=record.get("filename"), difference=difference)
        )


def run_digest(run: dict[str, Any]) -> str:
    """sha256 of a run description, independent of key order and layout.

    Each ``--num-tasks`` task records the digest of the run it made its shards
    under. ``run.json`` holds only the latest task's run, so this is how
    ``finalize`` notices tasks that were started with other options (each
    under ``--overwrite``, which skips the comparison ``--resume`` makes).
    """
    return text_sha256(json.dumps(without_engine(run), sort_keys=True, separators=(",", ":")).encode())


def progress_path(name: str) -> str:
    """A progress-folder entry as a path relative to the output folder."""
    return f"{PROGRESS_DIR}/{name}"


__all__ = [
    "FINISHING",
    "Task",
    "first_difference",
    "inputs_seen",
    "is_output_entry",
    "progress_path",
    "refuse_another_run",
    "run_difference",
    "run_digest",
    "shard_run",
    "stale_entries",
    "stale_progress",
    "without_engine",
]
