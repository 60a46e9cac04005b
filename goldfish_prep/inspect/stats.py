"""Mask rates of an output folder: overall, per document, and the documents that stray from 1/k.

Everything is computed from the ``labels`` lists themselves (not from the
``num_dropped`` column, which is only compared), whole shards at a time: one
comparison and one cumulative sum over each shard's flat labels, then per-row
differences at the list offsets. A rate is dropped / eligible, where eligible
positions are those the strategy could drop (``mask.eligible_counts``), so
short documents are not mistaken for under-masked ones.

Packed outputs have no document rows: their figures are per packed row.
Chat outputs are rated over assistant tokens only (``chat_stats``), per k.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from goldfish_prep.config import MaskConfig
from goldfish_prep.format.chat import is_chat
from goldfish_prep.format.columns import Int64s, TokenStream, int_column, per_row_counts
from goldfish_prep.format.location import Location
from goldfish_prep.format.manifest import Manifest
from goldfish_prep.format.names import IGNORE_INDEX
from goldfish_prep.format.reader import open_shards
from goldfish_prep.inspect.binomial import band_limits, outside_band
from goldfish_prep.inspect.chat_stats import ChatFigures, ChatPart, combine, flag_units, shard_part
from goldfish_prep.inspect.coverage import Coverage
from goldfish_prep.inspect.never_dropped import never_dropped_ids
from goldfish_prep.inspect.packed import eligible_per_row
from goldfish_prep.inspect.robust_masks import robust_recompute
from goldfish_prep.mask import eligible_counts, expected_rate
from goldfish_prep.tokenizers.token_bytes import recorded_table

PERCENTILES = (1, 5, 25, 50, 75, 95, 99)


@dataclasses.dataclass(frozen=True)
class MaskStats:
    """Per-unit figures (documents, or packed rows) and what follows from them."""

    folder: str
    manifest: Manifest
    config: MaskConfig
    packed: bool
    names: list[str]
    tokens: Int64s
    eligible: Int64s
    dropped: Int64s
    band_level: float
    flagged: Int64s
    #: rows whose num_tokens / num_dropped columns disagree with their lists (run verify)
    column_disagreements: int
    #: chat outputs: assistant tokens and k per unit (``eligible`` and ``dropped`` then count assistant tokens only)
    chat: ChatFigures | None = None

    @property
    def unit(self) -> str:
        return "row" if self.packed else "document"

    @property
    def expected_rate(self) -> float:
        """1/k; with rows of several k (``--k-field``), the mean of their 1/k weighted by eligible tokens."""
        if self.chat is None or not self.chat.per_row_k:
            return expected_rate(self.config)
        total = int(self.eligible.sum())
        return float((self.eligible * self.chat.expected_per_unit()).sum() / total) if total else 0.0

    @property
    def coverage(self) -> Coverage:
        """Eligible and dropped tokens as shares of all tokens (chat: judged against the assistant's)."""
        supervised = int(self.chat.assistant.sum()) if self.chat is not None else int(self.tokens.sum())
        return Coverage(int(self.tokens.sum()), int(self.eligible.sum()), int(self.dropped.sum()), supervised, self.chat is not None)

    @property
    def overall_rate(self) -> float:
        total = int(self.eligible.sum())
        return int(self.dropped.sum()) / total if total else 0.0

    @property
    def rates(self) -> npt.NDArray[np.float64]:
        """Rate of every unit with at least one eligible position (others have no rate)."""
        has = self.eligible > 0
        return self.dropped[has] / self.eligible[has]

    def overall_band(self) -> tuple[float, float]:
        """The ``band_level`` band of the overall rate, if all decisions were independent."""
        total = int(self.eligible.sum())
        if self.chat is not None and self.chat.per_row_k:  # several k: the groups' bands added (a little wider than exact)
            groups = self.chat.by_k(self.eligible, self.dropped, self.band_level)
            edges = [(g["rate_band"][0] * g["eligible"], g["rate_band"][1] * g["eligible"]) for g in groups if g["eligible"]]
            return (round(sum(e[0] for e in edges)) / total, round(sum(e[1] for e in edges)) / total) if total else (0.0, 0.0)
        low, high = band_limits([total], self.expected_rate, self.band_level)
        return (int(low[0]) / total, int(high[0]) / total) if total else (0.0, 0.0)

    def percentiles(self) -> dict[str, float]:
        rates = self.rates
        if not len(rates):
            return {}
        return {f"p{q}": float(v) for q, v in zip(PERCENTILES, np.percentile(rates, PERCENTILES))}

    def histogram(self, bins: int = 20) -> tuple[npt.NDArray[np.float64], Int64s, int, int]:
        """(edges, counts, below, above): equal bins over the central 98% of rates (widened to hold 1/k).

        Very short documents have extreme rates (0 or 1 of a handful of
        positions); counting them in ``below``/``above`` keeps the bins readable.
        """
        rates = self.rates
        if not len(rates):
            return np.zeros(0), np.zeros(0, np.int64), 0, 0
        low = min(float(np.percentile(rates, 1)), self.expected_rate)
        high = max(float(np.percentile(rates, 99)), self.expected_rate)
        if high - low < 1e-9:
            low, high = low - 0.01, high + 0.01
        counts, edges = np.histogram(rates, bins=bins, range=(low, high))
        return edges, counts.astype(np.int64), int((rates < low).sum()), int((rates > high).sum())

    def to_dict(self, per_unit: bool = True) -> dict[str, Any]:
        """Everything, JSON-ready; ``per_unit`` adds one entry per document (or row)."""
        low, high = self.overall_band()
        result: dict[str, Any] = {
            "folder": self.folder,
            "mask": self.config.to_dict(),
            "unit": self.unit,
            "units": len(self.tokens),
            "counts": {key: self.manifest.counts.get(key) for key in ("documents_read", "documents_written", "documents_skipped")},
            "tokens": int(self.tokens.sum()),
            "eligible": int(self.eligible.sum()),
            "dropped": int(self.dropped.sum()),
            "rate": self.overall_rate,
            "eligible_share": self.coverage.eligible_share,
            "dropped_share": self.coverage.dropped_share,
            "coverage_warning": self.coverage.warning(self.config),
            "expected_rate": self.expected_rate,
            "rate_band": [low, high],
            "band_level": self.band_level,
            "percentiles": self.percentiles(),
            "flagged": [self._entry(int(i)) for i in self.flagged],
            "column_disagreements": self.column_disagreements,
        }
        if self.chat is not None:
            result["chat"] = {
                "assistant_tokens": int(self.chat.assistant.sum()),
                "by_k": self.chat.by_k(self.eligible, self.dropped, self.band_level),
            }
        if per_unit:
            result[f"{self.unit}s"] = [self._entry(i) for i in range(len(self.tokens))]
        return result

    def _entry(self, i: int) -> dict[str, Any]:
        eligible = int(self.eligible[i])
        entry: dict[str, Any] = {
            "id": self.names[i],
            "tokens": int(self.tokens[i]),
            "eligible": eligible,
            "dropped": int(self.dropped[i]),
            "rate": int(self.dropped[i]) / eligible if eligible else None,
        }
        if self.chat is not None:
            entry.update(assistant=int(self.chat.assistant[i]), k=int(self.chat.k[i]))
        return entry


def compute_stats(folder: str | Path, band_level: float = 0.999, tokenizer: str | None = None) -> MaskStats:
    """Read every shard once and gather per-unit tokens, eligible positions and dropped tokens.

    For example, ``compute_stats("shards/").overall_rate`` is about 0.25 for k=4,
    and ``.flagged`` indexes ``.names`` of the documents outside the band.
    """
    shards = open_shards(folder)
    manifest, config, packed = shards.manifest, shards.manifest.mask, shards.packed
    names: list[str] = []
    parts: list[tuple[Int64s, Int64s, Int64s]] = []
    chat_parts: list[ChatPart] = []
    never = never_dropped_ids(manifest, tokenizer) if is_chat(manifest) else np.zeros(0, np.int64)
    disagreements, lead = 0, 0
    token_table = recorded_table(config, manifest.tokenizer)
    for batch in shards.batches():
        table, stream, path = batch.table, batch.stream, batch.path
        tokens = np.diff(stream.row_starts)
        dropped = _dropped_per_row(stream)
        if is_chat(manifest):
            chat_parts.append(shard_part(table, path, stream, never, config))
            # num_dropped counts goldfish drops among assistant tokens only (the prompt's -100 is no drop)
            disagreements += _column_disagreements(table, path, tokens, chat_parts[-1].dropped)
            parts.append((tokens, chat_parts[-1].eligible, chat_parts[-1].dropped))
            names.extend(_names(table, path, stream, packed, len(names)))
            continue
        if token_table is not None:  # robust: eligible positions depend on the text (mask's packed shards carry nothing over)
            eligible = robust_recompute(stream, np.zeros(0, np.int32), config, token_table)[1]
            first_row = len(names)
            names.extend([f"row {first_row + r}" for r in range(stream.num_rows)] if packed else table.column("id").to_pylist())
        elif packed:
            eligible, lead = eligible_per_row(stream, lead, config)
            first_row = len(names)
            names.extend(f"row {first_row + r}" for r in range(stream.num_rows))
        else:
            eligible = eligible_counts(tokens, config)
            names.extend(table.column("id").to_pylist() if "id" in table.column_names else [str(path)] * stream.num_rows)
        disagreements += _column_disagreements(table, path, tokens, dropped)
        parts.append((tokens, eligible, dropped))
    tokens, eligible, dropped = (np.concatenate([p[i] for p in parts]) if parts else np.zeros(0, np.int64) for i in range(3))
    if is_chat(manifest):
        chat = combine(chat_parts, per_row_k=manifest.k_field is not None)
        flagged = flag_units(chat, eligible, dropped, band_level)
        return MaskStats(str(folder), manifest, config, packed, names, tokens, eligible, dropped, band_level, flagged, disagreements, chat)
    flagged = np.flatnonzero(outside_band(eligible, dropped, expected_rate(config), band_level))
    return MaskStats(str(folder), manifest, config, packed, names, tokens, eligible, dropped, band_level, flagged, disagreements)


def _names(table: Any, path: Location, stream: TokenStream, packed: bool, before: int) -> list[str]:
    if packed:
        return [f"row {before + r}" for r in range(stream.num_rows)]
    return table.column("id").to_pylist() if "id" in table.column_names else [str(path)] * stream.num_rows


def _dropped_per_row(stream: TokenStream) -> Int64s:
    """-100 labels per row."""
    return per_row_counts(stream.labels == IGNORE_INDEX, stream.row_starts)


def _column_disagreements(table: Any, path: Location, tokens: Int64s, dropped: Int64s) -> int:
    columns = [int_column(table, name, path) for name in ("num_tokens", "num_dropped")]
    return int(np.count_nonzero((columns[0] != tokens) | (columns[1] != dropped)))
