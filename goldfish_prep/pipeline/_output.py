"""The output folder's life cycle: refuse, overwrite or resume, and nothing outside it.

``run.json`` (in ``.goldfish/``) records everything that decides the bytes of
the output. ``--resume`` accepts a folder only if it was started with the same
run, and keeps exactly the shards whose completion record and checksum match;
everything else is redone. One of several ``--num-tasks`` tasks sharing the
folder, perhaps running at the same time, only ever keeps, redoes or deletes
its own shards (index % num_tasks == task_index) and its own task file.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

from goldfish_prep.atomic import file_sha256, write_json
from goldfish_prep.errors import OutputError
from goldfish_prep.format.names import (
    DATASET_INFO,
    MANIFEST,
    PARTIAL_SUFFIX,
    PROGRESS_DIR,
    RUN_FILE,
    STATE,
    shard_record_path,
    task_filename,
)

_OURS = {MANIFEST, STATE, DATASET_INFO, PROGRESS_DIR}
_FINISHING = (MANIFEST, STATE, DATASET_INFO)
_INDEX = re.compile(r"(?:data|shard)-(\d+)\.")
_TEMPORARY = re.compile(r"(\.\d+)?" + re.escape(PARTIAL_SUFFIX) + "$")  # write_json adds the pid


def _is_ours(name: str) -> bool:
    name = _TEMPORARY.sub("", name)
    return name in _OURS or (name.startswith("data-") and name.endswith(".arrow"))


def prepare_output(folder: Path, run: dict[str, Any], existing: str, task: tuple[int, int] = (0, 1)) -> dict[int, dict[str, Any]]:
    """Make ``folder`` ready for ``run``; return the completed shards' records when resuming.

    ``existing`` is ``"refuse"``, ``"overwrite"`` or ``"resume"``; ``task`` is
    ``(task_index, num_tasks)``: a task touches only its own shards.
    """
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"output {folder} exists and is not a folder; choose a folder path with -o")
    entries = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    completed: dict[int, dict[str, Any]] = {}
    if entries:
        if existing == "refuse":
            raise OutputError(
                f"output folder {folder} already exists and is not empty; pass --overwrite to replace it, "
                "or --resume to finish an interrupted run"
            )
        foreign = [name for name in entries if not _is_ours(name)]
        if foreign:
            raise OutputError(
                f"output folder {folder} holds files goldfish-prep did not write ({', '.join(foreign[:3])}); "
                "refusing to touch them. Choose a new or empty folder"
            )
        if existing == "overwrite" and task[1] == 1:
            _remove_ours(folder, entries)
        else:
            completed = {} if existing == "overwrite" else _completed_shards(folder, run, task)
            _remove_stale(folder, completed, task)
    try:
        (folder / PROGRESS_DIR).mkdir(parents=True, exist_ok=True)
        write_json(folder / PROGRESS_DIR / RUN_FILE, run)
    except OSError as exc:
        raise OutputError(f"cannot write to output folder {folder} ({exc.strerror}); choose a writable location with -o") from exc
    return completed


def _remove_ours(folder: Path, entries: list[str]) -> None:
    for name in entries:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _owns(task: tuple[int, int], name: str) -> bool:
    """Whether a shard file or record (or its temporary) is this task's; other names belong to a single run."""
    match = _INDEX.match(name)
    return int(match.group(1)) % task[1] == task[0] if match else task[1] == 1


def _completed_shards(folder: Path, run: dict[str, Any], task: tuple[int, int]) -> dict[int, dict[str, Any]]:
    run_path = folder / PROGRESS_DIR / RUN_FILE
    if not run_path.exists() and not any((folder / PROGRESS_DIR).glob("shard-*.json")):
        # killed before the run was described (or, with tasks, another task just started):
        # no shard was completed, so there is nothing to keep and resuming is starting afresh
        return {}
    try:
        previous = json.loads(run_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OutputError(f"cannot resume {folder}: no readable {PROGRESS_DIR}/{RUN_FILE}; pass --overwrite to start again") from exc
    difference = _first_difference(_without_engine(previous), _without_engine(run))
    if difference:
        raise OutputError(
            f"cannot resume {folder}: it was started with different settings ({difference}); "
            "rerun with the original options, or pass --overwrite to start again"
        )
    completed: dict[int, dict[str, Any]] = {}
    for record_path in sorted((folder / PROGRESS_DIR).glob("shard-*.json")):
        if not _owns(task, record_path.name):
            continue
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        shard = folder / record["filename"]
        if shard.is_file() and file_sha256(shard) == record["sha256"]:
            completed[int(record["index"])] = record
    return completed


def _remove_stale(folder: Path, completed: dict[int, dict[str, Any]], task: tuple[int, int]) -> None:
    """Delete this task's partial files and unfinished shards, and the finishing files; keep completed shards.

    ``missing_ok``: tasks starting together may both delete the same finishing or stale task file.
    """
    keep = {record["filename"] for record in completed.values()}
    for path in folder.iterdir():
        if path.name.startswith("data-") and path.name not in keep and _owns(task, path.name):
            path.unlink(missing_ok=True)
        elif _TEMPORARY.sub("", path.name) in _FINISHING:
            path.unlink(missing_ok=True)
    own_task_file = task_filename(*task)
    for record_path in (folder / PROGRESS_DIR).glob("*"):
        name = record_path.name
        if name.startswith("shard-"):
            match = _INDEX.match(name)
            unfinished = match is None or int(match.group(1)) not in completed or name.endswith(PARTIAL_SUFFIX)
            if unfinished and _owns(task, name):
                record_path.unlink(missing_ok=True)
        elif name.startswith("task-"):  # a task file or its temporary
            # this task's own file, and those of an earlier split into another number of tasks
            if name.startswith(own_task_file) or not _TEMPORARY.sub("", name).endswith(f"-of-{task[1]:05d}.json"):
                record_path.unlink(missing_ok=True)
        elif name.endswith(PARTIAL_SUFFIX) and task[1] == 1:
            record_path.unlink(missing_ok=True)


def _first_difference(old: Any, new: Any, path: str = "") -> str:
    """A short description of the first setting that differs between two runs, or ''."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = _first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else key)
            if found:
                return found
        return ""
    return "" if old == new else f"{path}: {old!r} then, {new!r} now"


def run_digest(run: dict[str, Any]) -> str:
    """sha256 of a run description, independent of key order and layout.

    Each ``--num-tasks`` task records the digest of the run it made its shards
    under. ``run.json`` holds only the latest task's run, so this is how
    ``finalize`` notices tasks that were started with other options (each
    under ``--overwrite``, which skips the comparison ``--resume`` makes).
    """
    comparable = _without_engine(run)
    return hashlib.sha256(json.dumps(comparable, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _without_engine(run: Any) -> Any:
    """``run`` less ``tokenizer.engine``: engines give identical ids (docs/format.md), so a run resumed
    or a task run where another engine is installed (or chosen) makes the same shards."""
    if not isinstance(run, dict) or not isinstance(run.get("tokenizer"), dict):
        return run
    return {**run, "tokenizer": {k: v for k, v in run["tokenizer"].items() if k != "engine"}}


def write_shard_record(folder: Path, record: dict[str, Any]) -> None:
    """Mark a shard complete (after its file was renamed into place)."""
    write_json(shard_record_path(folder, int(record["index"])), record)
