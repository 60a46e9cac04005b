"""`mask --num-tasks N --task-index I` for every I, then `finalize`: the bytes of a single run.

Tasks share one output folder and may run in any order or at the same time, so
each must leave the other tasks' shards, partial files and records alone, and
`finalize` must refuse until every task has finished.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from click.testing import CliRunner, Result

from goldfish_prep_cli.main import cli

SHARD_SIZE = "60KB"  # about 15 shards from the corpus below, so every task gets several
OPTIONS = ("-q", "--shard-size", SHARD_SIZE, "--on-error", "skip")


def run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def tree_bytes(folder: Path) -> dict[str, bytes]:
    """Everything a user or `load_from_disk` reads: the shards, state.json, dataset_info.json, the manifest."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and ".goldfish" not in p.parts
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, real_texts: list[str]) -> Path:
    """About 0.9 MB of real documents in two JSON-lines files; one empty text, skipped and counted."""
    folder = tmp_path_factory.mktemp("corpus")
    texts = [t for t in real_texts if len(t) < 20_000][:160]
    texts[7] = ""
    for part, chunk in enumerate((texts[:90], texts[90:])):
        (folder / f"part-{part}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in chunk), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("single") / "out"
    result = run("mask", corpus, "-o", out, *OPTIONS)
    assert result.exit_code == 0, result.output
    return tree_bytes(out)


def run_task(corpus: Path, out: Path, num_tasks: int, index: int, *extra: str) -> Result:
    return run("mask", corpus, "-o", out, *OPTIONS, "--num-tasks", num_tasks, "--task-index", index, *extra)


@pytest.mark.parametrize("order", [(1, 0), (2, 0, 1)], ids=["2-tasks", "3-tasks"])
def test_tasks_in_any_order_then_finalize_equal_the_single_run(
    tmp_path: Path, corpus: Path, single: dict[str, bytes], order: tuple[int, ...]
) -> None:
    out = tmp_path / "out"
    for index in order:
        result = run_task(corpus, out, len(order), index)
        assert result.exit_code == 0, result.output
        assert f"run `goldfish-prep finalize {out}`" in result.output
        assert not (out / "state.json").exists()  # nothing loads before finalize
    shard_files = [name for name in single if name.startswith("data-")]
    assert len(shard_files) >= 3 * len(order)
    finalized = run("finalize", out)
    assert finalized.exit_code == 0, finalized.output
    assert "Wrote 159 documents" in finalized.output and "Skipped 1 bad record (" in finalized.output
    assert tree_bytes(out) == single
    assert datasets.load_from_disk(str(out)).num_rows == 159


def test_finalize_refuses_while_a_task_is_missing(tmp_path: Path, corpus: Path, single: dict[str, bytes]) -> None:
    out = tmp_path / "out"
    for index in (0, 2):
        assert run_task(corpus, out, 3, index).exit_code == 0
    refused = run("finalize", out)
    assert refused.exit_code == 1
    assert refused.output.strip().splitlines()[-1] == (
        f"Error: {out}: 1 of 3 tasks has not finished (--task-index 1); run "
        "`goldfish-prep mask ... --num-tasks 3 --task-index I` for each of them "
        "(add --resume to keep a crashed task's finished shards), then finalize again"
    )
    assert not any((out / name).exists() for name in ("state.json", "dataset_info.json", "goldfish_manifest.json"))
    assert run_task(corpus, out, 3, 1).exit_code == 0
    assert run("finalize", out).exit_code == 0
    assert tree_bytes(out) == single


def test_a_damaged_shard_record_is_one_line_and_resume_then_finalize_recover(
    tmp_path: Path, corpus: Path, single: dict[str, bytes]
) -> None:
    """A record cut short (a disk that lost its tail, a hand edit) stops finalize in one line naming it; --resume of the
    task that owns it redoes that shard, and finalize then writes the bytes of one run."""
    out = tmp_path / "out"
    for index in (0, 1):
        assert run_task(corpus, out, 2, index).exit_code == 0
    record = out / ".goldfish" / "shard-00001.json"
    record.write_bytes(record.read_bytes()[:20])
    refused = run("finalize", out)
    assert refused.exit_code == 1, refused.output
    line = refused.output.strip().splitlines()[-1]
    assert line.startswith(f"Error: {record} is damaged (") and "with --resume" in line, line
    assert not (out / "state.json").exists()
    assert run_task(corpus, out, 2, 1, "--resume").exit_code == 0  # shard 1 belongs to task 1 of 2
    assert run("finalize", out).exit_code == 0
    assert tree_bytes(out) == single


def test_finalize_refuses_tasks_run_with_different_options(tmp_path: Path, corpus: Path) -> None:
    """Each task under --overwrite skips the settings check --resume makes; finalize must catch the mix."""
    out = tmp_path / "out"
    assert run_task(corpus, out, 2, 0, "--k", "4", "--overwrite").exit_code == 0
    assert run_task(corpus, out, 2, 1, "--k", "3", "--overwrite").exit_code == 0
    result = CliRunner().invoke(cli, ["finalize", str(out)])
    assert result.exit_code == 1 and not (out / "goldfish_manifest.json").exists()
    assert result.output.startswith(
        f"Error: the tasks of {out} were not all run with the same inputs and options: --task-index 0 made shards"
    )
    assert "Rerun every task with the same inputs and options (--overwrite), then finalize again" in result.output
    assert run_task(corpus, out, 2, 0, "--k", "3", "--overwrite").exit_code == 0
    assert CliRunner().invoke(cli, ["finalize", str(out)]).exit_code == 0


def test_finalize_names_a_folder_that_no_task_wrote(tmp_path: Path) -> None:
    result = run("finalize", tmp_path)
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: {tmp_path} is not a goldfish-prep output folder (no .goldfish/run.json); "
        "run `goldfish-prep mask INPUTS -o OUT --num-tasks N --task-index I` for each task first"
    )


def test_a_task_leaves_the_other_tasks_work_alone(tmp_path: Path, corpus: Path, single: dict[str, bytes]) -> None:
    """What a concurrent task 0 has in flight (a partial shard, a record being written) survives task 1's start,
    and task 1's --overwrite and --resume touch only task 1's shards."""
    out = tmp_path / "out"
    assert run_task(corpus, out, 2, 0).exit_code == 0
    task0 = {p.name: p.stat().st_mtime_ns for p in out.glob("data-*.arrow")}
    in_flight = [out / "data-00098.arrow.partial", out / ".goldfish" / "shard-00098.json.4242.partial"]
    for path in in_flight:
        path.write_bytes(b"being written by task 0")
    assert run_task(corpus, out, 2, 1, "--overwrite").exit_code == 0
    assert run_task(corpus, out, 2, 1, "--resume").exit_code == 0
    assert all(path.exists() for path in in_flight)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("data-*.arrow") if p.name in task0} == task0
    for path in in_flight:
        path.unlink()
    assert run("finalize", out).exit_code == 0
    assert tree_bytes(out) == single


def test_a_crashed_task_resumes_its_own_shards(tmp_path: Path, corpus: Path, single: dict[str, bytes]) -> None:
    out = tmp_path / "out"
    for index in (0, 1):
        assert run_task(corpus, out, 2, index).exit_code == 0
    # task 1 "crashed": its last shard is gone, another is half written, and it never said it finished
    mine = sorted(out.glob("data-*.arrow"))[1::2]
    mine[-1].unlink()
    mine[0].rename(mine[0].with_name(mine[0].name + ".partial"))
    (out / ".goldfish" / "task-00001-of-00002.json").unlink()
    assert run("finalize", out).exit_code == 1
    kept = {p.name: p.stat().st_mtime_ns for p in mine[1:-1]}
    assert run_task(corpus, out, 2, 1, "--resume").exit_code == 0
    assert {p.name: p.stat().st_mtime_ns for p in mine[1:-1]} == kept  # finished shards were not redone
    assert run("finalize", out).exit_code == 0
    assert tree_bytes(out) == single


def test_tasks_running_at_the_same_time(tmp_path: Path, corpus: Path, single: dict[str, bytes]) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    command = [sys.executable, "-m", "goldfish_prep_cli", "mask", str(corpus), "-o", str(out), *OPTIONS, "--num-tasks", "3"]
    tasks = [subprocess.Popen([*command, "--task-index", str(i)], env=env, stderr=subprocess.PIPE, text=True) for i in range(3)]
    for task in tasks:
        _, stderr = task.communicate(timeout=300)
        assert task.returncode == 0, stderr
    assert run("finalize", out).exit_code == 0
    assert tree_bytes(out) == single
