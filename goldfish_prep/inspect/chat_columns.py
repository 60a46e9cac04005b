"""Chat shards as columns: which tokens are the assistant's, where each answer lies, each row's k.

A chat output (docs/format.md, "Chat columns") carries ``assistant_masks``
(int8, 1 on the assistant's part of each turn) next to ``input_ids`` and
``labels``, and optionally a per-row ``k`` (``--k-field``, 0 = standard loss).
The goldfish mask is applied to each *answer*, a maximal run of assistant
tokens, as a sequence of its own; so every consumer (stats, show, verify,
repeats, memorisation) needs the same two things: the assistant flags as a
flat array, and the answers as (start, end) pairs that never cross a document.
They are computed here, on whole shards, with no Python loop over tokens.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from goldfish_prep.config import MaskConfig
from goldfish_prep.errors import InputError
from goldfish_prep.format.columns import Int64s, TokenStream, int_column, list_values
from goldfish_prep.format.manifest import Manifest

ASSISTANT_COLUMN = "assistant_masks"
K_COLUMN = "k"
Bools = npt.NDArray[np.bool_]

_RECREATE = "Run `goldfish-prep verify` on the folder, or recreate it with `goldfish-prep mask`"


def is_chat(manifest: Manifest) -> bool:
    """True for the output of `mask` over conversations (the manifest has a ``chat`` object)."""
    return isinstance(manifest.get("chat"), dict)


def never_dropped_ids(manifest: Manifest, tokenizer: str | None = None) -> npt.NDArray[np.int64]:
    """Ids the answer-local rule never drops: ``--keep-ids`` and the tokenizer's special tokens.

    ``keep_ids`` are in the manifest's ``chat`` object; the special ids are
    taken from ``chat.special_ids`` where a run recorded them, else from the
    tokenizer the manifest names (or ``tokenizer``, when it moved): its added
    tokens marked special, as ``mask`` protects them (docs/mask-spec.md).
    """
    chat = manifest.get("chat") or {}
    special = chat.get("special_ids")
    if special is None:
        special = _special_ids(tokenizer or manifest.tokenizer.get("spec"))
    return np.unique(np.asarray([*chat.get("keep_ids", []), *special], dtype=np.int64))


@functools.lru_cache(maxsize=8)
def _special_ids(spec: str | None) -> tuple[int, ...]:
    """The tokenizer's added tokens marked special (cached: loading a large tokenizer takes seconds)."""
    from goldfish_prep.errors import TokenizerError
    from goldfish_prep.tokenizers import load_tokenizer

    fix = "Pass --tokenizer with the tokenizer the output was made with (its special tokens are never dropped)"
    if not spec:
        raise InputError(
            "goldfish_manifest.json",
            "the manifest names no tokenizer, so the special tokens of this chat output are unknown",
            fix,
            "no-tokenizer",
        )
    try:
        backend = load_tokenizer(spec).chat_backend()  # type: ignore[attr-defined]
    except (TokenizerError, AttributeError, OSError) as exc:
        raise InputError(str(spec), f"cannot load the chat output's tokenizer here ({exc})", fix, "no-tokenizer") from exc
    return tuple(sorted(int(index) for index, token in backend.get_added_tokens_decoder().items() if token.special))


def assistant_flags(table: Any, path: Path, stream: TokenStream) -> Bools:
    """The ``assistant_masks`` column as one flag per token of ``stream`` (padding left out, like the stream)."""
    values, offsets = list_values(table, ASSISTANT_COLUMN, path)
    if not np.array_equal(offsets, stream.raw_offsets):
        row = int(np.flatnonzero(np.diff(offsets) != np.diff(stream.raw_offsets))[0]) if len(offsets) == len(stream.raw_offsets) else 0
        raise InputError(f"{path} row {row}", "assistant_masks and input_ids differ in length", _RECREATE, "bad-shard")
    bad = np.flatnonzero((values != 0) & (values != 1))
    if len(bad):
        raise InputError(f"{path}", f"assistant_masks holds {int(values[bad[0]])}; its values are 0 and 1", _RECREATE, "bad-shard")
    flags: Bools = values.astype(np.bool_)
    if len(stream.padding):
        flags = np.delete(flags, stream.padding)
    return flags


def run_k(config: MaskConfig) -> int:
    """The k of rows that carry none: the run's ``--k``, or 0 (nothing dropped) for a strategy that drops nothing."""
    return config.k if config.strategy_object.expected_rate(config) > 0 else 0


def row_k(table: Any, path: Path) -> Int64s | None:
    """Each row's own k (``--k-field``; 0: standard loss for that row), or None when rows carry none."""
    if K_COLUMN not in table.column_names:
        return None
    return int_column(table, K_COLUMN, path)


def answer_spans(assistant: Bools, doc_starts: Int64s) -> tuple[Int64s, Int64s]:
    """(starts, ends) of the answers: maximal runs of assistant tokens, cut where a document begins.

    >>> s, e = answer_spans(np.array([0, 1, 1, 0, 1, 1, 1], bool), np.array([0, 5]))
    >>> s.tolist(), e.tolist()
    ([1, 4, 5], [3, 5, 7])
    """
    n = len(assistant)
    flags = assistant.astype(np.int8)
    edges = np.diff(np.concatenate([[0], flags, [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    cuts = np.asarray(doc_starts, dtype=np.int64)
    cuts = cuts[(cuts > 0) & (cuts < n)]
    inside = cuts[assistant[cuts] & assistant[cuts - 1]]  # a document begins inside a run: split it there
    all_starts = np.sort(np.concatenate([starts, inside])).astype(np.int64)
    all_ends = np.sort(np.concatenate([ends, inside])).astype(np.int64)
    return all_starts, all_ends


def answer_positions(starts: Int64s, ends: Int64s, n: int) -> tuple[Int64s, Int64s]:
    """(answer index, position inside the answer) of every token; -1 for tokens outside answers."""
    index = np.full(n, -1, dtype=np.int64)
    local = np.full(n, -1, dtype=np.int64)
    lengths = ends - starts
    covered = np.repeat(np.arange(len(starts), dtype=np.int64), lengths)
    where = np.repeat(starts, lengths) + (np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths))
    index[where] = covered
    local[where] = where - starts[covered]
    return index, local
