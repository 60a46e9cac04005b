"""An ordered, bounded ``map`` over worker processes.

``multiprocessing.Pool.imap`` would read the whole input ahead of the workers
(its feeder thread drains the iterator), so memory would grow with the corpus.
Here at most ``2 * num_proc`` batches are in flight; results come back in input
order, which is what makes the output byte-identical for every ``num_proc``.
Workers are *spawned*, not forked: tokenizer libraries with thread pools of
their own (Rayon, tiktoken) are not fork-safe.
"""

from __future__ import annotations

import collections
import multiprocessing
import signal
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.pool import AsyncResult
from typing import Any, TypeVar

Meta = TypeVar("Meta")
Payload = TypeVar("Payload")
Result = TypeVar("Result")

_context: Any = None


def _initialize(context: Any) -> None:
    global _context
    # Ctrl-C reaches the whole process group; only the parent reacts (and terminates the
    # pool), so workers print no tracebacks and terminate() cannot hang on a dying worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _context = context


def _call(function: Callable[[Any, Any], Any], payload: Any) -> Any:
    return function(payload, _context)


def ordered_map(
    function: Callable[[Payload, Any], Result],
    tasks: Iterable[tuple[Meta, Payload]],
    context: Any,
    num_proc: int,
) -> Iterator[tuple[Meta, Result]]:
    """Yield ``(meta, function(payload, context))`` in input order; ``function`` must be importable (picklable)."""
    if num_proc <= 1:
        for meta, payload in tasks:
            yield meta, function(payload, context)
        return
    pool = multiprocessing.get_context("spawn").Pool(num_proc, initializer=_initialize, initargs=(context,))
    try:
        pending: collections.deque[tuple[Meta, AsyncResult[Result]]] = collections.deque()
        for meta, payload in tasks:
            pending.append((meta, pool.apply_async(_call, (function, payload))))
            if len(pending) >= 2 * num_proc:
                done_meta, result = pending.popleft()
                yield done_meta, result.get()
        while pending:
            done_meta, result = pending.popleft()
            yield done_meta, result.get()
        pool.close()
    finally:
        pool.terminate()
        pool.join()
