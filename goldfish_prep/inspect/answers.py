"""Repeated answers in chat shards: does every copy of an answer carry the same mask?

Answer-local masks (docs/mask-spec.md) depend only on an answer's own ids, so
every copy of an answer, after any prompt, should lose exactly the same
tokens, from its first token on. This module groups the answers of a chat
output (maximal runs of ``assistant_masks == 1`` within a row) by their ids
and counts the groups whose copies' masks differ. Document outputs only: in
packed rows an answer can be cut by a row boundary. In a ``--k-field`` output
answers are grouped by (ids, k): under another k an answer is masked
differently by design.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import xxhash

from goldfish_prep.format import IGNORE_INDEX, iter_shards, load_manifest


@dataclasses.dataclass(frozen=True)
class AnswerAgreement:
    """``answers`` in all; ``distinct`` different ones; ``repeated`` of those occur 2+ times, in ``copies`` copies."""

    answers: int
    distinct: int
    repeated: int
    copies: int
    #: repeated answers whose copies do not all carry the same mask
    differing: int
    #: tokens of repeated answers dropped in every copy (the same as in any one copy when masks agree)
    dropped_tokens: int


def answer_agreement(folder: str | Path) -> AnswerAgreement | None:
    """The agreement of repeated answers, or None for outputs without chat rows or with packed rows."""
    manifest = load_manifest(folder)
    if not manifest.is_chat or manifest.packed:
        return None
    masks: dict[bytes, bytes] = {}
    counts: dict[bytes, int] = {}
    differing: set[bytes] = set()
    dropped: dict[bytes, int] = {}
    k_field = manifest.k_field is not None
    for _, table in iter_shards(folder, ["input_ids", "labels", "assistant_masks", *(["k"] if k_field else [])]):
        row_k = table.column("k").to_pylist() if k_field else None
        for ids, drop, row in _answers(table):
            key = xxhash.xxh3_128_digest(ids.tobytes() + (b"" if row_k is None else int(row_k[row]).to_bytes(4, "little")))
            mask = np.packbits(drop).tobytes()
            if masks.setdefault(key, mask) != mask:
                differing.add(key)
            counts[key] = counts.get(key, 0) + 1
            dropped.setdefault(key, int(drop.sum()))
    repeated = [key for key, n in counts.items() if n > 1]
    return AnswerAgreement(
        answers=sum(counts.values()),
        distinct=len(counts),
        repeated=len(repeated),
        copies=sum(counts[key] for key in repeated),
        differing=len(differing),
        dropped_tokens=sum(dropped[key] for key in repeated if key not in differing),
    )


def _answers(table: pa.Table) -> list[tuple[npt.NDArray[np.int32], npt.NDArray[np.bool_], int]]:
    """(ids, dropped, row) of every answer in a shard's rows."""
    ids_column = table.column("input_ids").combine_chunks()
    offsets = np.asarray(ids_column.offsets, dtype=np.int64)
    ids = np.asarray(ids_column.values, dtype=np.int32)[offsets[0] : offsets[-1]]
    labels = np.asarray(table.column("labels").combine_chunks().values, dtype=np.int32)[offsets[0] : offsets[-1]]
    assistant = np.asarray(table.column("assistant_masks").combine_chunks().values, dtype=np.int8)[offsets[0] : offsets[-1]] == 1
    offsets = offsets - offsets[0]
    head = np.zeros(len(ids), np.bool_)
    head[offsets[:-1][offsets[:-1] < len(ids)]] = True
    previous = np.concatenate([[False], assistant[:-1]])
    starts = np.flatnonzero(assistant & (head | ~previous))
    following = np.concatenate([assistant[1:], [False]]) & ~np.concatenate([head[1:], [True]])
    ends = np.flatnonzero(assistant & ~following) + 1
    drop = labels == IGNORE_INDEX
    rows = np.searchsorted(offsets, starts, side="right") - 1
    return [(ids[a:b], drop[a:b], int(r)) for a, b, r in zip(starts.tolist(), ends.tolist(), rows.tolist())]
