"""``goldfish-prep`` with its worker pool swapped for ``concurrent.futures.ProcessPoolExecutor``.

Issue 14 asked whether the own pool (``goldfish_prep/pipeline/pool.py`` with the shared-memory
``_channel.py``, about 400 lines) earns its keep against the standard library. ``ExecutorPool``
below is that alternative behind the same interface (``ordered_map`` in input order, at most
``READ_AHEAD`` tasks per worker in flight, ``warm_up`` in each worker, fork where
``safe_start_method`` allows). Run any goldfish-prep command with it, side by side with the
installed one (figures and the paired command in docs/performance.md, "Own pool or
ProcessPoolExecutor")::

    python bench/executor_pool.py mask CORPUS -o OUT -q --num-proc 2
    goldfish-prep mask CORPUS -o OUT -q --num-proc 2

What the executor cannot do as the own pool does, and why the package keeps its own: a worker
that dies breaks the whole executor, so the results still running on the other workers are lost
with it and the error cannot say which worker died or how (tests/test_parallel.py asks for both);
and every task and result is pickled through a pipe.
"""

from __future__ import annotations

import collections
import multiprocessing
import signal
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from types import TracebackType
from typing import Any, TypeVar

from goldfish_prep.errors import WorkerError
from goldfish_prep.pipeline import job
from goldfish_prep.pipeline.pool import READ_AHEAD, safe_start_method

Meta = TypeVar("Meta")
Payload = TypeVar("Payload")
Result = TypeVar("Result")


def _start(warm_up: Callable[[Any], object] | None, argument: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the parent reacts to Ctrl-C
    if warm_up is not None:
        try:
            warm_up(argument)
        except Exception:  # noqa: BLE001 - the same call fails again inside the first task, which reports it
            pass


class ExecutorPool:
    """``num_proc`` workers of a ``ProcessPoolExecutor`` (none for 1: tasks then run in this process)."""

    def __init__(
        self, num_proc: int, warm_up: Callable[[Any], object] | None = None, argument: Any = None, start_method: str | None = None
    ) -> None:
        self.num_proc = num_proc
        self.start_method = start_method or safe_start_method()
        self._executor: ProcessPoolExecutor | None = None
        if num_proc > 1:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r".*fork\(\) may lead to deadlocks", category=DeprecationWarning)
                context = multiprocessing.get_context(self.start_method)
                self._executor = ProcessPoolExecutor(num_proc, mp_context=context, initializer=_start, initargs=(warm_up, argument))

    def __enter__(self) -> ExecutorPool:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def ordered_map(
        self, function: Callable[[Payload, Any], Result], tasks: Iterable[tuple[Meta, Payload]], context: Any
    ) -> Iterator[tuple[Meta, Result]]:
        """Yield ``(meta, function(payload, context))`` in input order, a bounded number of tasks ahead."""
        if self._executor is None:
            for meta, payload in tasks:
                yield meta, function(payload, context)
            return
        pending: collections.deque[tuple[Meta, Future[Result]]] = collections.deque()
        for meta, payload in tasks:
            pending.append((meta, self._executor.submit(function, payload, context)))
            while pending and (len(pending) >= READ_AHEAD * self.num_proc or pending[0][1].done()):
                yield _next(pending)
        while pending:
            yield _next(pending)


def _next(pending: collections.deque[tuple[Meta, Future[Result]]]) -> tuple[Meta, Result]:
    meta, future = pending.popleft()
    try:
        return meta, future.result()
    except BrokenProcessPool:
        raise WorkerError("a worker process died before returning its result (which one, and how, the executor does not say)") from None


if __name__ == "__main__":
    job.WorkerPool = ExecutorPool  # type: ignore[misc,assignment]
    from goldfish_prep_cli.main import main

    main()
