"""Mask rates of chat outputs: over assistant tokens, per k, and for short answers.

In a chat output the prompt (system, user and tool turns, template markup) is
-100 in ``labels`` because it is not the assistant's, not because goldfish
dropped it; counting it would put the rate near the prompt's share of the
tokens, not near 1/k. So a chat rate is dropped / eligible over assistant
tokens only, where an assistant token is eligible unless its id is never
dropped (special tokens, ``--keep-ids``; ``answers.never_dropped_ids``).

Rows may carry their own k (``--k-field``; 0 = standard loss, nothing dropped,
nothing eligible), so figures are also grouped by k, each group against its own
1/k. Answers of 2 to 12 tokens get a line of their own: the answer-local rule
must make them lose about 1 in k too, and a rule with a warm-up (no drop before
the ``context_width``-th token) would show here as a rate near 0.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from goldfish_prep.config import MaskConfig
from goldfish_prep.format.chat import Bools, answer_spans, assistant_flags, row_k, run_k
from goldfish_prep.format.columns import Int64s, TokenStream
from goldfish_prep.format.location import Location
from goldfish_prep.format.names import IGNORE_INDEX
from goldfish_prep.inspect.binomial import band_limits, outside_band

#: the answer lengths reported apart ("short answers must not escape", issue 11)
SHORT_ANSWERS = (2, 12)


@dataclasses.dataclass(frozen=True)
class ChatPart:
    """Per-unit (document or packed row) assistant figures of one shard, and its short answers by k."""

    assistant: Int64s
    eligible: Int64s
    dropped: Int64s
    k: Int64s
    #: k -> [answers, eligible, dropped] over the answers of SHORT_ANSWERS lengths
    short: dict[int, list[int]]


def shard_part(table: Any, path: Location, stream: TokenStream, never: Int64s, config: MaskConfig) -> ChatPart:
    """The assistant figures of one shard (whole-shard array passes, one cumulative sum per figure)."""
    assistant = assistant_flags(table, path, stream)
    units = stream.num_rows
    recorded = row_k(table, path)
    k = recorded if recorded is not None else np.full(units, run_k(config), np.int64)
    token_k = np.repeat(k, np.diff(stream.row_starts))
    eligible = assistant & ~np.isin(stream.ids, never) & (token_k > 0)
    dropped = assistant & (stream.labels == IGNORE_INDEX)
    return ChatPart(
        assistant=_per_row(assistant, stream.row_starts),
        eligible=_per_row(eligible, stream.row_starts),
        dropped=_per_row(dropped, stream.row_starts),
        k=k,
        short=_short_answers(assistant, eligible, dropped, token_k, stream.doc_starts),
    )


def _per_row(flags: Bools, row_starts: Int64s) -> Int64s:
    running = np.zeros(len(flags) + 1, dtype=np.int64)
    np.cumsum(flags, out=running[1:])
    return running[row_starts[1:]] - running[row_starts[:-1]]


def _short_answers(assistant: Bools, eligible: Bools, dropped: Bools, token_k: Int64s, doc_starts: Int64s) -> dict[int, list[int]]:
    starts, ends = answer_spans(assistant, doc_starts)
    lengths = ends - starts
    keep = (lengths >= SHORT_ANSWERS[0]) & (lengths <= SHORT_ANSWERS[1])
    starts, ends = starts[keep], ends[keep]
    if not len(starts):
        return {}
    sums = []
    for flags in (eligible, dropped):
        running = np.concatenate([[0], np.cumsum(flags, dtype=np.int64)])
        sums.append(running[ends] - running[starts])
    result: dict[int, list[int]] = {}
    for k in np.unique(token_k[starts]).tolist():
        chosen = (token_k[starts] == k) & (sums[0] > 0)
        if k > 0 and chosen.any():
            result[int(k)] = [int(chosen.sum()), int(sums[0][chosen].sum()), int(sums[1][chosen].sum())]
    return result


@dataclasses.dataclass(frozen=True)
class ChatFigures:
    """The assistant figures of a whole output, per unit and per k."""

    assistant: Int64s
    k: Int64s
    short: dict[int, list[int]]
    #: True when rows carry their own k (a `--k-field` run)
    per_row_k: bool

    def expected_per_unit(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        return np.where(self.k > 0, 1.0 / np.maximum(self.k, 1), 0.0)

    def by_k(self, eligible: Int64s, dropped: Int64s, level: float) -> list[dict[str, Any]]:
        """One entry per k: units, eligible, dropped, rate, expected and band; short answers when there are any."""
        groups = []
        for k in np.unique(self.k).tolist():
            chosen = self.k == k
            e, d = int(eligible[chosen].sum()), int(dropped[chosen].sum())
            p = 1.0 / k if k > 0 else 0.0
            low, high = band_limits([e], p, level)
            entry: dict[str, Any] = {
                "k": int(k), "units": int(chosen.sum()), "assistant_tokens": int(self.assistant[chosen].sum()),
                "eligible": e, "dropped": d, "rate": d / e if e else None, "expected_rate": p,
                "rate_band": [int(low[0]) / e, int(high[0]) / e] if e else None,
            }  # fmt: skip
            if k in self.short:
                answers, se, sd = self.short[k]
                slow, shigh = band_limits([se], p, level)
                entry["short_answers"] = {
                    "lengths": list(SHORT_ANSWERS), "answers": answers, "eligible": se, "dropped": sd,
                    "rate": sd / se, "rate_band": [int(slow[0]) / se, int(shigh[0]) / se],
                }  # fmt: skip
            groups.append(entry)
        return groups


def combine(parts: list[ChatPart], per_row_k: bool) -> ChatFigures:
    short: dict[int, list[int]] = {}
    for part in parts:
        for k, values in part.short.items():
            short[k] = [a + b for a, b in zip(short.get(k, [0, 0, 0]), values)]
    empty = np.zeros(0, np.int64)
    return ChatFigures(
        assistant=np.concatenate([p.assistant for p in parts]) if parts else empty,
        k=np.concatenate([p.k for p in parts]) if parts else empty,
        short=short,
        per_row_k=per_row_k,
    )


def flag_units(figures: ChatFigures, eligible: Int64s, dropped: Int64s, level: float) -> Int64s:
    """Units outside the band of their own k (grouped, so each k is tested against its own 1/k)."""
    flagged = np.zeros(len(eligible), np.bool_)
    for k in np.unique(figures.k).tolist():
        chosen = figures.k == k
        flagged[chosen] = outside_band(eligible[chosen], dropped[chosen], 1.0 / k if k > 0 else 0.0, level)
    return np.flatnonzero(flagged).astype(np.int64)
