"""What moving a worker's results to the main process costs: pickled pipe, raw pipe, shared slots.

A forked child sends ``--messages`` results shaped like ``mask``'s (int32 ids and
a bool mask of ``--tokens`` tokens each, about 1.25 MB for the default 250,000:
the size of one batch of ``pipeline._plan.plan_batches``) and the parent receives them:

  pickle     Connection.send / recv of the tuple (what multiprocessing does by default)
  pipe       goldfish_prep.pipeline._channel without slots: protocol-5 pickle, buffers as raw pipe bytes
  slots      goldfish_prep.pipeline._channel with shared slots (what ``mask --num-proc`` uses when forked)

CPU seconds are the child's plus the parent's, for the transfer alone; ratios are
against ``pickle`` in the same run.

    python bench/channel.py
    python bench/channel.py --messages 400 --tokens 1000000 --rounds 5
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import time
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from goldfish_prep.pipeline import _channel as channel
from goldfish_prep.pipeline._channel import Slots

MODES = ("pickle", "pipe", "slots")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _child(connection: Connection, mode: str, slots: Slots | None, messages: int, tokens: int) -> None:
    ids, drop = np.arange(tokens, dtype=np.int32), np.zeros(tokens, dtype=np.bool_)
    started = _cpu()
    for number in range(messages):
        if mode == "pickle":
            connection.send((ids, drop))
        elif slots is None:
            channel.send(connection, (ids, drop))
        else:  # wait for the parent to have read the message, as the pool's tickets do
            channel.send(connection, (ids, drop), slots, number % 2)
            connection.recv()
    connection.send(_cpu() - started)


def transfer(mode: str, messages: int, tokens: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of both ends) to move ``messages`` results child -> parent."""
    context = multiprocessing.get_context("fork")
    parent, child = context.Pipe()
    slots = Slots(2, max(channel.SLOT_SIZE, 6 * tokens)) if mode == "slots" else None
    process = context.Process(target=_child, args=(child, mode, slots, messages, tokens))
    started_wall, started_cpu = time.perf_counter(), _cpu()
    process.start()
    received: Any = None
    for _ in range(messages):
        if mode == "pickle":
            received = parent.recv()
        else:
            _, received = channel.receive(parent, slots)
            if slots is not None:
                parent.send(None)
    child_cpu = parent.recv()
    wall, parent_cpu = time.perf_counter() - started_wall, _cpu() - started_cpu
    process.join()
    assert int(received[0][-1]) == tokens - 1 and len(received[1]) == tokens
    if slots is not None:
        slots.close()
    return wall, parent_cpu + child_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=170, help="results sent (170 x 250,000 tokens = the 43 M-token corpus)")
    parser.add_argument("--tokens", type=int, default=250_000, help="tokens per result")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            runs[mode].append(transfer(mode, args.messages, args.tokens))
    megabytes = args.messages * args.tokens * 5 / 1e6
    base = statistics.median(cpu for _, cpu in runs["pickle"])
    print(f"{args.messages} results of {args.tokens:,} tokens ({megabytes:.0f} MB), medians of {args.rounds} rounds")
    print("| transport | wall s | CPU s (both ends) | CPU vs pickle |\n|---|---:|---:|---:|")
    for mode in MODES:
        wall, cpu = statistics.median(w for w, _ in runs[mode]), statistics.median(c for _, c in runs[mode])
        print(f"| {mode} | {wall:.3f} | {cpu:.3f} | {cpu / base:.3f} |")


if __name__ == "__main__":
    main()
