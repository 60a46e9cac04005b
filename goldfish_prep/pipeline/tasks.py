"""``goldfish-prep finalize``: join the shards of ``--num-tasks`` runs into one dataset.

Each task of a split run (a Slurm array, Ray tasks, plain shell loops) writes
its own shards and, when it has finished, ``.goldfish/task-IIIII-of-NNNNN.json``
with the number of shards the whole input makes. Only those files say that a
task ran to its end, so finalizing waits for all N of them, checks that they
agree with each other and with ``run.json``, and then writes the dataset metadata
and the manifest (``_finish.finalize_output``), which check that every shard's
completion record exists and names that run (``ownership.shard_run``): a folder
never finishes with two runs' shards.
The bytes are those of a single-process run: finishing reads nothing but the
run description and the shard records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from goldfish_prep.errors import OutputError
from goldfish_prep.format.folder import OutputFolder, open_folder, run_digest
from goldfish_prep.format.names import MANIFEST, PROGRESS_DIR, RUN_FILE
from goldfish_prep.format.ownership import first_difference, without_engine
from goldfish_prep.pipeline._finish import finalize_output


def finalize_tasks(output: OutputFolder | Path | str) -> dict[str, Any]:
    """Check that every task of the split run in ``output`` finished, then write the metadata and manifest.

    ``output``: a folder object, a local path, or a URL (``s3://bucket/shards``,
    opened with the storage options in use). Returns the manifest. Running it
    again on a finished folder rewrites the same bytes.
    """
    folder = output if isinstance(output, OutputFolder) else open_folder(output)
    if not folder.has_run():
        raise OutputError(
            f"{folder.where()} is not a goldfish-prep output folder (no {PROGRESS_DIR}/{RUN_FILE}); "
            "run `goldfish-prep mask INPUTS -o OUT --num-tasks N --task-index I` for each task first"
        )
    with folder.writing():
        tasks = _read_task_files(folder)
        if not tasks:
            if folder.has_file(MANIFEST):
                return dict(folder.read_json(MANIFEST))
            raise OutputError(
                f"no task of {folder.where()} has finished (no {PROGRESS_DIR}/task-*-of-*.json); run every "
                "`goldfish-prep mask ... --num-tasks N --task-index I` to its end, then finalize again"
            )
        num_tasks = _complete_split(folder, tasks)
        _check_one_run(folder, {index: summary for (n, index), summary in tasks.items() if n == num_tasks})
        shard_counts = {summary["num_shards"] for (n, _), summary in tasks.items() if n == num_tasks}
        if len(shard_counts) != 1:
            raise OutputError(
                f"the tasks of {folder.where()} disagree on the number of shards ({sorted(shard_counts)}): they read "
                "different inputs or options. Rerun every task with the same inputs and options (--overwrite)"
            )
        return finalize_output(folder, shard_counts.pop())


def _check_one_run(folder: OutputFolder, tasks: dict[int, dict[str, Any]]) -> None:
    """Every task must have made its shards under the run in ``run.json`` (the latest task's run).

    A task file holds the run it ended with (inputs hashed), so the first setting that differs is named;
    one written before it did holds only the digest."""
    latest = folder.read_run()
    others = sorted(index for index, summary in tasks.items() if summary.get("run_sha256") != run_digest(latest))
    if others:
        listed = ", ".join(str(i) for i in others[:10]) + (", ..." if len(others) > 10 else "")
        ended = tasks[others[0]].get("run")
        difference = first_difference(without_engine(ended), without_engine(latest)) if isinstance(ended, dict) else ""
        named = f"{'task ' + str(others[0]) + ': ' if len(others) > 1 else ''}{difference}; " if difference else ""
        raise OutputError(
            f"the tasks of {folder.where()} were not all run with the same inputs and options: --task-index {listed} "
            f"made shards under other settings than the latest task ({named}its run is {PROGRESS_DIR}/{RUN_FILE}). "
            "Rerun every task with the same inputs and options (--overwrite), then finalize again"
        )


def _read_task_files(folder: OutputFolder) -> dict[tuple[int, int], dict[str, Any]]:
    """``(num_tasks, task_index) -> summary`` of every readable task file."""
    tasks: dict[tuple[int, int], dict[str, Any]] = {}
    for (num_tasks, index), (where, summary) in folder.task_summaries().items():
        if summary.get("task_index") != index or summary.get("num_tasks") != num_tasks:
            raise OutputError(f"{where} does not describe task {index} of {num_tasks}; rerun that task with --resume")
        tasks[(num_tasks, index)] = summary
    return tasks


def _complete_split(folder: OutputFolder, tasks: dict[tuple[int, int], dict[str, Any]]) -> int:
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
        f"{folder.where()}: {len(missing)} of {num_tasks} tasks {verb} not finished (--task-index {listed}); run "
        f"`goldfish-prep mask ... --num-tasks {num_tasks} --task-index I` for each of them "
        "(add --resume to keep a crashed task's finished shards), then finalize again"
    )
