"""A run killed at any moment loses nothing: `--resume` finishes it to the bytes of an uninterrupted run.

Two complementary tests. The random one runs ``bench/crash_safety.py`` at a small size:
real SIGKILLs of a real `mask` process (and of its workers) at random moments. The
deterministic one builds, one by one, every state a kill can leave between two of the
pipeline's writes (each write is "temporary file, fsync, rename", so these are all of them),
and checks for each that nothing takes it for a finished output and that `--resume` ends
with the reference bytes.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner

from goldfish_prep_cli.main import cli


def _load_bench() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "bench" / "crash_safety.py"
    spec = importlib.util.spec_from_file_location("goldfish_bench_crash_safety", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


bench = _load_bench()
SHARD_SIZE = "32KB"


@pytest.mark.parametrize(("num_proc", "trials", "seed"), [(1, 3, 0), (2, 1, 1)])
def test_random_sigkills_then_resume_give_identical_bytes(tmp_path: Path, num_proc: int, trials: int, seed: int) -> None:
    results = bench.run(trials=trials, docs=100, shard_size=SHARD_SIZE, num_proc=num_proc, seed=seed, workdir=tmp_path)
    problems = [f"trial {t.index} (kills at {t.kills} s): {p}" for t in results for p in t.problems]
    assert not problems, "\n".join(problems)
    assert sum(len(t.kills) for t in results) >= 1, "no run was killed: every run ended before its kill moment"


# ----------------------------------------------------------------------------- every state a kill can leave


def mask(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["mask", *(str(a) for a in args), "-q"])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path, dict[str, bytes]]:
    """A small real corpus, masked once without interruption: inputs, folder, bytes."""
    workdir = tmp_path_factory.mktemp("crash-reference")
    corpus = bench.make_corpus(workdir / "corpus", 100)
    out = workdir / "reference"
    code, output = mask(*corpus, "-o", out, "--shard-size", SHARD_SIZE)
    assert code == 0, output
    assert len(list(out.glob("data-*.arrow"))) >= 4
    return corpus, out, bench.output_bytes(out)


def _cut_after(folder: Path, last_done: int) -> None:
    """Undo everything after shard ``last_done`` was recorded: later shards, records, metadata, manifest."""
    for name in ("goldfish_manifest.json", "state.json", "dataset_info.json"):
        (folder / name).unlink()
    for shard in folder.glob("data-*.arrow"):
        if int(shard.stem.split("-")[1]) > last_done:
            shard.unlink()
    for record in (folder / ".goldfish").glob("shard-*.json"):
        if int(record.stem.split("-")[1]) > last_done:
            record.unlink()


def _nothing_yet(folder: Path) -> None:
    shutil.rmtree(folder)
    folder.mkdir()


def _empty_progress_folder(folder: Path) -> None:
    shutil.rmtree(folder)
    (folder / ".goldfish").mkdir(parents=True)


def _run_file_being_written(folder: Path) -> None:
    run = (folder / ".goldfish" / "run.json").read_bytes()
    shutil.rmtree(folder)
    (folder / ".goldfish").mkdir(parents=True)
    (folder / ".goldfish" / "run.json.4242.partial").write_bytes(run[: len(run) // 2])


def _run_file_only(folder: Path) -> None:
    _cut_after(folder, -1)


def _shard_being_written(folder: Path) -> None:
    data = (folder / "data-00002.arrow").read_bytes()
    _cut_after(folder, 1)
    (folder / "data-00002.arrow.partial").write_bytes(data[: len(data) // 2])


def _shard_renamed_before_its_record(folder: Path) -> None:
    _cut_after(folder, 2)
    (folder / ".goldfish" / "shard-00002.json").unlink()


def _record_being_written(folder: Path) -> None:
    _cut_after(folder, 2)
    record = folder / ".goldfish" / "shard-00002.json"
    record.rename(record.with_name("shard-00002.json.4242.partial"))


def _torn_record(folder: Path) -> None:
    """A record cut short (a file system that reorders writes without fsync could leave this)."""
    _cut_after(folder, 2)
    record = folder / ".goldfish" / "shard-00002.json"
    record.write_bytes(record.read_bytes()[:20])


def _completed_shard_damaged(folder: Path) -> None:
    """A shard whose bytes no longer match its record: it must be redone, not kept."""
    _cut_after(folder, 2)
    shard = folder / "data-00001.arrow"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))


def _all_shards_no_metadata(folder: Path) -> None:
    for name in ("goldfish_manifest.json", "state.json", "dataset_info.json"):
        (folder / name).unlink()


def _state_written_only(folder: Path) -> None:
    (folder / "goldfish_manifest.json").unlink()
    (folder / "dataset_info.json").unlink()


def _metadata_without_manifest(folder: Path) -> None:
    (folder / "goldfish_manifest.json").unlink()


def _manifest_being_written(folder: Path) -> None:
    manifest = folder / "goldfish_manifest.json"
    data = manifest.read_bytes()
    manifest.unlink()
    (folder / "goldfish_manifest.json.4242.partial").write_bytes(data[: len(data) // 2])


KILL_STATES: dict[str, Callable[[Path], None]] = {
    "output-folder-created": _nothing_yet,
    "progress-folder-created": _empty_progress_folder,
    "run-file-being-written": _run_file_being_written,
    "run-file-written": _run_file_only,
    "shard-being-written": _shard_being_written,
    "shard-renamed-before-its-record": _shard_renamed_before_its_record,
    "record-being-written": _record_being_written,
    "record-torn": _torn_record,
    "completed-shard-damaged": _completed_shard_damaged,
    "all-shards-no-metadata": _all_shards_no_metadata,
    "state-json-written": _state_written_only,
    "metadata-without-manifest": _metadata_without_manifest,
    "manifest-being-written": _manifest_being_written,
}


@pytest.mark.parametrize("state", KILL_STATES)
def test_every_state_a_kill_leaves_is_refused_then_resumed(
    tmp_path: Path, reference: tuple[list[Path], Path, dict[str, bytes]], state: str
) -> None:
    corpus, done, expected = reference
    out = tmp_path / "out"
    shutil.copytree(done, out)
    KILL_STATES[state](out)
    assert not bench.completeness_problems(out, expected, state)
    code, output = mask(*corpus, "-o", out, "--shard-size", SHARD_SIZE, "--resume")
    assert code == 0, output
    assert bench.output_bytes(out) == expected
    assert not list(out.rglob("*.partial"))


def test_resume_of_a_finished_run_changes_nothing(tmp_path: Path, reference: tuple[list[Path], Path, dict[str, bytes]]) -> None:
    corpus, done, expected = reference
    out = tmp_path / "out"
    shutil.copytree(done, out)
    code, output = mask(*corpus, "-o", out, "--shard-size", SHARD_SIZE, "--resume")
    assert code == 0, output
    assert bench.output_bytes(out) == expected
    assert json.loads(expected["goldfish_manifest.json"])["counts"]["documents_written"] == 100
