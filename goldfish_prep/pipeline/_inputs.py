"""The inputs part of a run description, from the start of a run to its end.

An input's hash comes from the bytes the readers parse (``readers.snapshot``),
so it is known only once the input has been read. Until then the run
description (``.goldfish/run.json``) records each file's size and modification
time; once every input has been read, the pipeline replaces them with the size
and xxh3-128 of the bytes read, and that is what the manifest lists.

``--resume`` compares the run described now with the one in the folder, so the
two forms must meet: an interrupted run recorded sizes and times, which are
compared as they are; a run that had read every input (a finished output, or a
``--num-tasks`` task that ended) recorded hashes, which are taken over when the
path, kind and size agree, and checked against the bytes of this run once it
has read them (``finished_inputs``). A resumed run never reads fewer bytes than
the run it continues (cutting shards reads every input), so the check always
happens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from goldfish_prep.errors import InputError
from goldfish_prep.readers import InputSnapshot


def resumed_inputs(previous: Any, current: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """The inputs to describe this run with, and the hashes (by input index) a finished earlier run recorded.

    ``previous``: the ``inputs`` of the run found in the output folder (None if unreadable).

    >>> now = [{"path": "a.jsonl", "kind": "jsonl", "size": 3, "mtime_ns": 7}]
    >>> resumed_inputs([{"path": "a.jsonl", "kind": "jsonl", "size": 3, "xxh3_128": "f0"}], now)
    ([{'path': 'a.jsonl', 'kind': 'jsonl', 'size': 3, 'xxh3_128': 'f0'}], {0: 'f0'})
    """
    if not isinstance(previous, list) or len(previous) != len(current):
        return current, {}
    inputs, expected = [], {}
    for index, (old, new) in enumerate(zip(previous, current)):
        read_whole = isinstance(old, dict) and "xxh3_128" in old and "mtime_ns" not in old
        if read_whole and "size" in new and (old.get("path"), old.get("kind")) == (new["path"], new["kind"]):
            inputs.append({**old, "size": new["size"]})  # a size that differs still shows as the difference
            expected[index] = str(old["xxh3_128"])
        else:
            inputs.append(new)
    return inputs, expected


def finished_inputs(snapshots: Sequence[InputSnapshot], expected: dict[int, str]) -> list[dict[str, Any]]:
    """The inputs as read, for the manifest; raises if one changed during the run or differs from ``expected``."""
    for snapshot in snapshots:
        snapshot.check_unchanged()
    inputs = [snapshot.result() for snapshot in snapshots]
    for index, digest in expected.items():
        if inputs[index].get("xxh3_128") != digest:
            raise InputError(
                inputs[index]["path"],
                "the file is not the one the completed shards were made from (its xxh3-128 differs from the one the resumed run recorded)",
                "Rerun with --overwrite to start again from the file as it is now",
                "input-changed",
            )
    return inputs
