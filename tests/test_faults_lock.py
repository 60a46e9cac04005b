"""One writer per output folder, and check before you delete: real processes, real locks, real read-only mounts.

Two ``mask`` runs on one folder, a lock left by a SIGKILLed run, ``--num-tasks``
tasks side by side with ``finalize`` refused meanwhile, and ``--resume`` /
``--overwrite`` onto a finished output that cannot be written (a read-only
mount, a read-only ``.goldfish/``) or whose input changed in place. Each test
asserts the exit status, the exact line, what is left on disk and that the
finished output still verifies (or that the run ends with the bytes of an
uninterrupted one).

Root ignores file permissions, so read-only cases use real read-only mounts
(a tmpfs remounted read-only, a bind mount remounted read-only), which need
root; the tests skip with the reason elsewhere.
"""

from __future__ import annotations

import errno
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from goldfish_prep.format import lock as lock_module
from goldfish_prep.format.folder import open_folder
from goldfish_prep.format.lock import FileLock, Holder, LockHeldError, process_start
from tests.faults_support import SHARD_SIZE, corpus, goldfish, killer, output_bytes, reference, start, wait_for_first_shard, write_corpus

__all__ = ["corpus", "killer", "reference"]  # the shared fixtures (tests/faults_support.py)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="flock, /proc and mounts as on Linux")

REMOVE_HINT = "(if it died on another machine, or this file system has no flock, remove {lock} and rerun)"
CANNOT_WRITE = (
    "Error: cannot write to output folder {folder} (Read-only file system); nothing in it was changed. "
    "Make it writable, or choose a writable location with -o"
)


def holder_of(run: subprocess.Popen[str], *args: object) -> str:
    """How the refusal names process ``run`` started as ``goldfish-prep mask ARGS -q`` (see ``start``)."""
    started = process_start(run.pid)
    assert started is not None
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started))
    command = shlex.join(["goldfish-prep", "mask", *(str(a) for a in args), "-q"])
    return f"pid {run.pid} on {socket.gethostname()}, started {when}: {command}"


def refusal(folder: Path, lock: str, holder: str) -> str:
    hint = REMOVE_HINT.format(lock=folder / ".goldfish" / lock)
    return f"Error: output folder {folder} is being written by another run ({holder}); wait for it to end {hint}"


def everything(folder: Path) -> dict[str, bytes]:
    """Every file of the folder, the progress folder included (lock files aside: they are emptied, not removed)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix != ".lock"}


# ----------------------------------------------------------------------------- one writer per folder


def test_a_second_mask_refuses_at_once_naming_the_holder_and_the_first_finishes(
    corpus: Path, reference: dict[str, bytes], tmp_path: Path, killer: list[int]
) -> None:
    folder = tmp_path / "out"
    args = (corpus, "-o", folder, "--shard-size", SHARD_SIZE)
    first = start(*args)
    killer.append(first.pid)
    wait_for_first_shard(folder, first)
    os.killpg(first.pid, signal.SIGSTOP)  # held still, lock and all, while the others try: no race with its end
    for option in ("--overwrite", "--resume"):
        second = goldfish("mask", *args, "-q", option)
        assert second.returncode == 1
        assert second.stderr.splitlines() == [refusal(folder, "writer.lock", holder_of(first, *args))]
    reader = goldfish("verify", folder)
    assert reader.returncode == 1
    assert reader.stderr.splitlines()[-1] == (
        f"Error: {folder}: a run is writing this folder ({holder_of(first, *args)}), so it is not complete. "
        f"Wait for that run to end (if it is dead, remove {folder / '.goldfish' / 'writer.lock'})"
    )
    os.killpg(first.pid, signal.SIGCONT)
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert output_bytes(folder) == reference
    assert goldfish("verify", folder).returncode == 0
    assert (folder / ".goldfish" / "writer.lock").read_bytes() == b""  # released: emptied


def test_a_lock_left_by_a_sigkilled_run_is_taken_over_and_resume_is_byte_identical(
    corpus: Path, reference: dict[str, bytes], tmp_path: Path, killer: list[int]
) -> None:
    folder = tmp_path / "out"
    args = (corpus, "-o", folder, "--shard-size", SHARD_SIZE)
    run = start(*args, "--num-proc", 2)
    killer.append(run.pid)
    wait_for_first_shard(folder, run)
    holder = holder_of(run, *args, "--num-proc", 2)
    os.killpg(run.pid, signal.SIGKILL)  # the whole group: no worker keeps the lock's file open
    run.communicate(timeout=30)
    lock = folder / ".goldfish" / "writer.lock"
    left = Holder.parse(lock.read_bytes())
    assert left is not None and left.pid == run.pid and left.is_dead()
    resumed = goldfish("mask", *args, "--resume")  # not -q: the note is printed where mask's other notes are
    assert resumed.returncode == 0, resumed.stderr
    assert f"note: took over {lock}, left by {holder}, which ended without releasing it" in resumed.stderr.splitlines()
    assert output_bytes(folder) == reference
    assert goldfish("verify", folder).returncode == 0


def test_tasks_write_side_by_side_and_finalize_or_a_second_copy_of_a_task_refuses(
    corpus: Path, reference: dict[str, bytes], tmp_path: Path, killer: list[int]
) -> None:
    folder = tmp_path / "out"
    common = (corpus, "-o", folder, "--shard-size", SHARD_SIZE, "--num-tasks", 2)
    tasks = [start(*common, "--task-index", index) for index in (0, 1)]
    killer.extend(task.pid for task in tasks)
    deadline = time.monotonic() + 120
    while not all((folder / ".goldfish" / f"shard-0000{i}.json").exists() for i in (0, 1)):  # each task's first shard
        assert all(task.poll() is None for task in tasks), [task.communicate() for task in tasks]
        assert time.monotonic() < deadline
        time.sleep(0.005)
    for task in tasks:  # both hold their locks at once: neither waited for the other
        os.killpg(task.pid, signal.SIGSTOP)
    finalize = goldfish("finalize", folder)
    assert finalize.returncode == 1
    assert finalize.stderr.splitlines() == [refusal(folder, "task-00000-of-00002.lock", holder_of(tasks[0], *common, "--task-index", 0))]
    again = goldfish("mask", *common, "--task-index", 1, "-q", "--resume")
    assert again.returncode == 1
    assert again.stderr.splitlines() == [refusal(folder, "task-00001-of-00002.lock", holder_of(tasks[1], *common, "--task-index", 1))]
    plain = goldfish("mask", corpus, "-o", folder, "--shard-size", SHARD_SIZE, "-q", "--overwrite")
    assert plain.returncode == 1 and plain.stderr.startswith(f"Error: output folder {folder} is being written by another run (pid ")
    for task in tasks:
        os.killpg(task.pid, signal.SIGCONT)
    for task in tasks:
        _, stderr = task.communicate(timeout=300)
        assert task.returncode == 0, stderr
    assert goldfish("finalize", folder).returncode == 0
    assert output_bytes(folder) == reference
    assert goldfish("verify", folder).returncode == 0


def test_a_ray_driver_s_locks_refuse_a_plain_run_and_finalize_but_not_its_tasks(small: Path, tmp_path: Path) -> None:
    """The driver's two holds (``ray_backend``), taken here without Ray: its tasks' locks are all it lets through."""
    from goldfish_prep.format.local_folder import LocalFolder
    from goldfish_prep.format.lock import RAY_DRIVER_LOCK, WRITER_LOCK

    folder = tmp_path / "out"
    driver = LocalFolder(folder)
    with driver.holding(RAY_DRIVER_LOCK), driver.holding(WRITER_LOCK, shared=True):
        me = Holder.me().describe()
        plain = goldfish("mask", small, "-o", folder, "--shard-size", SHARD_SIZE, "-q", "--overwrite")
        assert plain.returncode == 1
        assert plain.stderr.splitlines() == [refusal(folder, "ray-driver.lock", me)]
        task = goldfish("mask", small, "-o", folder, "--shard-size", SHARD_SIZE, "-q", "--num-tasks", 1, "--task-index", 0)
        assert task.returncode == 1  # one task of one is a plain run
        for index in (0, 1):
            task = goldfish("mask", small, "-o", folder, "--shard-size", SHARD_SIZE, "-q", "--num-tasks", 2, "--task-index", index)
            assert task.returncode == 0, task.stderr
        finalize = goldfish("finalize", folder)  # the driver lets go of writer.lock first
        assert finalize.returncode == 1 and finalize.stderr.startswith(f"Error: output folder {folder} is being written")
    assert goldfish("finalize", folder).returncode == 0
    assert goldfish("verify", folder).returncode == 0


def test_the_takeover_note_follows_quiet_as_other_notes_do(small: Path, tmp_path: Path) -> None:
    """A lock file still naming a dead run: taken over by both runs; only the one without -q says so."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    left = Holder(socket.gethostname(), gone.pid, time.time() - 60, "goldfish-prep mask gone.jsonl -o out")
    for quiet in (True, False):
        folder = tmp_path / ("quiet" if quiet else "loud")
        (folder / ".goldfish").mkdir(parents=True)
        (folder / ".goldfish" / "writer.lock").write_bytes(left.to_bytes())
        run = goldfish("mask", small, "-o", folder, "--shard-size", SHARD_SIZE, *(["-q"] if quiet else []))
        assert run.returncode == 0, run.stderr
        note = f"note: took over {folder / '.goldfish' / 'writer.lock'}, left by {left.describe()}, which ended without releasing it"
        assert (note in run.stderr.splitlines()) is not quiet, run.stderr
        assert ("note:" in run.stderr) is not quiet


def test_a_lock_whose_pid_was_reused_or_is_gone_is_dead_and_one_on_another_host_is_not() -> None:
    me = Holder.me()
    assert not me.is_dead()
    assert Holder(me.host, me.pid, me.started - 3600, me.command).is_dead()  # same pid, another process
    assert Holder(me.host, 2**22 + 1, me.started, me.command).is_dead()  # above pid_max: no such process
    assert not Holder("another-host", 2**22 + 1, me.started, me.command).is_dead()


def test_without_flock_the_lock_is_its_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lustre mounted noflock: flock fails with ENOLCK, and the holder written in the file is the lock."""

    def no_flock(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock_module.fcntl, "flock", no_flock)
    path = tmp_path / "writer.lock"
    path.write_bytes(Holder(socket.gethostname(), 2**22 + 1, 0.0, "goldfish-prep mask a -o b").to_bytes())  # dead
    first = FileLock(path)
    first.acquire()
    assert first.taken_over is not None and first.taken_over.pid == 2**22 + 1
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = process_start(sleeper.pid)
        assert started is not None
        path.write_bytes(Holder(socket.gethostname(), sleeper.pid, started, "goldfish-prep mask").to_bytes())
        with pytest.raises(LockHeldError) as caught:
            FileLock(path).acquire()
        assert caught.value.holder is not None and caught.value.holder.pid == sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait()
    FileLock(path).acquire()  # the holder is gone now


def test_an_object_store_lock_is_created_once() -> None:
    pytest.importorskip("fsspec")
    folder = open_folder("memory://goldfish-lock-test/out")
    with folder.writing():
        with pytest.raises(Exception, match="is being written by another run \\(pid "):
            with folder.writing():
                pass
        assert folder.writer() is not None
    assert folder.writer() is None
    with folder.writing():
        pass


# ----------------------------------------------------------------------------- check before you delete


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here ({done.stderr.strip()}): read-only cases need root and mount")


@pytest.fixture()
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("small") / "corpus.jsonl"
    write_corpus(path, 0.5)
    return path


@pytest.fixture()
def mounts() -> Iterator[list[Path]]:
    if os.geteuid() != 0:
        pytest.skip("read-only mounts need root (and root ignores file permissions, so a 555 folder proves nothing)")
    mounted: list[Path] = []
    yield mounted
    for point in reversed(mounted):
        subprocess.run(["umount", str(point)], check=False)


@pytest.mark.parametrize("option", ["--resume", "--overwrite"])
def test_a_finished_output_on_a_read_only_mount_is_refused_and_kept(small: Path, tmp_path: Path, mounts: list[Path], option: str) -> None:
    point = tmp_path / "mount"
    point.mkdir()
    _mount("-t", "tmpfs", "-o", "size=64m", "tmpfs", str(point))
    mounts.append(point)
    folder = point / "out"
    assert goldfish("mask", small, "-o", folder, "--shard-size", SHARD_SIZE, "-q").returncode == 0
    before = everything(folder)
    _mount("-o", "remount,ro", str(point))
    run = goldfish("mask", small, "-o", folder, "--shard-size", SHARD_SIZE, "-q", option)
    assert run.returncode == 1
    assert run.stderr.splitlines() == [CANNOT_WRITE.format(folder=folder)]
    assert everything(folder) == before
    assert goldfish("verify", folder).returncode == 0


@pytest.mark.parametrize("option", ["--resume", "--overwrite"])
def test_a_read_only_progress_folder_removes_nothing(small: Path, tmp_path: Path, mounts: list[Path], option: str) -> None:
    """Before: --resume deleted the manifest, state.json and dataset_info.json, then failed with '(None)'."""
    folder = tmp_path / "out"
    assert goldfish("mask", small, "-o", folder, "--shard-size", SHARD_SIZE, "-q").returncode == 0
    before = everything(folder)
    progress = folder / ".goldfish"
    _mount("--bind", str(progress), str(progress))
    mounts.append(progress)
    _mount("-o", "remount,bind,ro", str(progress))
    run = goldfish("mask", small, "-o", folder, "--shard-size", SHARD_SIZE, "-q", option)
    assert run.returncode == 1
    assert run.stderr.splitlines() == [CANNOT_WRITE.format(folder=folder)]
    assert everything(folder) == before
    assert goldfish("verify", folder).returncode == 0


def test_a_resume_whose_input_changed_in_place_keeps_the_finished_output(small: Path, tmp_path: Path) -> None:
    """The input is rewritten to the same size with its time set back: only the hash tells, at the end of the
    read. Before, the manifest, state.json and dataset_info.json were gone by then."""
    corpus, folder = tmp_path / "corpus.jsonl", tmp_path / "out"
    corpus.write_bytes(small.read_bytes())
    assert goldfish("mask", corpus, "-o", folder, "--shard-size", SHARD_SIZE, "-q").returncode == 0
    before = output_bytes(folder)
    stat = corpus.stat()
    data = bytearray(corpus.read_bytes())
    at = data.rindex(b"document ")
    data[at : at + 9] = b"DOCUMENT "
    corpus.write_bytes(bytes(data))
    os.utime(corpus, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    run = goldfish("mask", corpus, "-o", folder, "--shard-size", SHARD_SIZE, "-q", "--resume")
    assert run.returncode == 1
    assert run.stderr.splitlines()[-1] == (
        f"Error: {corpus}: the file is not the one the completed shards were made from (its xxh3-128 differs from the "
        "one the resumed run recorded). Rerun with --overwrite to start again from the file as it is now"
    )
    assert output_bytes(folder) == before
    assert goldfish("verify", folder).returncode == 0


def test_an_overwrite_that_fails_puts_the_finished_output_back(small: Path, tmp_path: Path) -> None:
    """The replacing run writes most of its shards, then meets a bad record in the last one."""
    bad, folder = tmp_path / "bad.jsonl", tmp_path / "out"
    bad.write_bytes(small.read_bytes() + b"not json\n")
    assert goldfish("mask", small, "-o", folder, "--shard-size", SHARD_SIZE, "-q").returncode == 0
    before = everything(folder)
    lines = len(small.read_bytes().splitlines()) + 1
    run = goldfish("mask", bad, "-o", folder, "--shard-size", SHARD_SIZE, "-q", "--overwrite")
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        f"note: the run failed, so the finished output it was replacing is back in {folder}",
        f"Error: {bad} line {lines}: invalid JSON: Expecting value: column 1. Each line must be one complete JSON "
        "object, or pass --on-error skip to skip and count bad records",
    ]
    assert everything(folder) == before
    assert goldfish("verify", folder).returncode == 0


def test_an_overwrite_stopped_keeps_its_shards_for_resume_and_the_old_output_until_it_commits(
    corpus: Path, reference: dict[str, bytes], tmp_path: Path, killer: list[int]
) -> None:
    folder, progress = tmp_path / "out", tmp_path / "out" / ".goldfish"
    assert goldfish("mask", corpus, "-o", folder, "--shard-size", "48KB", "-q").returncode == 0
    old = everything(folder)
    run = start(corpus, "-o", folder, "--shard-size", SHARD_SIZE, "--overwrite")
    killer.append(run.pid)
    deadline = time.monotonic() + 120
    # the old run.json is moved aside first, and the new one written once the whole old output is aside
    while not ((progress / "replaced" / ".goldfish" / "run.json").exists() and (progress / "shard-00000.json").exists()):
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.002)
    os.kill(run.pid, signal.SIGTERM)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 128 + signal.SIGTERM, stderr
    kept = {name.removeprefix(".goldfish/replaced/"): data for name, data in everything(folder).items() if "replaced/" in name}
    assert kept == old  # the finished output it was replacing, whole, until the new run commits
    resumed = goldfish("mask", corpus, "-o", folder, "--shard-size", SHARD_SIZE, "-q", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert output_bytes(folder) == reference
    assert not (progress / "replaced").exists()
    assert goldfish("verify", folder).returncode == 0
