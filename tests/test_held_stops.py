"""``format.held_stops``: a stop signal that lands while a lock object is being created waits for the caller, who lets
go of what it holds and then receives it; a second one is not held. Real signals to this process, with a handler of
the test's own (a ``KeyboardInterrupt`` that escaped would stop pytest itself)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from goldfish_prep.format.held_stops import held_stops


class Stopped(BaseException):
    pass


@pytest.fixture
def stop_handler() -> Iterator[None]:
    def stopped(signum: int, frame: object) -> None:
        raise Stopped(signum)

    previous = signal.signal(signal.SIGINT, stopped)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_stop_is_held_until_the_block_ends_and_then_raised_by_the_handler_before(stop_handler: None) -> None:
    done = []
    with pytest.raises(Stopped):
        with held_stops() as stops:
            os.kill(os.getpid(), signal.SIGINT)
            done.append("after the signal")  # still running: the stop is held
            assert stops.arrived == [signal.SIGINT]
    assert done == ["after the signal"]
    assert signal.getsignal(signal.SIGINT).__name__ == "stopped"  # the handler before is back


def test_a_second_stop_is_not_held(stop_handler: None) -> None:
    done = []
    with pytest.raises(Stopped):
        with held_stops():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("first held")
            os.kill(os.getpid(), signal.SIGINT)
            done.append("second held")  # never: asked twice, the stop comes at once
    assert done == ["first held"]


def test_nothing_held_leaves_the_handlers_as_they_were(stop_handler: None) -> None:
    with held_stops() as stops:
        assert not stops
    assert signal.getsignal(signal.SIGINT).__name__ == "stopped"


def test_an_ignored_signal_stays_ignored() -> None:
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with held_stops():
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGTERM)  # ignored, as under nohup: nothing held, nothing raised
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_forced_stop_is_delivered_once() -> None:
    """The second signal goes on at once; leaving the block must not send the first one again on top of it."""
    calls: list[int] = []

    def stopped(signum: int, frame: object) -> None:
        calls.append(signum)
        if len(calls) == 1:
            raise Stopped(signum)

    previous = signal.signal(signal.SIGINT, stopped)
    try:
        with pytest.raises(Stopped):
            with held_stops():
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert calls == [signal.SIGINT]
