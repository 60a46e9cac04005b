"""The worker channel: values arrive intact through a slot and through the pipe, and a slot is free once read."""

from __future__ import annotations

import multiprocessing
import pickle
import sys
import threading
from multiprocessing.connection import Connection

import numpy as np
import pytest

from goldfish_prep.errors import InputError
from goldfish_prep.pipeline import _channel as channel
from goldfish_prep.pipeline._channel import Slots


def _send_and_receive(value: object, slots: Slots | None, ticket: int | None) -> tuple[int | None, object]:
    """Send from a thread: a pipe holds 64 KiB, so a larger message waits for its reader."""
    reader, writer = multiprocessing.Pipe(duplex=False)
    sender = threading.Thread(target=channel.send, args=(writer, value, slots, ticket))
    sender.start()
    received = channel.receive(reader, slots)
    sender.join()
    return received


def _value(tokens: int) -> dict[str, object]:
    ids = np.arange(tokens, dtype=np.int32) * 7
    return {
        "ids": ids,
        "drop": ids % 3 == 0,
        "strided": ids[::2],  # not contiguous: pickled in band
        "lines": [b'{"text": "a"}', "caf\u00e9"],
        "error": InputError("a.jsonl line 3", "invalid JSON", "Fix the line", "invalid-json"),
    }


def _assert_same(got: dict[str, object], sent: dict[str, object]) -> None:
    for key in ("ids", "drop", "strided"):
        np.testing.assert_array_equal(got[key], sent[key])  # type: ignore[arg-type]
        assert got[key].dtype == sent[key].dtype  # type: ignore[attr-defined]
    assert got["lines"] == sent["lines"]
    error = got["error"]
    assert isinstance(error, InputError) and (error.location, error.reason) == ("a.jsonl line 3", "invalid-json")


@pytest.mark.parametrize("tokens", [0, 1000, 300_000])
@pytest.mark.parametrize("through_slot", [True, False])
def test_a_value_arrives_intact(tokens: int, through_slot: bool) -> None:
    slots = Slots(2, 4 << 20) if through_slot else None
    sent = _value(tokens)
    ticket, got = _send_and_receive(sent, slots, 1 if through_slot else None)
    assert ticket == (1 if through_slot else None)
    _assert_same(got, sent)
    got["ids"][:1] = -1  # received arrays are the receiver's own, writable
    if slots is not None:
        slots.close()


def test_the_received_value_does_not_change_when_its_slot_is_reused() -> None:
    reader, writer = multiprocessing.Pipe(duplex=False)
    slots = Slots(1, 1 << 20)
    channel.send(writer, np.full(1000, 5, dtype=np.int32), slots, 0)
    _, first = channel.receive(reader, slots)
    channel.send(writer, np.full(1000, 9, dtype=np.int32), slots, 0)
    _, second = channel.receive(reader, slots)
    assert set(first.tolist()) == {5} and set(second.tolist()) == {9}


def test_a_message_larger_than_a_slot_takes_the_pipe_and_keeps_its_ticket() -> None:
    slots = Slots(2, 1 << 10)
    big = np.arange(100_000, dtype=np.int32)
    ticket, got = _send_and_receive(big, slots, 0)
    assert ticket == 0
    np.testing.assert_array_equal(got, big)


def test_a_value_that_does_not_pickle_raises_before_anything_is_sent() -> None:
    reader, writer = multiprocessing.Pipe(duplex=False)
    with pytest.raises((pickle.PicklingError, AttributeError)):
        channel.send(writer, lambda: None, Slots(1), 0)
    assert not reader.poll()


def _echo(inbox: Connection, outbox: Connection, slots: Slots) -> None:
    ticket, value = channel.receive(inbox, slots)
    channel.send(outbox, value, slots, ticket)


@pytest.mark.skipif(sys.platform != "linux", reason="workers fork only on Linux")
def test_a_forked_child_sees_the_slots() -> None:
    context = multiprocessing.get_context("fork")
    child_inbox, parent_outbox = context.Pipe(duplex=False)
    parent_inbox, child_outbox = context.Pipe(duplex=False)
    slots = Slots(1)  # made before the fork: the child maps the same pages
    process = context.Process(target=_echo, args=(child_inbox, child_outbox, slots))
    process.start()
    sent = _value(200_000)
    channel.send(parent_outbox, sent, slots, 0)
    ticket, got = channel.receive(parent_inbox, slots)
    process.join(timeout=30)
    assert process.exitcode == 0 and ticket == 0
    _assert_same(got, sent)


def test_closing_slots_while_a_view_lives_leaves_the_unmapping_to_the_collector() -> None:
    slots = Slots(1, 4096)
    view = slots.slot(0)
    slots.close()  # an interrupted send can leave such a view in a traceback
    del view
