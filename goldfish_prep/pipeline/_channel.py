"""Messages between the main process and one worker, large buffers through shared memory.

Why: ``Connection.send`` pickles a value into one bytes object and pushes it
through a 64 KiB pipe; the other end reads it back in pieces and unpickles
another copy. For ``mask`` that is every input line on the way out and every
token id and mask bit on the way back (about 5 bytes per token): CPU that the
workers need on a machine with as many cores as workers (what the slots
save is measured in docs/performance.md, "Parallel workers").

So a message is pickled with protocol 5, which leaves numpy arrays out of band
(``buffer_callback``): their bytes are never copied into the pickle. The pickle
and the buffers are copied once into a *slot*, a fixed-size piece of an
anonymous shared mapping made before the worker forks, and only a small header
``(ticket, in_slot, lengths)`` goes through the pipe. The receiver copies the
message out of the slot at once, so the slot is free again as soon as the
message is read: whoever holds a ticket may reuse its slot only after the
message it carried has been received. A message larger than a slot, or sent
without a ticket, or between spawned processes (which share no mapping), goes
through the pipe as raw bytes, still without the pickle copies.

The ticket travels with a task and comes back with its result, so a worker
writes each result into the result slot matching the task's slot: the main
process hands a ticket out again only after that result has arrived.
"""

from __future__ import annotations

import mmap
import pickle
from multiprocessing.connection import Connection
from typing import Any

#: bytes per slot; a batch of about 1 MB of input (``sharding.plan_batches``) and its
#: results (about 5 bytes per token) fit, a larger message takes the pipe
SLOT_SIZE = 4 << 20


class Slots:
    """``count`` slots of ``size`` bytes in one anonymous shared mapping.

    ``MAP_SHARED | MAP_ANONYMOUS`` (what ``mmap.mmap(-1, n)`` maps on Linux):
    a forked child sees the same pages, and the memory is gone when the last
    process unmaps it, so nothing can leak into ``/dev/shm``. Pages are
    touched, and so count towards memory, only as messages fill them.
    """

    def __init__(self, count: int, size: int = SLOT_SIZE) -> None:
        self.size = size
        self._memory = mmap.mmap(-1, count * size)
        self._view = memoryview(self._memory)

    def slot(self, ticket: int) -> memoryview:
        return self._view[ticket * self.size : (ticket + 1) * self.size]

    def close(self) -> None:
        """Unmap now; or, while a view is still alive (in the traceback of an interrupted
        send, say), leave the unmapping to the garbage collector."""
        try:
            self._view.release()
            self._memory.close()
        except BufferError:
            pass


def send(connection: Connection, value: Any, slots: Slots | None = None, ticket: int | None = None) -> None:
    """Send ``value`` (and ``ticket``, for the reply): through slot ``ticket`` when it fits, else the pipe.

    A value that cannot be pickled raises here, before anything is sent.
    """
    buffers: list[pickle.PickleBuffer] = []
    head = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    parts = [memoryview(head), *(buffer.raw() for buffer in buffers)]
    lengths = [part.nbytes for part in parts]
    if slots is not None and ticket is not None and sum(lengths) <= slots.size:
        target, offset = slots.slot(ticket), 0
        for part in parts:
            target[offset : offset + part.nbytes] = part
            offset += part.nbytes
        connection.send((ticket, True, lengths))
        return
    connection.send((ticket, False, lengths))
    for part in parts:
        connection.send_bytes(part)


def receive(connection: Connection, slots: Slots | None = None) -> tuple[int | None, Any]:
    """``(ticket, value)`` of the next message; its slot may be written again once this returns."""
    ticket, in_slot, lengths = connection.recv()
    if not in_slot:
        parts = [bytearray(length) for length in lengths]
        for part in parts:
            connection.recv_bytes_into(part)
        return ticket, pickle.loads(parts[0], buffers=parts[1:])
    assert slots is not None and ticket is not None, "a message in a slot needs the slots it was sent through"
    source = slots.slot(ticket)
    # the buffers are copied out (the arrays built on them outlive the slot); the pickle
    # itself is read in place: everything it holds in band is copied as it is unpickled
    buffers, offset = [], lengths[0]
    for length in lengths[1:]:
        buffers.append(bytearray(source[offset : offset + length]))
        offset += length
    return ticket, pickle.loads(source[: lengths[0]], buffers=buffers)
