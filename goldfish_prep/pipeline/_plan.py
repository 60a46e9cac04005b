"""Cuts the stream of records into batches and shards at deterministic places.

A shard closes after the record that brings its input weight (bytes as read,
``Record.weight``) to ``shard_size``. Weights are known before tokenizing, so
every process, every ``--num-proc`` and every ``--num-tasks`` split agrees on
the boundaries without doing the expensive work, and ``--resume`` can skip a
finished shard's records unread by the tokenizer. Batches never straddle shards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

from goldfish_prep.errors import InputError
from goldfish_prep.readers.records import JsonLine, Record

Item = Record | JsonLine | InputError


@dataclasses.dataclass
class Batch:
    """Consecutive items of one shard; ``closes_shard`` marks the shard's last batch."""

    shard: int
    items: list[Item]
    closes_shard: bool = False


def plan_batches(
    items: Iterable[Item],
    shard_size: int,
    batch_items: int = 256,
    batch_weight: int = 1 << 20,
) -> Iterator[Batch]:
    """Group items into batches of at most ``batch_items`` items or about ``batch_weight`` bytes.

    >>> recs = [Record(str(i), str(i), text="x", weight=10) for i in range(5)]
    >>> [(b.shard, len(b.items), b.closes_shard) for b in plan_batches(recs, shard_size=20, batch_items=8)]
    [(0, 2, True), (1, 2, True), (2, 1, True)]
    """
    shard, shard_weight = 0, 0
    current = Batch(shard, [])
    current_weight = 0
    held: Batch | None = None  # one batch of look-ahead: the last batch must learn it closes its shard
    for item in items:
        weight = 0 if isinstance(item, InputError) else item.weight
        current.items.append(item)
        current_weight += weight
        shard_weight += weight
        shard_full = shard_weight >= shard_size
        if shard_full or len(current.items) >= batch_items or current_weight >= batch_weight:
            current.closes_shard = shard_full
            if held is not None:
                yield held
            held = current
            if shard_full:
                shard, shard_weight = shard + 1, 0
            current, current_weight = Batch(shard, []), 0
    if current.items:
        if held is not None:
            yield held
        held = current
    if held is not None:
        held.closes_shard = True
        yield held
