"""The worker pool: input order, a bounded read-ahead, both start methods, and workers that fail or die.

The pool is what ``mask --num-proc`` and ``verify --num-proc`` run on. A map
that hangs when a worker is killed (the out-of-memory killer does that on big
jobs) would lose the run without a word, so that case runs in a child process
with a timeout: a hang fails the test instead of the suite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from goldfish_prep.errors import WorkerError
from goldfish_prep.pipeline.pool import READ_AHEAD, WorkerPool, ordered_map, safe_start_method

METHODS = ["fork", "spawn"] if sys.platform == "linux" else ["spawn"]


def slow_square(value: int, delay: float) -> tuple[int, int]:
    """Later tasks finish first (shorter sleeps), so only the pool can put results back in order."""
    time.sleep(delay * (10 - value % 10))
    return value * value, os.getpid()


def fail_on_seven(value: int, _: object) -> int:
    if value == 7:
        raise ValueError(f"seven is not allowed ({value})")
    return value


def kill_self_on_three(value: int, _: object) -> int:
    if value == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return value


def record_warm_up(path: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(f"{os.getpid()}\n")


@pytest.mark.parametrize("method", METHODS)
def test_results_come_back_in_input_order_from_every_worker(method: str) -> None:
    with WorkerPool(3, start_method=method) as pool:
        results = list(pool.ordered_map(slow_square, ((i, i) for i in range(30)), 0.002))
    assert [meta for meta, _ in results] == list(range(30))
    assert [square for _, (square, _) in results] == [i * i for i in range(30)]
    assert len({pid for _, (_, pid) in results}) == 3
    assert os.getpid() not in {pid for _, (_, pid) in results}


def test_one_process_runs_tasks_here() -> None:
    with WorkerPool(1) as pool:
        assert [pid for _, (_, pid) in pool.ordered_map(slow_square, [(0, 1)], 0.0)] == [os.getpid()]


def test_the_input_is_read_a_bounded_number_of_tasks_ahead() -> None:
    """Memory stays flat: the pool never drains the input the way ``Pool.imap`` does."""
    consumed = 0

    def tasks() -> Iterator[tuple[int, int]]:
        nonlocal consumed
        for i in range(100):
            consumed += 1
            yield i, i

    with WorkerPool(2) as pool:
        for meta, _ in pool.ordered_map(slow_square, tasks(), 0.0):
            assert consumed <= meta + READ_AHEAD * 2


def wait_for_flag(value: int, flag: str) -> bool:
    """Task 0 waits (up to 30 s) for the flag that task 5 raises; every other task raises nothing."""
    if value == 5:
        open(flag, "w").close()
    if value != 0:
        return True
    deadline = time.monotonic() + 30
    while not os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.path.exists(flag)


def test_a_long_task_does_not_hold_up_the_other_workers(tmp_path: object) -> None:
    """Task 5 can only run while task 0 is still running on the other worker.

    A pool that reads results strictly in order sends task 5 only after task 0
    is done, so task 0 would time out: that pool idles a worker behind every long document.
    """
    flag = os.path.join(str(tmp_path), "flag")
    with WorkerPool(2) as pool:
        results = list(pool.ordered_map(wait_for_flag, ((i, i) for i in range(12)), flag))
    assert results == [(i, True) for i in range(12)]


@pytest.mark.parametrize("method", METHODS)
def test_warm_up_runs_once_in_each_worker(tmp_path: object, method: str) -> None:
    log = os.path.join(str(tmp_path), "warm.txt")
    with WorkerPool(2, warm_up=record_warm_up, argument=log, start_method=method) as pool:
        pids = {pid for _, (_, pid) in pool.ordered_map(slow_square, ((i, i) for i in range(8)), 0.001)}
    with open(log, encoding="utf-8") as handle:
        warmed = [int(line) for line in handle]
    assert sorted(warmed) == sorted(pids) and len(warmed) == 2


def test_a_failing_warm_up_is_left_to_the_task_that_fails_the_same_way() -> None:
    with WorkerPool(2, warm_up=fail_on_seven, argument=7) as pool:
        assert [r for _, r in pool.ordered_map(fail_on_seven, [(1, 1), (2, 2)], None)] == [1, 2]


def test_an_exception_in_a_task_is_raised_in_the_parent() -> None:
    with pytest.raises(ValueError, match=r"seven is not allowed \(7\)"):
        list(ordered_map(fail_on_seven, ((i, i) for i in range(12)), None, 2))


def test_a_killed_worker_ends_the_map_with_an_error_not_a_hang() -> None:
    """Ten times over: whether the pool learns of the death by reading the worker's pipe or by
    sending it the next task (a race that a single run loses about one time in eight), the
    results before the lost task still arrive, in order, and then the error."""
    script = textwrap.dedent(
        """
        from goldfish_prep.errors import WorkerError
        from tests.test_parallel import kill_self_on_three
        from goldfish_prep.pipeline.pool import ordered_map
        for attempt in range(10):
            got = []
            try:
                for meta, value in ordered_map(kill_self_on_three, ((i, i) for i in range(10)), None, 2):
                    got.append(value)
            except WorkerError as exc:
                print("got", got)
                print(exc)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=os.path.dirname(os.path.dirname(__file__))
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("got [0, 1, 2]\n") == 10, run.stdout  # every result before the lost task, in order
    assert (
        "died before returning its result: it was killed by signal 9 (SIGKILL), most often the kernel's out-of-memory killer" in run.stdout
    )
    assert "then rerun (for mask, add --resume" in run.stdout


def test_the_error_names_a_worker_that_exited() -> None:
    assert issubclass(WorkerError, RuntimeError)
    with WorkerPool(2) as pool:
        worker = pool._workers[0]
        worker.process.kill()  # workers ignore SIGTERM, SIGHUP and SIGINT: those are for the parent
        worker.process.join()
        with pytest.raises(WorkerError, match=r"worker process 1 \(pid \d+\) died .* killed by signal 9 \(SIGKILL\)"):
            list(pool.ordered_map(fail_on_seven, ((i, i) for i in range(4)), None))


def test_workers_fork_only_from_a_single_threaded_process_on_linux() -> None:
    script = textwrap.dedent(
        """
        import threading, time
        from goldfish_prep.pipeline.pool import safe_start_method
        alone = safe_start_method()
        threading.Thread(target=time.sleep, args=(2,), daemon=True).start()
        print(alone, safe_start_method())
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    expected = "fork spawn" if sys.platform == "linux" else "spawn spawn"
    assert run.stdout.split() == expected.split()
    assert safe_start_method() in ("fork", "spawn")
