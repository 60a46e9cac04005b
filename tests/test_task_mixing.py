"""Two runs' shards must never end up in one output: every shard record and task file belongs to one run.

The tasks of a ``--num-tasks`` run each delete, keep or redo only their own
shards, and a task without ``--overwrite`` keeps its completed ones. So when
one task starts a new run (other settings, other inputs) with ``--overwrite``
and another does not, the second could keep shards an earlier run made: each
record names the run that made it (``ownership.shard_run``), a task refuses to
keep a shard of another run, and ``finalize`` refuses a folder whose records or
task files are not all of the run in ``.goldfish/run.json``. These are real
CLI runs on real files; each case mixed two runs silently before.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from goldfish_prep_cli.main import cli
from tests import s3_server as fixtures
from tests.s3_server import S3Server

# moto's S3 server (one per session) and the environment a user sets to reach it (tests/s3_server.py)
s3_server = fixtures.s3_server
s3_env = fixtures.s3_env
BUCKET = "mixing"
bucket = fixtures.bucket_fixture(BUCKET)

OPTIONS = ("-q", "--shard-size", "24KB")


def run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def task(corpus: Path, out: Path, index: int, *extra: object, num_tasks: int = 2) -> Result:
    return run("mask", corpus, "-o", out, *OPTIONS, "--num-tasks", num_tasks, "--task-index", index, *extra)


def error_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    return result.output.strip().splitlines()[-1]


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and ".goldfish" not in p.parts
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, real_texts: list[str]) -> Path:
    """About 300 KB of real documents: a dozen shards of 24 KB, so each of 2 tasks owns several."""
    path = tmp_path_factory.mktemp("corpus") / "c.jsonl"
    texts = [t for t in real_texts if 0 < len(t) < 20_000][:120]
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> dict[str, bytes]:
    """What one plain run with the default k writes (the bytes every correct split run must end with)."""
    out = tmp_path_factory.mktemp("single") / "out"
    result = run("mask", corpus, "-o", out, *OPTIONS)
    assert result.exit_code == 0, result.output
    assert sum(name.startswith("data-") for name in tree_bytes(out)) >= 6
    return tree_bytes(out)


def finished_with_k3(corpus: Path, out: Path) -> None:
    result = run("mask", corpus, "-o", out, *OPTIONS, "--k", "3")
    assert result.exit_code == 0, result.output


def refused_as_another_run(line: str, out: Path, difference: str) -> None:
    assert line.startswith(f"Error: cannot resume {out}: "), line
    assert f"({difference})" in line, line
    assert "--overwrite" in line, line


@pytest.mark.parametrize("first", [1, 0], ids=["task-1-first", "task-0-first"])
def test_a_task_without_overwrite_refuses_the_shards_an_earlier_run_left(
    tmp_path: Path, corpus: Path, single: dict[str, bytes], first: int
) -> None:
    """A finished k=3 output; one task of a k=4 split with --overwrite, the other without: before, the second
    kept the k=3 shards it owned and finalize wrote a mixed output (29% of tokens dropped, not 25%)."""
    out = tmp_path / "out"
    finished_with_k3(corpus, out)
    assert task(corpus, out, first, "--overwrite").exit_code == 0
    line = error_line(task(corpus, out, 1 - first))
    assert line == (
        f"Error: cannot resume {out}: shard {1 - first} (data-0000{1 - first}.arrow) was made by another run "
        "(mask.k: 3 then, 4 now), which this run would keep: a task of a new run got --overwrite and this one did not. "
        "Rerun every task of the new run with --overwrite (a plain run: --overwrite), or rerun with the inputs and "
        "options of the run that made the shard"
    )
    assert not (out / "state.json").exists()
    assert error_line(run("finalize", out)).startswith("Error: ")  # the refused task never finished
    assert task(corpus, out, 1 - first, "--overwrite").exit_code == 0
    finalized = run("finalize", out)
    assert finalized.exit_code == 0, finalized.output
    assert tree_bytes(out) == single


@pytest.mark.parametrize(
    "old", [("--k", "3"), ("--shard-size", "30KB"), ("--context-width", "7")], ids=["k", "shard-size", "context-width"]
)
def test_a_split_run_over_another_split_run_refuses_the_other_run_s_shards(
    tmp_path: Path, corpus: Path, single: dict[str, bytes], old: tuple[str, str]
) -> None:
    """Two tasks of one run, then a new run whose task 1 overwrites and whose task 0 does not: task 0 must not keep
    the shards the first run made (it did when only the setting in run.json was compared, which task 1 rewrote)."""
    out = tmp_path / "out"
    for index in (0, 1):
        assert task(corpus, out, index, *old).exit_code == 0
    assert run("finalize", out).exit_code == 0
    assert task(corpus, out, 1, "--overwrite").exit_code == 0
    line = error_line(task(corpus, out, 0))
    assert line.startswith(f"Error: cannot resume {out}: ") and "another run" in line and "--overwrite" in line, line
    assert task(corpus, out, 0, "--overwrite").exit_code == 0
    assert run("finalize", out).exit_code == 0
    assert tree_bytes(out) == single


def test_a_plain_resume_refuses_shards_of_a_run_a_task_replaced(tmp_path: Path, corpus: Path, single: dict[str, bytes]) -> None:
    """A finished k=3 output, task 1 of a k=4 split with --overwrite, then a plain `--resume` with k=4: it matched its
    settings against run.json (task 1's) and kept the even k=3 shards."""
    out = tmp_path / "out"
    finished_with_k3(corpus, out)
    assert task(corpus, out, 1, "--overwrite").exit_code == 0
    line = error_line(run("mask", corpus, "-o", out, *OPTIONS, "--resume"))
    refused_as_another_run(line, out, "mask.k: 3 then, 4 now")
    assert run("mask", corpus, "-o", out, *OPTIONS, "--overwrite").exit_code == 0
    assert tree_bytes(out) == single


def test_a_task_without_overwrite_redoes_shards_of_an_input_since_grown(tmp_path: Path, corpus: Path) -> None:
    """The same settings over an input that grew between the runs: the earlier run's shards are of the old bytes,
    so the task redoes its shards from the input as it is now (its record saw another size) instead of keeping them."""
    grown = tmp_path / "c.jsonl"
    grown.write_bytes(corpus.read_bytes())
    out = tmp_path / "out"
    assert run("mask", grown, "-o", out, *OPTIONS).exit_code == 0
    with grown.open("a", encoding="utf-8") as file:
        file.write(json.dumps({"text": "one more document " * 40}) + "\n")
    assert task(grown, out, 1, "--overwrite").exit_code == 0
    assert task(grown, out, 0).exit_code == 0
    assert run("finalize", out).exit_code == 0
    reference = tmp_path / "reference"
    assert run("mask", grown, "-o", reference, *OPTIONS).exit_code == 0
    assert tree_bytes(out) == tree_bytes(reference)


def test_finalize_refuses_a_shard_record_of_another_run(tmp_path: Path, corpus: Path) -> None:
    """Whatever put it there (a version before this check, a hand copy), a shard of another run in the folder stops
    finalize, naming the shard and the setting, and nothing is finished."""
    old, out = tmp_path / "old", tmp_path / "out"
    for index in (0, 1):
        assert task(corpus, old, index, "--k", "3").exit_code == 0
        assert task(corpus, out, index).exit_code == 0
    for name in ("data-00002.arrow", ".goldfish/shard-00002.json"):
        shutil.copyfile(old / name, out / name)
    line = error_line(run("finalize", out))
    assert line == (
        f"Error: {out}: shard 2 (data-00002.arrow) was made by another run than the one in .goldfish/run.json "
        "(mask.k: 3 then, 4 now); rerun every task with --overwrite (a plain run: mask --overwrite), then finalize again"
    )
    assert not (out / "state.json").exists() and not (out / "goldfish_manifest.json").exists()


def test_finalize_names_the_setting_in_which_the_tasks_differ(tmp_path: Path, corpus: Path, single: dict[str, bytes]) -> None:
    out = tmp_path / "out"
    assert task(corpus, out, 0, "--k", "3", "--overwrite").exit_code == 0
    assert task(corpus, out, 1, "--overwrite").exit_code == 0
    line = error_line(run("finalize", out))
    assert line.startswith(f"Error: the tasks of {out} were not all run with the same inputs and options: "), line
    assert line == (
        f"Error: the tasks of {out} were not all run with the same inputs and options: --task-index 0 made shards under "
        "other settings than the latest task (mask.k: 3 then, 4 now; its run is .goldfish/run.json). Rerun every task "
        "with the same inputs and options (--overwrite), then finalize again"
    )
    assert task(corpus, out, 0, "--overwrite").exit_code == 0
    assert run("finalize", out).exit_code == 0
    assert tree_bytes(out) == single


@pytest.mark.parametrize("order", [(1, 0), (0, 1)], ids=["1-then-0", "0-then-1"])
def test_overwrite_on_every_task_replaces_an_earlier_run_in_either_order(
    tmp_path: Path, corpus: Path, single: dict[str, bytes], order: tuple[int, int]
) -> None:
    """The documented way to replace a run: still works, with a task rerun with --resume in between."""
    out = tmp_path / "out"
    finished_with_k3(corpus, out)
    assert task(corpus, out, order[0], "--overwrite").exit_code == 0
    resumed = task(corpus, out, order[0], "--resume")  # a task run again (a requeued array task) keeps its own shards
    assert resumed.exit_code == 0, resumed.output
    assert task(corpus, out, order[1], "--overwrite").exit_code == 0
    assert run("finalize", out).exit_code == 0
    assert tree_bytes(out) == single


def test_a_task_without_overwrite_redoes_shards_of_an_input_since_rewritten_to_the_same_size(tmp_path: Path, corpus: Path) -> None:
    """Same settings, same path and size, other bytes: the record's run is the same, but the earlier run saw the file
    at another modification time, so its shards are redone, not kept. Before, run.json held the new run's hashes
    (task 1's), the end-of-run hash check passed, and the output held shards of both versions of the file."""
    path, out, reference = tmp_path / "c.jsonl", tmp_path / "out", tmp_path / "reference"
    path.write_bytes(corpus.read_bytes())
    assert run("mask", path, "-o", out, *OPTIONS).exit_code == 0
    before = path.stat().st_mtime_ns
    path.write_bytes(path.read_bytes().replace(b"Copyright", b"COPYRIGHT"))
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))  # as an edit two seconds later leaves it
    assert task(path, out, 1, "--overwrite").exit_code == 0
    resumed = task(path, out, 0)
    assert resumed.exit_code == 0, resumed.output
    assert run("finalize", out).exit_code == 0
    assert run("mask", path, "-o", reference, *OPTIONS).exit_code == 0
    assert tree_bytes(out) == tree_bytes(reference)


def test_on_a_url_output_a_task_without_overwrite_refuses_an_earlier_run_s_shards(bucket: S3Server, corpus: Path) -> None:
    """The same rule on object storage: the check is in the folder layer every output shares."""
    url = f"s3://{BUCKET}/split"
    assert run("mask", corpus, "-o", url, *OPTIONS, "--k", "3").exit_code == 0
    assert run("mask", corpus, "-o", url, *OPTIONS, "--num-tasks", 2, "--task-index", 1, "--overwrite").exit_code == 0
    line = error_line(run("mask", corpus, "-o", url, *OPTIONS, "--num-tasks", 2, "--task-index", 0))
    assert line.startswith(f"Error: cannot resume {url}: shard 0 (data-00000.arrow) was made by another run (mask.k: 3 then, 4 now)"), line
    assert run("mask", corpus, "-o", url, *OPTIONS, "--num-tasks", 2, "--task-index", 0, "--overwrite").exit_code == 0
    finalized = run("finalize", url)
    assert finalized.exit_code == 0, finalized.output


# ------------------------------------------------- an input rewritten with its modification time set back


def rewrite_with_its_time_set_back(path: Path) -> None:
    """Other bytes of the same size, and the access and modification times the file had (to the nanosecond):
    what a careless copy tool or an edit that restores times leaves. Only the inode change time shows it."""
    before = path.stat()
    data = path.read_bytes()
    rewritten = data.replace(b"Copyright", b"COPYRIGHT")
    assert rewritten != data and len(rewritten) == len(data)
    path.write_bytes(rewritten)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def shard_files(out: Path) -> dict[str, tuple[int, int]]:
    """Each shard's inode and modification time: a shard redone is written anew and renamed into place."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(out.glob("data-*.arrow"))}


def reference_of(path: Path, tmp_path: Path) -> dict[str, bytes]:
    reference = tmp_path / "reference"
    assert run("mask", path, "-o", reference, *OPTIONS).exit_code == 0
    return tree_bytes(reference)


def test_a_task_without_overwrite_redoes_shards_of_an_input_rewritten_with_its_time_set_back(tmp_path: Path, corpus: Path) -> None:
    """As above, but the modification time is put back to the nanosecond: size and time say nothing, so before,
    task 0 kept its shards of the old bytes and finalize listed them beside task 1's of the new bytes."""
    path, out = tmp_path / "c.jsonl", tmp_path / "out"
    path.write_bytes(corpus.read_bytes())
    assert run("mask", path, "-o", out, *OPTIONS).exit_code == 0
    old = tree_bytes(out)
    rewrite_with_its_time_set_back(path)
    assert task(path, out, 1, "--overwrite").exit_code == 0
    resumed = task(path, out, 0)
    assert resumed.exit_code == 0, resumed.output
    assert run("finalize", out).exit_code == 0
    new = reference_of(path, tmp_path)
    assert tree_bytes(out) == new != old


def test_a_resumed_run_redoes_shards_of_an_input_rewritten_with_its_time_set_back(tmp_path: Path, corpus: Path) -> None:
    """A run that stopped (here: a bad last record) after some shards, the input rewritten to the same size with
    its time set back, the bad record fixed in place: before, ``--resume`` kept the shards of the old bytes, wrote
    the rest from the new ones and exited 0 (the stopped run had recorded sizes and times, no hashes)."""
    path, out = tmp_path / "c.jsonl", tmp_path / "out"
    path.write_bytes(corpus.read_bytes() + b'{"text": "the end"\n')
    failed = run("mask", path, "-o", out, *OPTIONS)
    assert failed.exit_code == 1 and "invalid JSON" in failed.output, failed.output
    assert len(shard_files(out)) >= 4  # the stopped run's completed shards, kept for --resume
    rewrite_with_its_time_set_back(path)
    data = path.read_bytes()
    fixed = data.replace(b'{"text": "the end"\n', b'{"text":"the end"}\n')
    assert len(fixed) == len(data)
    stat = path.stat()
    path.write_bytes(fixed)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    resumed = run("mask", path, "-o", out, *OPTIONS, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert tree_bytes(out) == reference_of(path, tmp_path)


@pytest.mark.parametrize("rewritten", [True, False], ids=["rewritten", "chmod-only"])
def test_a_task_resumed_over_a_finalized_output_whose_input_was_seen_otherwise_unfinishes_it(
    tmp_path: Path, corpus: Path, rewritten: bool
) -> None:
    """A finalized split run, then its input rewritten with its time set back (or only chmod-ed), then one task run
    again: it redoes its shards, so the finished files go (a task may not set the whole output aside). Rewritten,
    the task fails on the hashes and no finished-looking output mixes the two files; chmod-ed, finalize gives
    the output back as it was."""
    path, out = tmp_path / "c.jsonl", tmp_path / "out"
    path.write_bytes(corpus.read_bytes())
    for index in (0, 1):
        assert task(path, out, index).exit_code == 0
    assert run("finalize", out).exit_code == 0
    finished = tree_bytes(out)
    if rewritten:
        rewrite_with_its_time_set_back(path)
    else:
        path.chmod(0o600)
    again = task(path, out, 0, "--resume")
    assert not (out / "state.json").exists() and not (out / "goldfish_manifest.json").exists()
    if rewritten:
        assert error_line(again).startswith(f"Error: {path}: the file is not the one the completed shards were made from")
        assert error_line(run("verify", out)).startswith("Error: ")
        for index in (0, 1):
            assert task(path, out, index, "--overwrite").exit_code == 0
        assert run("finalize", out).exit_code == 0
        assert tree_bytes(out) == reference_of(path, tmp_path) != finished
    else:
        assert again.exit_code == 0, again.output
        assert run("finalize", out).exit_code == 0
        assert tree_bytes(out) == finished


def test_a_resume_over_untouched_inputs_keeps_every_finished_shard(tmp_path: Path, corpus: Path, single: dict[str, bytes]) -> None:
    """The inode change time and inode number are in what a record saw, and neither moves when nothing touches the
    file: a task run again and a plain ``--resume`` of a finished output rewrite no shard."""
    out = tmp_path / "out"
    for index in (0, 1):
        assert task(corpus, out, index).exit_code == 0
    split = shard_files(out)
    again = task(corpus, out, 0, "--resume")
    assert again.exit_code == 0, again.output
    assert run("finalize", out).exit_code == 0
    assert shard_files(out) == split and tree_bytes(out) == single
    resumed = run("mask", corpus, "-o", out, *OPTIONS, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert shard_files(out) == split and tree_bytes(out) == single


def test_a_plain_resume_of_a_finished_output_after_a_chmod_redoes_it_whole_and_identical(tmp_path: Path, corpus: Path) -> None:
    """A plain run sets the finished output aside while it redoes the shards (the hashes are compared only at the
    end; test_faults_lock.py has it put back when they differ): here they agree and the output is as it was."""
    path, out = tmp_path / "c.jsonl", tmp_path / "out"
    shutil.copy2(corpus, path)
    assert run("mask", path, "-o", out, *OPTIONS).exit_code == 0
    finished, before = tree_bytes(out), shard_files(out)
    path.chmod(0o600)
    resumed = run("mask", path, "-o", out, *OPTIONS, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert tree_bytes(out) == finished and not (out / ".goldfish" / "replaced").exists()
    assert all(shard_files(out)[name] != before[name] for name in before)


@pytest.mark.parametrize("time", ["set-back", "later"])
def test_a_plain_resume_of_a_finished_output_over_a_rewritten_input_fails_and_puts_it_back(tmp_path: Path, corpus: Path, time: str) -> None:
    """The same size, other bytes: the redone shards' bytes meet the finished run's hashes only at the end, and
    the run fails there. Before, with a later modification time, the finished output's shards were already
    replaced under its old manifest (verify failed); now it is set aside first and put back whole."""
    path, out = tmp_path / "c.jsonl", tmp_path / "out"
    path.write_bytes(corpus.read_bytes())
    assert run("mask", path, "-o", out, *OPTIONS).exit_code == 0
    finished = tree_bytes(out)
    rewrite_with_its_time_set_back(path)
    if time == "later":
        later = path.stat().st_mtime_ns + 2_000_000_000
        os.utime(path, ns=(later, later))
    line = error_line(run("mask", path, "-o", out, *OPTIONS, "--resume"))
    assert line.startswith(f"Error: {path}: the file is not the one the completed shards were made from"), line
    assert tree_bytes(out) == finished
    verified = run("verify", out)
    assert verified.exit_code == 0, verified.output


@pytest.mark.parametrize("change", ["chmod", "restored-copy", "moved-away-and-back"])
def test_a_change_of_metadata_alone_between_tasks_redoes_shards_and_the_output_is_the_same(
    tmp_path: Path, corpus: Path, change: str
) -> None:
    """What moves the inode change time or the inode without touching the bytes (a chmod, a copy restored from a
    backup with its times) makes a task redo its shards: never a refusal, and the output is the one a single run
    writes. A folder renamed away and back on one file system leaves its files' inodes as they were: kept."""
    path, out = tmp_path / "corpus" / "c.jsonl", tmp_path / "out"
    path.parent.mkdir()
    shutil.copy2(corpus, path)
    for index in (0, 1):
        assert task(path, out, index).exit_code == 0
    before = shard_files(out)
    if change == "chmod":
        path.chmod(0o600)
    elif change == "restored-copy":
        backup = tmp_path / "backup.jsonl"
        shutil.copy2(path, backup)
        path.unlink()
        shutil.copy2(backup, path)  # same bytes and times, another inode
    else:
        (tmp_path / "corpus").rename(tmp_path / "elsewhere")
        (tmp_path / "elsewhere").rename(tmp_path / "corpus")
    again = task(path, out, 0, "--resume")
    assert again.exit_code == 0, again.output
    assert run("finalize", out).exit_code == 0
    assert tree_bytes(out) == reference_of(path, tmp_path)
    after = shard_files(out)
    task_0 = [name for name in after if int(name[5:10]) % 2 == 0]
    redone = [name for name in task_0 if after[name] != before[name]]
    assert redone == ([] if change == "moved-away-and-back" else task_0)
    assert all(after[name] == before[name] for name in after if name not in task_0)  # task 1's, untouched
