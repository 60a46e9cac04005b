"""Trust under faults, with real processes, real signals and a real file system.

Each test provokes what a hostile environment does to a run (a file still being
written, a scheduler's SIGTERM, SIGHUP or SIGKILL, a pipe or a device given as
input) and asserts the exit status, the exact ``Error:`` line, what is left on
disk, and that ``--resume`` then ends with the bytes of an uninterrupted run.

Runs are started as ``python -m goldfish_prep_cli`` and watched through the
output folder: a test acts once the first shard is complete, and the corpus
makes hundreds of shards more, so the run is still going when it acts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from goldfish_prep.errors import InputError
from goldfish_prep.readers import InputSnapshot, InputSource, ReaderOptions, iter_records
from tests.faults_support import (
    ROOT,
    SHARD_SIZE,
    alive,
    corpus,
    goldfish,
    killer,
    output_bytes,
    reference,
    start,
    wait_for_first_shard,
    write_corpus,
)

__all__ = ["corpus", "killer", "reference"]  # the shared fixtures (tests/faults_support.py)

FIX = "Copy it and mask the copy, or wait until it is complete; then rerun with --overwrite"
RESUME_LINE = "completed shards are kept, rerun with --resume to continue"

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="signals, /proc and mkfifo as on Linux")


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def wait_until_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def start_with_workers(corpus: Path, folder: Path, killer: list[int]) -> tuple[subprocess.Popen[str], list[int]]:
    """A ``--num-proc 2`` run past its first shard, and its workers' pids (all left to ``killer``)."""
    run = start(corpus, "-o", folder, "--shard-size", SHARD_SIZE, "--num-proc", "2")
    killer.append(run.pid)
    wait_for_first_shard(folder, run)
    workers = children_of(run.pid)
    killer.extend(workers)
    assert len(workers) >= 2
    return run, workers


# ----------------------------------------------------------------------------- inputs are snapshots


def test_a_file_appended_to_while_it_is_read_fails_the_run(tmp_path: Path) -> None:
    """Deterministic: the file grows between two records, as a file still being written does."""
    path = tmp_path / "growing.jsonl"
    path.write_text('{"text": "one"}\n{"text": "two"}\n', encoding="utf-8")
    snapshot = InputSnapshot(InputSource(str(path), "jsonl"))
    records = iter_records([snapshot.source], ReaderOptions(), snapshots=[snapshot])
    assert next(records).text == "one"  # type: ignore[union-attr]
    with path.open("a", encoding="utf-8") as out:
        out.write('{"text": "three"}\n')
    with pytest.raises(InputError) as caught:
        list(records)
    assert caught.value.reason == "input-changed"
    assert str(caught.value) == (
        f"{path}: the file changed while mask read it (32 bytes at the start of the run, 50 now), so the output would not match it. {FIX}"
    )


def test_a_file_rewritten_to_the_same_size_fails_the_run(tmp_path: Path) -> None:
    path = tmp_path / "rewritten.jsonl"
    path.write_text('{"text": "one"}\n', encoding="utf-8")
    snapshot = InputSnapshot(InputSource(str(path), "jsonl"))
    path.write_text('{"text": "two"}\n', encoding="utf-8")
    later = snapshot.before[str(path)].mtime_ns + 1_000_000_000
    os.utime(path, ns=(later, later))  # as a writer a second later would leave it
    with pytest.raises(InputError, match=r"\(same size, but modified after the start of the run\)"):
        list(iter_records([snapshot.source], ReaderOptions(), snapshots=[snapshot]))


def test_the_recorded_hash_is_that_of_the_bytes_parsed_also_when_reading_stops_early(tmp_path: Path) -> None:
    """A reader that stops at a syntax error leaves bytes unread: they are hashed all the same."""
    import xxhash

    path = tmp_path / "broken.json"
    data = b'[{"text": "a"}, {"text": oops}, {"text": "c"}]\n'
    path.write_bytes(data)
    snapshot = InputSnapshot(InputSource(str(path), "json-array"))
    items = list(iter_records([snapshot.source], ReaderOptions(), snapshots=[snapshot]))
    assert isinstance(items[-1], InputError)
    assert snapshot.result() == {"path": str(path), "kind": "json-array", "size": len(data), "xxh3_128": xxhash.xxh3_128_hexdigest(data)}


@pytest.mark.parametrize("name", ["plain.jsonl", "packed.jsonl.gz", "packed.jsonl.zst", "array.json", "book.txt", "table.parquet"])
def test_the_one_pass_hash_is_the_hash_of_the_whole_file(tmp_path: Path, name: str) -> None:
    """Compressed files are hashed as stored (their raw bytes), as the manifest always recorded them."""
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq
    import xxhash

    lines = [json.dumps({"text": f"document {i} " * 40}) for i in range(300)]
    path = tmp_path / name
    data = ("\n".join(lines) + "\n").encode()
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(data))
    elif name.endswith(".zst"):
        with pa.CompressedOutputStream(str(path), "zstd") as out:
            out.write(data)
    elif name.endswith(".json"):
        path.write_text("[" + ",".join(lines) + "]", encoding="utf-8")
    elif name.endswith(".parquet"):
        pq.write_table(pa.table({"text": [json.loads(line)["text"] for line in lines]}), path, row_group_size=50)
    else:
        path.write_bytes(data)
    kind = {"txt": "text", "json": "json-array", "parquet": "parquet"}.get(name.rsplit(".", 1)[-1], "jsonl")
    snapshot = InputSnapshot(InputSource(str(path), kind))
    assert sum(1 for _ in iter_records([snapshot.source], ReaderOptions(), snapshots=[snapshot])) >= 1
    stored = path.read_bytes()
    assert snapshot.result() == {"path": str(path), "kind": kind, "size": len(stored), "xxh3_128": xxhash.xxh3_128_hexdigest(stored)}


def _bytes_read() -> int:
    """Bytes this process has read through read(2) and its kin so far (``rchar``; page faults on a mapping are not
    counted, which is the point: a mapped file is read once, by the hash, and parsed from the same pages)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.mark.parametrize("kind", ["parquet", "arrow", "hf-disk"])
def test_a_columnar_input_is_read_once_and_its_hash_is_that_of_the_bytes_parsed(tmp_path: Path, kind: str) -> None:
    """Arrow and save_to_disk inputs: the snapshot maps and hashes the files, the reader parses those maps;
    Parquet: pyarrow reads through a file that hashes in order what it reads (skipped columns included).
    Before, each file was read whole to hash it, then again by pyarrow (Parquet: twice its size in rchar)."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"text": [f"document {i} " + "words of a licence " * 70 for i in range(3000)]})  # about 4 MB
    path = tmp_path / {"parquet": "t.parquet", "arrow": "t.arrow", "hf-disk": "saved"}[kind]
    if kind == "parquet":  # two columns: the one not read is hashed all the same
        table = table.append_column("other", pa.array([str(i) * 300 for i in range(len(table))]))
        pq.write_table(table, path, compression="none", row_group_size=500)
    elif kind == "arrow":
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    else:
        datasets.Dataset(table).save_to_disk(str(path), num_shards=3)
    size = sum(f.stat().st_size for f in ([path] if path.is_file() else path.iterdir()))
    assert size > 3_000_000
    snapshot = InputSnapshot(InputSource(str(path), kind))
    before = _bytes_read()
    texts = [item.text for item in iter_records([snapshot.source], ReaderOptions(), snapshots=[snapshot])]
    read = _bytes_read() - before
    assert texts == table.column("text").to_pylist()
    limit = size * 1.1 if kind == "parquet" else size / 4  # Parquet: read once (the small footer twice); Arrow: mapped
    assert read < limit, f"{read:,} bytes read for {size:,} bytes of input"
    whole = InputSnapshot(InputSource(str(path), kind))
    whole.hash_whole()  # the sequential read every earlier version hashed: the recorded hash must not change
    assert snapshot.result() == whole.result()
    assert snapshot.result()["size"] == size


def test_a_parquet_input_cut_short_while_it_is_read_fails_in_one_line_not_sigbus(tmp_path: Path) -> None:
    """Why Parquet is not memory-mapped like Arrow: a mapped file truncated in place while pyarrow parses it
    kills the process with SIGBUS. Run in a process of its own, so that a crash is this test's failure, not
    pytest's."""
    script = textwrap.dedent(
        """
        import os, sys
        import pyarrow as pa, pyarrow.parquet as pq
        from goldfish_prep.errors import InputError
        from goldfish_prep.readers import InputSnapshot, InputSource, ReaderOptions, iter_records
        path = sys.argv[1]
        texts = [f"document {i} " + "words " * 200 for i in range(3000)]
        pq.write_table(pa.table({"text": texts}), path, compression="none", row_group_size=500)
        snapshot = InputSnapshot(InputSource(path, "parquet"))
        items = iter_records([snapshot.source], ReaderOptions(), snapshots=[snapshot])
        next(items)
        os.truncate(path, os.path.getsize(path) // 2)
        try:
            list(items)
        except InputError as exc:
            print(exc.reason)
        """
    )
    path = tmp_path / "t.parquet"
    run = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert (run.returncode, run.stdout.strip()) == (0, "input-changed"), run.stderr[-2000:]


def test_mask_fails_on_a_file_appended_to_during_the_run_and_resume_refuses_it(tmp_path: Path, killer: list[int]) -> None:
    path, folder = tmp_path / "growing.jsonl", tmp_path / "out"
    write_corpus(path, 6)
    size = path.stat().st_size
    run = start(path, "-o", folder, "--shard-size", SHARD_SIZE)
    killer.append(run.pid)
    wait_for_first_shard(folder, run)
    with path.open("a", encoding="utf-8") as out:  # the writer goes on while mask reads
        out.write(json.dumps({"text": "a late document"}) + "\n")
    _, stderr = run.communicate(timeout=300)
    grown = path.stat().st_size
    assert run.returncode == 1
    assert stderr.splitlines()[-1] == (
        f"Error: {path}: the file changed while mask read it ({size:,} bytes at the start of the run, {grown:,} now), "
        f"so the output would not match it. {FIX}"
    )
    assert not (folder / "goldfish_manifest.json").exists()
    resumed = goldfish("mask", path, "-o", folder, "--shard-size", SHARD_SIZE, "-q", "--resume")
    assert resumed.returncode == 1
    assert str(size) in resumed.stderr and str(grown) in resumed.stderr and "--overwrite" in resumed.stderr  # names both sizes
    rerun = goldfish("mask", path, "-o", folder, "--shard-size", SHARD_SIZE, "-q", "--overwrite")
    assert rerun.returncode == 0, rerun.stderr
    import xxhash

    recorded = json.loads((folder / "goldfish_manifest.json").read_text(encoding="utf-8"))["inputs"]
    assert recorded == [{"kind": "jsonl", "path": str(path), "size": grown, "xxh3_128": xxhash.xxh3_128_hexdigest(path.read_bytes())}]


def test_resume_of_a_finished_run_over_a_file_changed_in_place_never_exits_0(tmp_path: Path) -> None:
    """Same path, size and modification time, other bytes: caught once the resumed run has read them."""
    path, folder = tmp_path / "corpus.jsonl", tmp_path / "out"
    path.write_text("".join(json.dumps({"text": f"document {i} " * 50}) + "\n" for i in range(200)), encoding="utf-8")
    assert goldfish("mask", path, "-o", folder, "--shard-size", "8KB", "-q").returncode == 0
    before = path.stat()
    path.write_bytes(path.read_bytes().replace(b"document 7 ", b"document 8 "))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    resumed = goldfish("mask", path, "-o", folder, "--shard-size", "8KB", "-q", "--resume")
    assert resumed.returncode == 1
    assert resumed.stderr.splitlines()[-1] == (
        f"Error: {path}: the file is not the one the completed shards were made from (its xxh3-128 differs from the "
        "one the resumed run recorded). Rerun with --overwrite to start again from the file as it is now"
    )
    # the finished output of the file as it was is kept whole (test_faults_lock.py checks it verifies)
    assert (folder / "state.json").exists() and (folder / "goldfish_manifest.json").exists()


# ----------------------------------------------------------------------------- preemption


@pytest.mark.parametrize(
    ("number", "whole_group"),
    [(signal.SIGTERM, True), (signal.SIGHUP, False)],
    ids=["SIGTERM-to-the-job's-process-group", "SIGHUP-to-the-main-process"],
)
def test_a_stop_signal_keeps_completed_shards_and_resume_gives_identical_bytes(
    corpus: Path, reference: dict[str, bytes], tmp_path: Path, killer: list[int], number: int, whole_group: bool
) -> None:
    folder = tmp_path / "out"
    run, workers = start_with_workers(corpus, folder, killer)
    if whole_group:  # Slurm signals every process of the step: workers leave it to the parent
        os.killpg(run.pid, number)
    else:  # Kubernetes signals the container's first process
        os.kill(run.pid, number)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 128 + number
    assert stderr.splitlines() == [f"Error: stopped by {signal.Signals(number).name}; {RESUME_LINE}"]
    assert wait_until_gone(workers, 5) == []
    kept = sorted(p.name for p in folder.glob("data-*.arrow"))
    assert kept and len(kept) < len([name for name in reference if name.startswith("data-")])
    assert {name: (folder / name).read_bytes() for name in kept} == {name: reference[name] for name in kept}
    assert not list(folder.rglob("*.partial")) and not (folder / "goldfish_manifest.json").exists()
    resumed = goldfish("mask", corpus, "-o", folder, "--shard-size", SHARD_SIZE, "-q", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert output_bytes(folder) == reference
    verified = goldfish("verify", folder)
    assert verified.returncode == 0, verified.stderr


def test_workers_exit_by_themselves_when_the_main_process_is_sigkilled(corpus: Path, tmp_path: Path, killer: list[int]) -> None:
    folder = tmp_path / "out"
    run, workers = start_with_workers(corpus, folder, killer)
    os.kill(run.pid, signal.SIGKILL)
    run.communicate(timeout=60)
    assert wait_until_gone(workers, 5) == []


def test_workers_started_by_another_thread_still_exit_with_a_sigkilled_parent(killer: list[int]) -> None:
    """No parent-death signal here (it would fire when the starting thread ends): the pid watch alone."""
    script = textwrap.dedent(
        """
        import threading, time
        from goldfish_prep.pipeline.pool import WorkerPool
        pools = []
        thread = threading.Thread(target=lambda: pools.append(WorkerPool(2, start_method="fork")))
        thread.start(); thread.join()
        print(*(w.process.pid for w in pools[0]._workers), flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    killer.append(parent.pid)
    assert parent.stdout is not None
    workers = [int(pid) for pid in parent.stdout.readline().split()]
    killer.extend(workers)
    assert len(workers) == 2 and all(alive(pid) for pid in workers)
    parent.kill()
    parent.wait(timeout=60)
    assert wait_until_gone(workers, 5) == []


# ----------------------------------------------------------------------------- special files


def test_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "stream.jsonl"
    os.mkfifo(fifo)
    run = goldfish("mask", fifo, "-o", tmp_path / "out", "-q", timeout=60)
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        f"Error: {fifo}: this is a named pipe (FIFO), not a regular file; mask reads inputs from regular files only "
        "(it records their size and hash). Save the data to a file first and mask that file"
    ]
    assert not (tmp_path / "out").exists()


def test_a_device_is_refused_at_once(tmp_path: Path) -> None:
    run = goldfish("mask", "/dev/zero", "--assume-format", "text", "-o", tmp_path / "out", "-q", timeout=60)
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        "Error: /dev/zero: this is a character device, not a regular file; mask reads inputs from regular files only "
        "(it records their size and hash). Save the data to a file first and mask that file"
    ]


@pytest.mark.parametrize("spec", ["folder", "glob"])
def test_a_fifo_inside_a_folder_or_a_glob_is_refused_at_once(tmp_path: Path, spec: str) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.jsonl").write_text('{"text": "hello"}\n', encoding="utf-8")
    os.mkfifo(folder / "b.jsonl")
    run = goldfish("mask", folder if spec == "folder" else f"{folder}/*.jsonl", "-o", tmp_path / "out", "-q", timeout=60)
    assert run.returncode == 1
    assert run.stderr.splitlines()[-1].startswith(f"Error: {folder / 'b.jsonl'}: this is a named pipe (FIFO), not a regular file")
