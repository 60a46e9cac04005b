"""The same inputs and options give the same bytes: every shard, the metadata and the manifest.

Three ways a run could differ without changing its inputs, one test each: running it again
(in a fresh process, with another hash seed and working folder), running it with another
``--num-proc``, and splitting it into ``--num-tasks`` jobs run in any order and joined with
``finalize``. The corpus mixes every local format, compression, skipped bad records and
many small shards, so that each code path that decides bytes is on the line.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from goldfish_prep.pipeline import pool as parallel
from goldfish_prep_cli.main import cli

OPTIONS = ("--shard-size", "48KB", "--on-error", "skip")


def invoke(*args: object) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def output_bytes(folder: Path) -> dict[str, bytes]:
    """Every file but the resume markers in .goldfish/, by name."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, real_texts: list[str]) -> list[Path]:
    """About 600 KB of real text in JSON lines (plain and .gz), a JSON array, Parquet and .txt, with bad records."""
    folder = tmp_path_factory.mktemp("determinism")
    texts = [text[:3000] for text in real_texts[:200]]
    lines = [json.dumps({"text": text}) for text in texts[:80]]
    lines[10] = '{"text": null}'
    lines[55] = '{"text": "cut off'
    (folder / "a.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "b.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps({"text": t}) + "\n" for t in texts[80:120]).encode()))
    (folder / "c.json").write_text(json.dumps([{"text": t} for t in texts[120:150]]), encoding="utf-8")
    pq.write_table(pa.table({"text": texts[150:199]}), folder / "d.parquet", row_group_size=16)
    (folder / "e.txt").write_text(texts[199], encoding="utf-8")
    return sorted(folder.iterdir())


def mask(corpus: list[Path], out: Path, *extra: str) -> dict[str, bytes]:
    invoke("mask", *corpus, "-o", out, "-q", *OPTIONS, *extra)
    return output_bytes(out)


def test_a_rerun_in_a_fresh_process_is_byte_identical(tmp_path: Path, corpus: list[Path]) -> None:
    """Another process, another PYTHONHASHSEED, another working folder: no set order or cwd leaks into the bytes."""
    first = mask(corpus, tmp_path / "first")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    command = [sys.executable, "-m", "goldfish_prep_cli", "mask", *map(str, corpus), "-o", str(tmp_path / "second"), "-q", *OPTIONS]
    run = subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    second = output_bytes(tmp_path / "second")
    assert len([name for name in first if name.startswith("data-")]) >= 8
    assert first == second
    counts = json.loads(first["goldfish_manifest.json"])["counts"]
    assert counts["documents_skipped"] == 2 and counts["documents_read"] == 200


@pytest.mark.parametrize("layout", [(), ("--pack", "1024")], ids=["documents", "packed"])
def test_num_proc_does_not_change_a_byte(tmp_path: Path, corpus: list[Path], layout: tuple[str, ...]) -> None:
    one = mask(corpus, tmp_path / "one", *layout)
    three = mask(corpus, tmp_path / "three", *layout, "--num-proc", "3")
    assert one == three


@pytest.mark.parametrize("start_method", ["fork", "spawn"] if sys.platform == "linux" else ["spawn"])
def test_forked_and_spawned_workers_write_the_same_bytes(
    tmp_path: Path, corpus: list[Path], start_method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers fork from a single-threaded ``mask`` and spawn elsewhere (``parallel.safe_start_method``)."""
    one = mask(corpus, tmp_path / "one")
    monkeypatch.setattr(parallel, "safe_start_method", lambda: start_method)
    assert mask(corpus, tmp_path / "two", "--num-proc", "2") == one


@pytest.mark.parametrize(
    ("num_tasks", "order", "num_proc"),
    [(3, (2, 0, 1), (1, 1, 1)), (2, (1, 0), (2, 1))],
    ids=["3-tasks-out-of-order", "2-tasks-one-with-workers"],
)
def test_task_splits_join_to_the_single_run_bytes(
    tmp_path: Path, corpus: list[Path], num_tasks: int, order: tuple[int, ...], num_proc: tuple[int, ...]
) -> None:
    single = mask(corpus, tmp_path / "single")
    split = tmp_path / "split"
    for task, procs in zip(order, num_proc):
        invoke("mask", *corpus, "-o", split, "-q", *OPTIONS, "--num-tasks", num_tasks, "--task-index", task, "--num-proc", procs)
        assert not (split / "goldfish_manifest.json").exists()  # no task finishes the folder alone
    invoke("finalize", split)
    assert output_bytes(split) == single
