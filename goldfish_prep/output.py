"""The output folder's life cycle: refuse, overwrite or resume, and nothing outside it.

``run.json`` (in ``.goldfish/``) records everything that decides the bytes of
the output. ``--resume`` accepts a folder only if it was started with the same
run, and keeps exactly the shards whose completion record and checksum match;
everything else is redone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from goldfish_prep.atomic import file_sha256, write_json
from goldfish_prep.errors import OutputError
from goldfish_prep.naming import MANIFEST, PARTIAL_SUFFIX, PROGRESS_DIR, RUN_FILE, shard_record_path

_OURS = {MANIFEST, "state.json", "dataset_info.json", PROGRESS_DIR}


def _is_ours(name: str) -> bool:
    return name in _OURS or (name.startswith("data-") and (name.endswith(".arrow") or name.endswith(PARTIAL_SUFFIX)))


def prepare_output(folder: Path, run: dict[str, Any], existing: str) -> dict[int, dict[str, Any]]:
    """Make ``folder`` ready for ``run``; return the completed shards' records when resuming.

    ``existing`` is ``"refuse"``, ``"overwrite"`` or ``"resume"``.
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
        if existing == "overwrite":
            _remove_ours(folder, entries)
        else:
            completed = _completed_shards(folder, run)
            _remove_stale(folder, completed)
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


def _completed_shards(folder: Path, run: dict[str, Any]) -> dict[int, dict[str, Any]]:
    run_path = folder / PROGRESS_DIR / RUN_FILE
    try:
        previous = json.loads(run_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OutputError(f"cannot resume {folder}: no readable {PROGRESS_DIR}/{RUN_FILE}; pass --overwrite to start again") from exc
    difference = _first_difference(previous, run)
    if difference:
        raise OutputError(
            f"cannot resume {folder}: it was started with different settings ({difference}); "
            "rerun with the original options, or pass --overwrite to start again"
        )
    completed: dict[int, dict[str, Any]] = {}
    for record_path in sorted((folder / PROGRESS_DIR).glob("shard-*.json")):
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        shard = folder / record["filename"]
        if shard.is_file() and file_sha256(shard) == record["sha256"]:
            completed[int(record["index"])] = record
    return completed


def _remove_stale(folder: Path, completed: dict[int, dict[str, Any]]) -> None:
    """Delete partial files, unfinished shards and the finishing files; keep completed shards."""
    keep = {record["filename"] for record in completed.values()}
    for path in folder.iterdir():
        if path.name.startswith("data-") and path.name not in keep:
            path.unlink()
        elif path.name in (MANIFEST, "state.json", "dataset_info.json"):
            path.unlink()
    for record_path in (folder / PROGRESS_DIR).glob("*"):
        if record_path.name.startswith("shard-"):
            index = int(record_path.stem.split("-")[1])
            if index not in completed:
                record_path.unlink()
        elif record_path.name.endswith(PARTIAL_SUFFIX) or record_path.name.startswith("task-"):
            record_path.unlink()


def _first_difference(old: Any, new: Any, path: str = "") -> str:
    """A short description of the first setting that differs between two runs, or ''."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = _first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else key)
            if found:
                return found
        return ""
    return "" if old == new else f"{path}: {old!r} then, {new!r} now"


def write_shard_record(folder: Path, record: dict[str, Any]) -> None:
    """Mark a shard complete (after its file was renamed into place)."""
    write_json(shard_record_path(folder, int(record["index"])), record)
