"""``goldfish-prep finalize``: join the shards of ``--num-tasks`` runs into one dataset.

Each task of a split run (a Slurm array, Ray tasks, plain shell loops) writes
its own shards and, when it has finished, ``.goldfish/task-IIIII-of-NNNNN.json``
with the number of shards the whole input makes. Only those files say that a
task ran to its end, so finalizing waits for all N of them, checks that they
agree with each other, and then writes the dataset metadata and the manifest
(``manifest.finalize_output``), which check every shard's completion record.
The bytes are those of a single-process run: finishing reads nothing but the
run description and the shard records.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from goldfish_prep.errors import OutputError
from goldfish_prep.format.names import MANIFEST, PROGRESS_DIR, RUN_FILE, TASK_FILE, TASK_FILE_GLOB
from goldfish_prep.pipeline._finish import finalize_output
from goldfish_prep.pipeline._output import run_digest


def finalize_tasks(folder: Path) -> dict[str, Any]:
    """Check that every task of the split run in ``folder`` finished, then write the metadata and manifest.

    Returns the manifest. Running it again on a finished folder rewrites the same bytes.
    """
    progress = folder / PROGRESS_DIR
    if not (progress / RUN_FILE).is_file():
        raise OutputError(
            f"{folder} is not a goldfish-prep output folder (no {PROGRESS_DIR}/{RUN_FILE}); "
            "run `goldfish-prep mask INPUTS -o OUT --num-tasks N --task-index I` for each task first"
        )
    tasks = _read_task_files(progress)
    if not tasks:
        if (folder / MANIFEST).is_file():
            return dict(json.loads((folder / MANIFEST).read_text(encoding="utf-8")))
        raise OutputError(
            f"no task of {folder} has finished (no {PROGRESS_DIR}/task-*-of-*.json); run every "
            "`goldfish-prep mask ... --num-tasks N --task-index I` to its end, then finalize again"
        )
    num_tasks = _complete_split(folder, tasks)
    _check_one_run(folder, {index: summary for (n, index), summary in tasks.items() if n == num_tasks})
    shard_counts = {summary["num_shards"] for (n, _), summary in tasks.items() if n == num_tasks}
    if len(shard_counts) != 1:
        raise OutputError(
            f"the tasks of {folder} disagree on the number of shards ({sorted(shard_counts)}): they read "
            "different inputs or options. Rerun every task with the same inputs and options (--overwrite)"
        )
    return finalize_output(folder, shard_counts.pop())


def _check_one_run(folder: Path, tasks: dict[int, dict[str, Any]]) -> None:
    """Every task must have made its shards under the run in ``run.json`` (the latest task's run)."""
    latest = run_digest(json.loads((folder / PROGRESS_DIR / RUN_FILE).read_text(encoding="utf-8")))
    others = sorted(index for index, summary in tasks.items() if summary.get("run_sha256") != latest)
    if others:
        listed = ", ".join(str(i) for i in others[:10]) + (", ..." if len(others) > 10 else "")
        raise OutputError(
            f"the tasks of {folder} were not all run with the same inputs and options: --task-index {listed} "
            f"made shards under other settings than the latest task ({PROGRESS_DIR}/{RUN_FILE}). Rerun every task "
            "with the same inputs and options (--overwrite), then finalize again"
        )


def _read_task_files(progress: Path) -> dict[tuple[int, int], dict[str, Any]]:
    """``(num_tasks, task_index) -> summary`` of every readable task file."""
    tasks: dict[tuple[int, int], dict[str, Any]] = {}
    for path in sorted(progress.glob(TASK_FILE_GLOB)):
        match = TASK_FILE.fullmatch(path.name)
        if match is None:
            continue
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise OutputError(f"cannot read {path} ({exc}); rerun that task with --resume, then finalize again") from exc
        index, num_tasks = int(match.group(1)), int(match.group(2))
        if summary.get("task_index") != index or summary.get("num_tasks") != num_tasks:
            raise OutputError(f"{path} does not describe task {index} of {num_tasks}; rerun that task with --resume")
        tasks[(num_tasks, index)] = summary
    return tasks


def _complete_split(folder: Path, tasks: dict[tuple[int, int], dict[str, Any]]) -> int:
    """The N of the split whose N tasks have all finished; an error naming the missing tasks otherwise."""
    splits = sorted({n for n, _ in tasks})
    complete = [n for n in splits if all((n, i) in tasks for i in range(n))]
    if complete:
        return complete[-1]
    num_tasks = splits[-1]
    missing = [i for i in range(num_tasks) if (num_tasks, i) not in tasks]
    listed = ", ".join(str(i) for i in missing[:10]) + (", ..." if len(missing) > 10 else "")
    verb = "has" if len(missing) == 1 else "have"
    raise OutputError(
        f"{folder}: {len(missing)} of {num_tasks} tasks {verb} not finished (--task-index {listed}); run "
        f"`goldfish-prep mask ... --num-tasks {num_tasks} --task-index I` for each of them "
        "(add --resume to keep a crashed task's finished shards), then finalize again"
    )
