"""``repeats --normalized``: passages repeated up to case, spacing, line wraps, quotes and dashes.

Exact repeats are found on token ids (``repeats``); near-duplicates are not,
because one edit changes the ids. Here the corpus is read as the normalised text
its ids spell (``strategies.normalize``, with the recorded tokenizer's bytes per
id), repeated passages of that text are found with the same window hashing
(``windows``, ``passages``), and each copy's tokens are placed in it by their
normalised ends. Two copies are compared at the token ends they share (their
tokenisations may differ around an edit), and only where the token's context
lies inside the passage in both: its ``h`` ids and its ``h`` normalised words
(before that, text preceding the copy may legitimately decide).

Per passage the report says how many copies disagree with the first, and how
many tokens the first copy drops that another copy supervises at the same place
of the text: the leak, in tokens, that near-copies open under id-based masks.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from goldfish_prep.config import MaskConfig
from goldfish_prep.errors import ConfigError
from goldfish_prep.format.columns import Int64s
from goldfish_prep.inspect.corpus import Corpus, load_corpus
from goldfish_prep.inspect.passages import Passages, merge_windows, passages_hold
from goldfish_prep.inspect.windows import candidate_windows, confirm
from goldfish_prep.strategies.robust_windows import NormalisedTokens, normalised_tokens
from goldfish_prep.tokenizers.token_bytes import recorded_token_bytes

PREVIEW_CHARS = 90


@dataclasses.dataclass(frozen=True)
class NearPassage:
    """One normalised passage: ``count`` copies of ``length`` normalised characters."""

    length: int
    count: int
    #: copies whose token ids differ from the first copy's (near, not exact, duplicates)
    variants: int
    preview: str
    documents: tuple[str, ...]
    #: shared token ends compared, and copies whose decisions there differ from the first copy's
    compared: int
    differing: int
    #: tokens the first copy drops that another copy supervises at the same place of the text
    leaked: int


@dataclasses.dataclass(frozen=True)
class NearRepeatsReport:
    folder: str
    config: MaskConfig
    min_chars: int
    passages: int
    occurrences: int
    passages_with_variants: int
    passages_differing: int
    compared: int
    leaked: int
    top: tuple[NearPassage, ...]

    def to_dict(self) -> dict[str, Any]:
        result = {key: value for key, value in dataclasses.asdict(self).items() if key not in ("config", "top")}
        result["mask"] = self.config.to_dict()
        result["top"] = [dataclasses.asdict(p) for p in self.top]
        return result


def find_near_repeats(folder: str | Path, min_chars: int = 200, top: int = 20) -> NearRepeatsReport:
    """Passages of at least ``min_chars`` normalised characters found at two or more places, and their masks."""
    if min_chars < 2 or top < 0:
        raise ConfigError(f"min_chars must be >= 2 and top >= 0, got {min_chars} and {top}")
    corpus = load_corpus(folder)
    table = recorded_token_bytes(corpus.manifest.tokenizer)
    view = normalised_tokens(corpus.ids, corpus.starts, table, corpus.config.context_width)
    text = view.norm.astype(np.int32)  # code points < 0x110000 fit int32
    starts, groups = candidate_windows(text, view.doc_start, min_chars)
    passages = merge_windows(starts, groups, view.doc_start, min_chars)
    if not passages_hold(text, passages):
        starts, groups = confirm(text, starts, groups, min_chars)
        passages = merge_windows(starts, groups, view.doc_start, min_chars)
    comparable = _comparable(view, corpus)
    results = [_compare(corpus, view, comparable, passages, p) for p in range(len(passages))]
    order = sorted(range(len(passages)), key=lambda p: (-results[p].variants, -int(passages.count[p]), -int(passages.length[p])))
    return NearRepeatsReport(
        folder=str(folder),
        config=corpus.config,
        min_chars=min_chars,
        passages=len(passages),
        occurrences=len(passages.occ_start),
        passages_with_variants=sum(1 for r in results if r.variants),
        passages_differing=sum(1 for r in results if r.differing),
        compared=sum(r.compared for r in results),
        leaked=sum(r.leaked for r in results),
        top=tuple(results[p] for p in order[:top]),
    )


def _comparable(view: NormalisedTokens, corpus: Corpus) -> tuple[npt.NDArray[np.bool_], Int64s]:
    """Per token: spells something, and where its context begins in the normalised text.

    The context begins at the earlier of its robust window's start and the start
    of the first of its ``h`` ids, so a token is compared only where both kinds
    of masks see nothing but the passage.
    """
    h = corpus.config.context_width
    n = len(corpus.ids)
    local = np.arange(n, dtype=np.int64) - np.repeat(corpus.starts, corpus.lengths)
    before_window = np.arange(n, dtype=np.int64) - h  # the token just before the h ids ending at t
    id_context = np.where(local >= h, view.token_end[np.maximum(before_window, 0)], -1)
    context = np.where(view.enough, np.minimum(view.window_start, id_context), -1)
    return view.nonempty, context


def _compare(
    corpus: Corpus, view: NormalisedTokens, comparable: tuple[npt.NDArray[np.bool_], Int64s], passages: Passages, p: int
) -> NearPassage:
    nonempty, context = comparable
    length = int(passages.length[p])
    copies = passages.occ_start[passages.occ_passage == p]
    decisions: list[dict[int, bool]] = []
    spans: list[bytes] = []
    for a in copies.tolist():
        low = int(np.searchsorted(view.token_end, a, side="right"))
        high = int(np.searchsorted(view.token_end, a + length, side="right"))
        tokens = np.arange(low, high)
        keep = tokens[nonempty[low:high] & (context[low:high] >= a)]
        decisions.append(dict(zip((view.token_end[keep] - a).tolist(), corpus.drop[keep].tolist())))
        # ids of the tokens wholly inside the copy: a token starts where the one before it ends
        first_inside = int(np.searchsorted(view.token_end, a, side="left")) + 1 if a else 0
        spans.append(corpus.ids[first_inside:high].tobytes())
    first = decisions[0]
    differing = sum(1 for d in decisions[1:] if any(first[e] != d[e] for e in first.keys() & d.keys()))
    supervised_elsewhere = {e for d in decisions[1:] for e, dropped in d.items() if not dropped}
    leaked = sum(1 for e, dropped in first.items() if dropped and e in supervised_elsewhere)
    compared = sum(len(first.keys() & d.keys()) for d in decisions[1:])
    start = int(copies[0])
    preview = "".join(map(chr, view.norm[start : start + PREVIEW_CHARS].tolist()))
    documents = tuple(corpus.name(int(d)) for d in np.searchsorted(view.doc_start, copies[:3], side="right") - 1)
    return NearPassage(length, len(copies), sum(1 for s in spans[1:] if s != spans[0]), preview, documents, compared, differing, leaked)
