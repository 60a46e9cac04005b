"""`mask --ray-address`: Ray tasks on a local 2-CPU Ray give the bytes of a single-process run.

Ray is an optional extra (goldfish-prep[ray]); without it these tests are skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from goldfish_prep_cli.main import cli

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'goldfish-prep[ray]'")

OPTIONS = ("-q", "--shard-size", "60KB")


def run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and ".goldfish" not in p.parts
    }


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray with 2 CPUs for the module; the CLI finds it connected and uses it as it is."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, real_texts: list[str]) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    texts = [t for t in real_texts if t and len(t) < 20_000][:120]
    (folder / "a.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return folder


@pytest.mark.parametrize("tasks", [None, 3], ids=["one-task-per-cpu", "3-tasks"])
def test_ray_output_equals_the_single_process_run(local_ray: None, tmp_path: Path, corpus: Path, tasks: int | None) -> None:
    single, on_ray = tmp_path / "single", tmp_path / "ray"
    assert run("mask", corpus, "-o", single, *OPTIONS).exit_code == 0
    extra = ("--ray-tasks", tasks) if tasks else ()
    result = run("mask", corpus, "-o", on_ray, *OPTIONS, "--ray-address", "local", *extra)
    assert result.exit_code == 0, result.output
    assert "Wrote 120 documents" in result.output
    assert len([name for name in tree_bytes(single) if name.startswith("data-")]) >= 6
    assert tree_bytes(on_ray) == tree_bytes(single)
    expected_tasks = tasks or 2
    assert len(list((on_ray / ".goldfish").glob(f"task-*-of-{expected_tasks:05d}.json"))) == expected_tasks


def test_ray_robust_output_equals_the_single_process_run(local_ray: None, tmp_path: Path, corpus: Path) -> None:
    """robust masks read the tokenizer's bytes per id in every Ray task: the same bytes as one process."""
    single, on_ray = tmp_path / "single", tmp_path / "ray"
    assert run("mask", corpus, "-o", single, *OPTIONS, "--strategy", "robust").exit_code == 0
    result = run("mask", corpus, "-o", on_ray, *OPTIONS, "--strategy", "robust", "--ray-address", "local")
    assert result.exit_code == 0, result.output
    assert tree_bytes(on_ray) == tree_bytes(single)


def test_ray_reports_a_bad_record_as_one_error_line(local_ray: None, tmp_path: Path) -> None:
    source = tmp_path / "dirty.jsonl"
    source.write_text('{"text": "fine"}\n{"text": "broken"\n', encoding="utf-8")
    result = run("mask", source, "-o", tmp_path / "out", "-q", "--ray-address", "local")
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"Error: {source} line 2: ") and "--on-error skip" in last
    assert "Traceback" not in result.output


def test_ray_refuses_a_finished_output_folder(local_ray: None, tmp_path: Path, corpus: Path) -> None:
    out = tmp_path / "out"
    assert run("mask", corpus, "-o", out, *OPTIONS, "--ray-address", "local").exit_code == 0
    again = run("mask", corpus, "-o", out, *OPTIONS, "--ray-address", "local")
    assert again.exit_code == 1
    assert again.output.strip().splitlines()[-1] == (
        f"Error: output folder {out} already exists and is not empty; pass --overwrite to replace it, "
        "or --resume to finish an interrupted run"
    )
    before = tree_bytes(out)
    assert run("mask", corpus, "-o", out, *OPTIONS, "--ray-address", "local", "--overwrite").exit_code == 0
    assert tree_bytes(out) == before
