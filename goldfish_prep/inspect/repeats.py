"""The memorisation-risk report: passages repeated across the corpus, and what their masks do to them.

A passage seen many times is what a model memorises. The goldfish loss protects
it only if every copy loses the *same* tokens: then those tokens are never
supervised in that context, wherever the copy sits. This module finds repeated
passages by hashing (``windows``, ``passages``), then checks, for all of them
at once, that every occurrence carries the mask of the first one from the
``context_width``-th token on (before that, a token's window reaches into text
that precedes the passage, which may differ), and counts the tokens dropped in
every occurrence: the ones the model never learns to reproduce.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from goldfish_prep.config import MaskConfig
from goldfish_prep.errors import ConfigError, GoldfishError
from goldfish_prep.format.chat import is_chat
from goldfish_prep.format.columns import Int64s
from goldfish_prep.format.manifest import load_manifest
from goldfish_prep.inspect.answer_repeats import load_answer_corpus
from goldfish_prep.inspect.corpus import Corpus, load_corpus
from goldfish_prep.inspect.passages import Passages, merge_windows, passages_hold, spans
from goldfish_prep.inspect.windows import candidate_windows, confirm

#: occurrences listed per passage (the count covers all of them)
LISTED = 20
#: tokens of a passage decoded for its preview
PREVIEW_TOKENS = 40


@dataclasses.dataclass(frozen=True)
class Occurrence:
    document: str
    position: int


@dataclasses.dataclass(frozen=True)
class RepeatedPassage:
    """One passage: ``count`` occurrences of ``length`` tokens, and its masks across them."""

    length: int
    count: int
    preview: str
    occurrences: tuple[Occurrence, ...]
    #: occurrences whose mask differs from the first occurrence's, from token ``context_width`` on
    differing: int
    #: tokens dropped in every occurrence: never supervised in this context
    dropped_everywhere: int

    @property
    def supervised(self) -> int:
        """Tokens supervised in at least one occurrence."""
        return self.length - self.dropped_everywhere


@dataclasses.dataclass(frozen=True)
class RepeatsReport:
    folder: str
    config: MaskConfig
    min_length: int
    total_tokens: int
    covered_tokens: int
    passages: int
    occurrences: int
    passages_differing: int
    collisions: bool
    top: tuple[RepeatedPassage, ...]
    #: chat outputs: passages are searched in the answers only; how many answers there are
    answers: int | None = None

    def to_dict(self) -> dict[str, Any]:
        result = {key: value for key, value in dataclasses.asdict(self).items() if key not in ("config", "top", "answers")}
        result["searched_answers"] = self.answers
        result["mask"] = self.config.to_dict()
        result["top"] = [{**dataclasses.asdict(p), "supervised": p.supervised} for p in self.top]
        return result


def find_repeats(folder: str | Path, min_length: int = 50, top: int = 20) -> RepeatsReport:
    """Passages of at least ``min_length`` tokens found at two or more places, the ``top`` most repeated first."""
    if min_length < 1 or top < 0:
        raise ConfigError(f"min_length must be >= 1 and top >= 0, got {min_length} and {top}")
    answer_corpus = load_answer_corpus(folder) if is_chat(load_manifest(folder)) else None
    corpus = answer_corpus.corpus if answer_corpus is not None else load_corpus(folder)
    passages, collisions = locate_passages(corpus, min_length)
    differing, dropped_everywhere = mask_agreement(corpus, passages, _robust_context(corpus))
    preview = _previewer(corpus)
    answers = len(answer_corpus.corpus.starts) if answer_corpus is not None else None
    chosen = tuple(_describe(corpus, passages, p, differing, dropped_everywhere, preview) for p in _most_repeated(passages, top))
    return RepeatsReport(
        folder=str(folder),
        config=corpus.config,
        min_length=min_length,
        total_tokens=len(corpus.ids),
        covered_tokens=_covered(passages),
        passages=len(passages),
        occurrences=len(passages.occ_start),
        passages_differing=int(np.count_nonzero(differing)),
        collisions=collisions,
        top=chosen,
        answers=answers,
    )


def locate_passages(corpus: Corpus, min_length: int) -> tuple[Passages, bool]:
    """Passages, and whether a hash collision had to be resolved by the exact (slower) path."""
    starts, groups = candidate_windows(corpus.ids, corpus.starts, min_length)
    passages = merge_windows(starts, groups, corpus.starts, min_length)
    if passages_hold(corpus.ids, passages):
        return passages, False
    starts, groups = confirm(corpus.ids, starts, groups, min_length)
    return merge_windows(starts, groups, corpus.starts, min_length), True


def mask_agreement(corpus: Corpus, passages: Passages, context: Int64s | None = None) -> tuple[Int64s, Int64s]:
    """Per passage: (occurrences whose mask differs from the first's, tokens dropped in every occurrence).

    A token is compared once its context lies inside the passage: from offset
    ``context_width`` on, or where ``context[t]`` (the first token of t's
    context, robust masks) is inside the occurrence.
    """
    width = corpus.config.context_width
    differs = np.zeros(len(passages.occ_start), np.bool_)
    slot_base = np.concatenate([[0], np.cumsum(passages.length)])
    drops = np.zeros(int(slot_base[-1]), np.int64)  # per (passage, offset): occurrences that drop it
    for occ, offset, position in spans(passages):
        passage = passages.occ_passage[occ]
        dropped = corpus.drop[position]
        reference = corpus.drop[passages.first[passage] + offset]
        if context is None:
            inside = offset >= width
        else:  # a word may run on before the passage in one copy only: both contexts must lie inside
            first = passages.first[passage]
            inside = (context[position] >= position - offset) & (context[first + offset] >= first)
        differs[np.unique(occ[(dropped != reference) & inside])] = True
        slots = slot_base[passage] + offset
        low = int(slots[0])
        drops[low : int(slots[-1]) + 1] += np.bincount(slots[dropped] - low, minlength=int(slots[-1]) + 1 - low)
    everywhere = drops == np.repeat(passages.count, passages.length)
    running = np.concatenate([[0], np.cumsum(everywhere)])
    dropped_everywhere = running[slot_base[1:]] - running[slot_base[:-1]]
    return np.bincount(passages.occ_passage[differs], minlength=len(passages)), dropped_everywhere


def _robust_context(corpus: Corpus) -> Int64s | None:
    """For masks decided on normalised text (robust): the first token of each token's window of h units (else None)."""
    from goldfish_prep.strategies.robust_windows import normalised_tokens
    from goldfish_prep.tokenizers.token_bytes import recorded_table

    table = recorded_table(corpus.config, corpus.manifest.tokenizer)
    if table is None:
        return None
    view = normalised_tokens(corpus.ids, corpus.starts, table, corpus.config.context_width)
    first = np.searchsorted(view.token_end, view.window_start, side="right").astype(np.int64)
    # a token without h units before it in its document is never dropped, where a copy further into
    # another document may be: its context is the whole document before it, so it is never compared
    return np.where(view.enough, first, -1)


def _most_repeated(passages: Passages, top: int) -> list[int]:
    """The ``top`` passages by count (then length), skipping any whose first occurrence overlaps an
    occurrence of one already chosen: those are variants of the same text (a notice with another name)."""
    chosen: list[int] = []
    taken_starts, taken_ends = np.zeros(0, np.int64), np.zeros(0, np.int64)
    for p in np.lexsort((-passages.length, -passages.count))[: top * 50].tolist():
        if len(chosen) == top:
            break
        low, high = passages.first[p], passages.first[p] + passages.length[p]
        if np.any((taken_starts < high) & (low < taken_ends)):
            continue
        chosen.append(p)
        mine = passages.occ_start[passages.occ_passage == p]
        taken_starts = np.concatenate([taken_starts, mine])
        taken_ends = np.concatenate([taken_ends, mine + passages.length[p]])
    return chosen


def _covered(passages: Passages) -> int:
    """Tokens inside at least one occurrence (the union of all occurrence spans)."""
    if not len(passages.occ_start):
        return 0
    order = np.argsort(passages.occ_start, kind="stable")
    starts = passages.occ_start[order]
    ends = starts + passages.length[passages.occ_passage[order]]
    reach = np.concatenate([[starts[0]], np.maximum.accumulate(ends)[:-1]])
    return int(np.clip(ends - np.maximum(starts, reach), 0, None).sum())


def _describe(
    corpus: Corpus, passages: Passages, p: int, differing: Int64s, everywhere: Int64s, preview: Callable[[list[int]], str]
) -> RepeatedPassage:
    mine = np.flatnonzero(passages.occ_passage == p)[:LISTED]
    positions = passages.occ_start[mine]
    documents = corpus.document_of(positions)
    start = int(passages.first[p])
    return RepeatedPassage(
        length=int(passages.length[p]),
        count=int(passages.count[p]),
        preview=preview(corpus.ids[start : start + min(int(passages.length[p]), PREVIEW_TOKENS)].tolist()),
        occurrences=tuple(Occurrence(corpus.name(int(d)), int(s - corpus.starts[d])) for d, s in zip(documents, positions)),
        differing=int(differing[p]),
        dropped_everywhere=int(everywhere[p]),
    )


def _previewer(corpus: Corpus) -> Callable[[list[int]], str]:
    """Decode with the manifest's tokenizer when it loads here; otherwise show the ids."""
    spec = corpus.manifest.tokenizer.get("spec")
    try:
        from goldfish_prep.tokenizers import load_tokenizer

        if not isinstance(spec, str):
            raise TypeError("the manifest names no tokenizer spec")
        tokenizer = load_tokenizer(spec)
    except (GoldfishError, ImportError, OSError, ValueError, TypeError):
        return lambda ids: "ids " + " ".join(map(str, ids[:12])) + " ..."
    return lambda ids: " ".join(tokenizer.decode(ids).split())
