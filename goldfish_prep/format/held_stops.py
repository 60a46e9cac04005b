"""Ctrl-C, SIGTERM and SIGHUP held back for the moment a lock object is being created.

Why: on an object store, taking the lock is requests (a create-once PUT, then
a GET that checks it landed), and the process holds the lock only once they
have answered. A stop that lands between them raised ``KeyboardInterrupt`` in
the main thread while the PUT was still on its way in fsspec's I/O thread: the
run ended (exit 130, no error) and the lock object appeared after it, naming a
dead process. A run on another machine cannot judge that holder, so the user
had to delete the object by hand (seen by ``bench/kill_probe.py``: SIGINT
after the first read that follows the create).

``held_stops`` records such a signal instead of acting on it; the caller, once
it knows what it holds, lets go of it inside the block, and the block's end
delivers the signal, which the handler in force before runs as if it had just arrived (``KeyboardInterrupt``,
the CLI's ``Stopped``, or the default action). A second signal while one is held
is not held: the user who presses Ctrl-C twice gets the stop at once. Outside
the main thread (which alone may set handlers) nothing is held.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

#: what a user or a scheduler sends to stop a run (SIGHUP does not exist on Windows); worker processes ignore them
STOPS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class HeldStops:
    """The stop signals that arrived while held; ``deliver`` sends the first again once the handlers are restored."""

    def __init__(self) -> None:
        self.arrived: list[int] = []
        self._previous: dict[int, Any] = {}
        self._forced = False  # a second signal was sent on at once: nothing is left to deliver

    def __bool__(self) -> bool:
        return bool(self.arrived)

    def hold(self) -> None:
        for number in STOPS:
            handler = signal.getsignal(number)
            if handler is signal.SIG_IGN or handler is None:  # ignored (nohup) stays ignored; None: not Python's
                continue
            self._previous[number] = handler
            signal.signal(number, self._record)

    def _record(self, signum: int, frame: object) -> None:
        self.arrived.append(signum)
        if len(self.arrived) > 1:  # asked twice: stop now
            self._forced = True
            self.restore()
            signal.raise_signal(signum)

    def restore(self) -> None:
        previous, self._previous = self._previous, {}
        for number, handler in previous.items():
            signal.signal(number, handler)

    def deliver(self) -> None:
        """The first signal held, sent again to this process: its own handler acts on it now."""
        self.restore()
        if self.arrived and not self._forced:
            signal.raise_signal(self.arrived[0])


@contextlib.contextmanager
def held_stops() -> Iterator[HeldStops]:
    """Hold stop signals inside the block; leaving it restores the handlers and delivers the first signal held (the
    caller reads ``bool(stops)`` to know one came, and lets go of what it holds before it leaves)."""
    stops = HeldStops()
    if threading.current_thread() is threading.main_thread():
        stops.hold()
    try:
        yield stops
    finally:
        stops.deliver()


__all__ = ["STOPS", "HeldStops", "held_stops"]
