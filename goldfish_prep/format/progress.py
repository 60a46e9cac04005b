"""The progress files of an output folder (``.goldfish/``): the run description, shard records and task files.

They are how a run that stops part-way is finished by another: ``run.json``
describes the run (``--resume`` compares against it), a shard's completion
record (``shard-NNNNN.json``, its checksums and the run that made it) is
written after the shard itself, the written-last marker of step 2 of the
commit protocol (``folder``), and a task file is written last by a
``--num-tasks`` task, so it means the task finished. ``finalize`` builds the
manifest from these files alone.

All of them are stable JSON (sorted keys) committed whole through the storage
primitives (``storage``), so a URL folder keeps them with the same code; it
only fetches many records at once (``UrlFolder.read_shard_records``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from goldfish_prep.errors import OutputError
from goldfish_prep.format.commit import json_bytes, write_failure
from goldfish_prep.format.names import PROGRESS_DIR, RUN_FILE, TASK_FILE, is_shard_record_name, shard_record_name
from goldfish_prep.format.ownership import Task, progress_path
from goldfish_prep.format.storage import FolderStorage


class ProgressFiles(FolderStorage):
    """The JSON files of a folder, and the progress files among them, over the storage primitives."""

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


__all__ = ["ProgressFiles"]
