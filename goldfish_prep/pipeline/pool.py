"""Worker processes and an ordered, bounded ``map`` over them.

Why not ``multiprocessing.Pool``: its ``imap`` reads the whole input ahead of
the workers (memory grows with the corpus), and when a worker dies (the
out-of-memory killer is the usual cause on big jobs) the task it held is lost
and ``get()`` waits forever. Here each worker has its own pipes and holds at
most two tasks (``IN_FLIGHT``), so it always has the next one at hand; results
are read as soon as any worker has one, and yielded in input order (which is
what makes the output byte-identical for every ``num_proc``). A long task holds
back only the yielding: the other workers go on, up to ``READ_AHEAD`` tasks per
worker past the oldest unyielded one, which bounds memory (reading results
in order only leaves a worker idle behind every long document; figures in
docs/performance.md). A worker that
dies ends the map with a ``WorkerError`` that says so; a worker whose parent
dies exits by itself (``_die_with_parent``). The main process runs no helper
threads of its own before the workers start (a URL output's upload thread,
``_commits``, and the store client's I/O thread come after: ``job.run_mask``).

How workers start (``start_method``): *fork* where that is safe, *spawn*
elsewhere. A forked worker inherits the tokenizer the main process already
loaded, at no cost and in shared pages; a spawned one pays a fresh interpreter
and its own tokenizer load. Forking is safe
when the process runs no other Python thread: none can hold a lock the child
would inherit locked. The native thread pools that exist by then (OpenBLAS's)
re-initialise themselves after a fork, and the tokenizers run none
(``TOKENIZERS_PARALLELISM=false`` is set for HF ones). So workers fork only on
Linux and only from a single-threaded process, such as ``mask`` started by the
CLI; inside a Ray worker, or a notebook with threads running, they spawn.
``warm_up(argument)`` runs in each worker as it starts, so spawned workers load
the tokenizer while the main process is still busy with its own start-up.

Tasks and results travel through ``_channel``: forked workers share two slots of
memory each way with the main process, so a batch's lines and its token ids
are copied once instead of pickled through the pipe (spawned workers, which
cannot share an anonymous mapping, use the pipe).
"""

from __future__ import annotations

import collections
import ctypes
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any, TypeVar

from goldfish_prep.errors import WorkerError
from goldfish_prep.format.held_stops import STOPS
from goldfish_prep.pipeline import _channel as channel
from goldfish_prep.pipeline._channel import Slots

Meta = TypeVar("Meta")
Payload = TypeVar("Payload")
Result = TypeVar("Result")


def _join_loaders() -> None:
    """Wait for the background loaders a job started (named ``goldfish-prep-*-loader``) so that workers can fork."""
    for thread in threading.enumerate():
        if thread.name.startswith("goldfish-prep-") and thread.name.endswith("-loader"):
            thread.join()


def safe_start_method() -> str:
    """``"fork"`` on Linux from a process with no other Python thread, else ``"spawn"``."""
    return "fork" if sys.platform == "linux" and threading.active_count() == 1 else "spawn"


#: tasks a worker holds at once: one it works on and one that waits, so it never idles
#: while the main process writes
IN_FLIGHT = 2
#: tasks sent and not yet yielded, per worker: room for the other workers to go on while one
#: works through a long document (its results wait, in memory, to be yielded in order)
READ_AHEAD = 4
#: slots each way per worker, one for each task in flight
SLOTS_PER_WORKER = IN_FLIGHT
#: from linux/prctl.h
_PR_SET_PDEATHSIG = 1
#: seconds between two looks at the parent's pid
_PARENT_POLL_S = 0.2


def _serve(
    tasks: Connection,
    results: Connection,
    slots: tuple[Slots, Slots] | None,
    warm_up: Callable[[Any], object] | None,
    argument: Any,
    parent: tuple[int, bool],
) -> None:
    """A worker's life: run each ``(function, payload, context)`` it is sent; reply ``(ok, value)`` in order.

    ``slots``: (task slots, result slots) shared with the parent, or None. A result goes
    back with its task's ticket, into the result slot of the same number. ``parent``: the
    parent's pid, and whether its main thread started this worker (see ``_die_with_parent``).
    """
    task_slots, result_slots = slots if slots is not None else (None, None)
    # Ctrl-C, and a scheduler's SIGTERM or SIGHUP, may reach the whole process group; only the
    # parent reacts (and kills the workers), so workers print no tracebacks, cannot hang a
    # dying run, and cannot die first and make the parent report a lost worker.
    for number in STOPS:  # the signals a worker ignores, leaving them to the parent
        signal.signal(number, signal.SIG_IGN)
    _die_with_parent(*parent)
    if warm_up is not None:
        try:
            warm_up(argument)
        except Exception:  # noqa: BLE001 - the same call fails again inside the first task, which reports it
            pass
    # A thread keeps reading tasks while this one works, so the parent's send never waits
    # on a worker that is itself waiting for the parent to read its result.
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def receive() -> None:
        while True:
            try:
                inbox.put(channel.receive(tasks, task_slots))
            except (EOFError, OSError):
                inbox.put(None)
                return

    threading.Thread(target=receive, daemon=True).start()
    while (received := inbox.get()) is not None:
        ticket, (function, payload, context) = received
        try:
            reply = (True, function(payload, context))
        except Exception as exc:  # noqa: BLE001 - re-raised in the parent, where it belongs
            reply = (False, exc)
        try:
            channel.send(results, reply, result_slots, ticket)
        except Exception as exc:  # noqa: BLE001 - an exception that does not pickle (nothing was sent)
            channel.send(results, (False, RuntimeError(f"{type(exc).__name__}: {exc}")), result_slots, ticket)


def _die_with_parent(parent: int, started_by_main_thread: bool) -> None:
    """Make this worker exit within moments of its parent's death, by any signal, SIGKILL included.

    A worker left behind keeps its memory (a tokenizer, ~200 MB) and waits forever on a
    pipe, on every preempted cluster job. Linux's parent-death signal (``prctl``) kills it
    at once; but it fires when the *thread* that started the worker ends, so it is asked
    for only when that thread is the parent's main thread (whose end is the process's).
    Everywhere, a thread also watches the parent's pid: an orphan is adopted by another
    process, so ``getppid`` changes (this also covers a parent gone before ``prctl`` ran).
    """
    if sys.platform == "linux" and started_by_main_thread:
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no libc to call: the watching thread is enough
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="goldfish-parent-watch", daemon=True).start()


class _Worker:
    def __init__(self, context: Any, number: int, warm_up: Callable[[Any], object] | None, argument: Any) -> None:
        self.number = number
        task_reader, self.tasks = context.Pipe(duplex=False)
        self.results, result_writer = context.Pipe(duplex=False)
        # a forked child inherits the mapping; a spawned one could not, and uses the pipe
        self.slots = (Slots(SLOTS_PER_WORKER), Slots(SLOTS_PER_WORKER)) if context.get_start_method() == "fork" else None
        self.free_tickets = list(range(SLOTS_PER_WORKER)) if self.slots is not None else []
        self.process: BaseProcess = context.Process(
            target=_serve,
            args=(
                task_reader,
                result_writer,
                self.slots,
                warm_up,
                argument,
                (os.getpid(), threading.current_thread() is threading.main_thread()),
            ),
            name=f"goldfish-worker-{number}",
            daemon=True,
        )
        self.process.start()
        task_reader.close()  # the child holds its own copies; closing ours lets EOF reach each side
        result_writer.close()
        #: sequence numbers of the tasks sent whose results are not read yet, oldest first
        self.queue: collections.deque[int] = collections.deque()
        self.dead = False

    def send(self, sequence: int, task: tuple[Any, Any, Any]) -> None:
        # a ticket comes back free with the task's result; with none free, the pipe carries it
        ticket = self.free_tickets.pop() if self.free_tickets else None
        try:
            channel.send(self.tasks, task, self.slots[0] if self.slots else None, ticket)
        except OSError:  # the worker is gone: its pipe is broken
            self.dead = True
            raise self._died() from None
        self.queue.append(sequence)

    def collect(self) -> tuple[int, tuple[bool, Any]]:
        """``(sequence, (ok, value))`` of this worker's oldest task; blocks until it is there.

        A worker that died answers its oldest task with a ``WorkerError``; results it
        sent before dying are still read first (they wait in the pipe).
        """
        sequence = self.queue.popleft()
        try:
            ticket, outcome = channel.receive(self.results, self.slots[1] if self.slots else None)
        except (EOFError, OSError):
            self.dead = True
            return sequence, (False, self._died())
        if ticket is not None:
            self.free_tickets.append(ticket)
        return sequence, outcome

    def _died(self) -> WorkerError:
        self.process.join(timeout=5)
        code = self.process.exitcode
        how = f"it exited with code {code}"
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else "unknown"
            how = f"it was killed by signal {-code} ({name})"
            if -code == signal.SIGKILL:
                how += ", most often the kernel's out-of-memory killer"
        return WorkerError(
            f"worker process {self.number} (pid {self.process.pid}) died before returning its result: {how}. "
            "Free memory or use a lower --num-proc, then rerun (for mask, add --resume to keep the completed shards)"
        )

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()  # workers ignore SIGTERM (see ``_serve``); they hold nothing to clean up
        self.process.join()
        self.tasks.close()
        self.results.close()
        for slots in self.slots or ():
            slots.close()


class WorkerPool:
    """``num_proc`` worker processes (none for 1: tasks then run in this process).

    Use as a context manager; leaving it terminates the workers, also on errors
    and Ctrl-C. ``warm_up(argument)`` runs once in each worker as it starts.
    ``start_method``: ``"fork"``, ``"spawn"``, or None for ``safe_start_method()``.
    """

    def __init__(
        self,
        num_proc: int,
        warm_up: Callable[[Any], object] | None = None,
        argument: Any = None,
        start_method: str | None = None,
    ) -> None:
        self.num_proc = num_proc
        if num_proc > 1:  # robust's kernel loader (strategies.robust_compiled): workers fork with it loaded
            _join_loaders()
        self.start_method = start_method or safe_start_method()
        self._workers: list[_Worker] = []
        if num_proc <= 1:
            return
        context = multiprocessing.get_context(self.start_method)
        try:
            with warnings.catch_warnings():
                # Python >= 3.12 warns on any fork while native threads (OpenBLAS's idle pool)
                # exist; safe_start_method() has ruled out the Python threads that make it unsafe
                warnings.filterwarnings("ignore", message=r".*fork\(\) may lead to deadlocks", category=DeprecationWarning)
                for number in range(1, num_proc + 1):
                    self._workers.append(_Worker(context, number, warm_up, argument))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Terminate the workers (every result has been read, or the run is being abandoned)."""
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.stop()

    def ordered_map(
        self,
        function: Callable[[Payload, Any], Result],
        tasks: Iterable[tuple[Meta, Payload]],
        context: Any,
    ) -> Iterator[tuple[Meta, Result]]:
        """Yield ``(meta, function(payload, context))`` in input order; ``function`` must be importable (picklable)."""
        if not self._workers:
            for meta, payload in tasks:
                yield meta, function(payload, context)
            return
        source = iter(tasks)
        metas: dict[int, Meta] = {}
        outcomes: dict[int, tuple[bool, Any]] = {}  # read, not yet yielded: later tasks that finished early
        sent = yielded = 0
        exhausted = False
        while True:
            while not exhausted and sent - yielded < READ_AHEAD * len(self._workers):
                alive = [w for w in self._workers if not w.dead]
                idle = min(alive, key=lambda w: len(w.queue)) if alive else None
                if idle is None or len(idle.queue) >= IN_FLIGHT:
                    break
                try:
                    meta, payload = next(source)
                except StopIteration:
                    exhausted = True
                    break
                metas[sent] = meta
                try:
                    idle.send(sent, (function, payload, context))
                except WorkerError as error:
                    # it died after its last result was read: this task is lost, but the
                    # results before it still arrive, and the error waits for its turn
                    outcomes[sent] = (False, error)
                sent += 1
            if yielded in outcomes:
                ok, value = outcomes.pop(yielded)
                meta = metas.pop(yielded)
                yielded += 1
                if not ok:
                    raise value
                yield meta, value
            elif exhausted and yielded == sent:
                return
            else:
                self._collect_ready(outcomes)

    def _collect_ready(self, outcomes: dict[int, tuple[bool, Any]]) -> None:
        """Wait until some worker has a result (or has died), and read one from each such worker.

        A dead worker is still read: the results it sent before dying come first, then
        a ``WorkerError`` for each task it lost.
        """
        handles: dict[Any, _Worker] = {}
        for worker in self._workers:
            if worker.queue:
                handles[worker.results] = handles[worker.process.sentinel] = worker
        # every task not yet yielded has an outcome or sits in some worker's queue
        assert handles, "no worker holds the next result"
        ready = {handles[handle] for handle in wait(list(handles))}
        for worker in ready:
            sequence, outcome = worker.collect()
            outcomes[sequence] = outcome


def ordered_map(
    function: Callable[[Payload, Any], Result],
    tasks: Iterable[tuple[Meta, Payload]],
    context: Any,
    num_proc: int,
) -> Iterator[tuple[Meta, Result]]:
    """``WorkerPool(num_proc).ordered_map(...)`` for a single map: the workers end with it."""
    with WorkerPool(num_proc) as pool:
        yield from pool.ordered_map(function, tasks, context)
