"""A one-line status on a terminal while a tokenizer's fast path is worked out for the first time.

Deciding whether a ``tokenizer.json`` runs exactly on tiktoken takes seconds for a large vocabulary
the first time (loading it with HF ``tokenizers``, checking every merge); later runs read the answer
from the cache (``cache``) at once. A silent first run cannot be told from a hang, so when that work
outlasts about half a second and stderr is a terminal, one line says what is happening and where the
answer is kept, and is completed with the time it took. Nothing is written to a pipe or a log file
(batch jobs' logs stay as they were), nothing for work that ends sooner, and nothing from worker
processes (the parent has already filled the cache, or says so itself).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

from goldfish_prep.tokenizers.cache import cache_dir

#: how long the work may run before the status line appears
DELAY_S = 0.5
_active = 0  # nesting depth: an inner build inside an outer one adds no second line


def fast_path_status_line(spec: str) -> str:
    """What the status line says about ``spec`` (without its ending).

    >>> fast_path_status_line("llama3/tokenizer.json").startswith("Checking tokenizer 'llama3/tokenizer.json' for an exact fast path")
    True
    """
    folder = cache_dir()
    where = f"the result is cached in {folder}" if folder is not None else "GOLDFISH_PREP_CACHE=off: not cached, every run checks again"
    return f"Checking tokenizer {spec!r} for an exact fast path (first use of these files; {where})"


@contextlib.contextmanager
def first_build_status(spec: str, stream: TextIO | None = None, delay_s: float | None = None) -> Iterator[None]:
    """Show the status line for ``spec`` on ``stream`` (stderr) if the body outlasts ``delay_s`` (``DELAY_S``)."""
    global _active
    out = sys.stderr if stream is None else stream
    if _active or multiprocessing.parent_process() is not None or not _is_terminal(out):
        yield
        return
    lock, state = threading.Lock(), {"shown": False, "over": False}

    def show() -> None:
        with lock:
            if not state["over"]:
                out.write(fast_path_status_line(spec) + " ...")
                out.flush()
                state["shown"] = True

    timer = threading.Timer(DELAY_S if delay_s is None else delay_s, show)
    timer.daemon = True
    started, ending = time.perf_counter(), " stopped\n"  # an error's own line then starts on a line of its own
    _active += 1
    timer.start()
    try:
        yield
        ending = f" done in {time.perf_counter() - started:.1f} s\n"
    finally:
        _active -= 1
        timer.cancel()
        with lock:
            state["over"] = True
            if state["shown"]:
                out.write(ending)
                out.flush()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False
