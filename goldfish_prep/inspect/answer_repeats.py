"""Repeated answers in chat outputs, and whether every copy carries the same mask.

In a chat output the goldfish mask lives in the answers only (answer-local
rule: each answer masked as a sequence of its own, docs/mask-spec.md), so what
``repeats`` searches is the answers end to end, each its own document: a
passage the assistant says in several conversations must lose the same tokens
wherever it is said. Whole answers said more than once ("Sure, here is the
command:", a support macro) are reported apart: the rule promises them the
identical mask from their first token on, whatever prompt came before.
Answers are compared within one k: rows of a ``--k-field`` run with another k
are masked differently by design.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from goldfish_prep.config import MaskConfig
from goldfish_prep.dataset import IGNORE_INDEX, load_manifest, read_shard, shard_paths
from goldfish_prep.inspect.answers import answer_spans, assistant_flags, row_k
from goldfish_prep.inspect.chat_stats import SHORT_ANSWERS
from goldfish_prep.inspect.columns import Int32s, Int64s, shard_stream
from goldfish_prep.inspect.corpus import Corpus

#: repeated answers listed in a report
LISTED = 10


@dataclasses.dataclass(frozen=True)
class AnswerCorpus:
    """The answers of a chat output end to end (a ``Corpus`` whose documents are answers) and each answer's k."""

    corpus: Corpus
    k: Int64s


def load_answer_corpus(folder: str | Path) -> AnswerCorpus:
    """Every answer of every conversation, in order, with its drop flags (label -100 inside the answer)."""
    manifest = load_manifest(folder)
    packed = manifest.get("layout", {}).get("pack") is not None
    config = MaskConfig.from_dict(manifest["mask"])
    default_k = 0 if config.strategy == "none" else config.k
    ids: list[Int32s] = []
    drop: list[npt.NDArray[np.bool_]] = []
    ks: list[Int64s] = []
    lengths: list[Int64s] = []
    names: list[str] = []
    documents_before = 0
    for path in shard_paths(folder, manifest):
        table = read_shard(path)
        stream = shard_stream(table, path, packed)
        starts, ends = answer_spans(assistant_flags(table, path, stream), stream.doc_starts)
        owner = np.searchsorted(stream.doc_starts, starts, side="right") - 1
        recorded = row_k(table, path)
        ks.append(recorded[owner] if recorded is not None else np.full(len(starts), default_k, np.int64))
        take = np.concatenate([np.arange(a, b) for a, b in zip(starts.tolist(), ends.tolist())]) if len(starts) else np.zeros(0, np.int64)
        ids.append(stream.ids[take])
        drop.append(stream.labels[take] == IGNORE_INDEX)
        lengths.append(ends - starts)
        documents = table.column("id").to_pylist() if not packed else [f"document {documents_before + d}" for d in range(len(stream.doc_starts))]
        turn = np.arange(len(owner)) - np.searchsorted(owner, owner, side="left")  # the answer's number within its conversation
        names.extend(f"{documents[d]} answer {t}" for d, t in zip(owner.tolist(), turn.tolist()))
        documents_before += len(stream.doc_starts)
    flat_lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    corpus = Corpus(
        folder=str(folder), manifest=manifest, config=config,
        ids=np.concatenate(ids) if ids else np.zeros(0, np.int32),
        drop=np.concatenate(drop) if drop else np.zeros(0, np.bool_),
        starts=np.concatenate([[0], np.cumsum(flat_lengths)[:-1]]).astype(np.int64) if len(flat_lengths) else np.zeros(0, np.int64),
        doc_ids=pa.array(names, pa.string()), row_starts=np.zeros(1, np.int64),
    )  # fmt: skip
    return AnswerCorpus(corpus, np.concatenate(ks) if ks else np.zeros(0, np.int64))


@dataclasses.dataclass(frozen=True)
class RepeatedAnswer:
    """One answer said ``count`` times (with one k): how many copies' masks differ from the first's."""

    length: int
    count: int
    k: int
    dropped: int
    differing: int
    preview: str
    occurrences: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class AnswerRepeats:
    """Answers said more than once, and whether their copies carry one mask."""

    answers: int
    repeated: int
    copies: int
    differing: int
    #: the same for answers of 2 to 12 tokens (their mask comes from partial windows only)
    short_repeated: int
    short_copies: int
    short_differing: int
    top: tuple[RepeatedAnswer, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**{key: value for key, value in dataclasses.asdict(self).items() if key != "top"},
                "short_lengths": list(SHORT_ANSWERS), "top": [dataclasses.asdict(a) for a in self.top]}  # fmt: skip


def repeated_answers(answers: AnswerCorpus, preview: Any, listed: int = LISTED) -> AnswerRepeats:
    """Group the answers by (k, ids) and compare each copy's drop flags with the first copy's."""
    corpus = answers.corpus
    bounds = np.append(corpus.starts, len(corpus.ids))
    groups: dict[tuple[int, bytes], list[int]] = defaultdict(list)
    for index, (a, b) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist())):
        groups[(int(answers.k[index]), corpus.ids[a:b].tobytes())].append(index)
    figures = {"repeated": 0, "copies": 0, "differing": 0, "short_repeated": 0, "short_copies": 0, "short_differing": 0}
    found: list[RepeatedAnswer] = []
    for (k, _), members in groups.items():
        if len(members) < 2:
            continue
        first = corpus.drop[bounds[members[0]] : bounds[members[0] + 1]]
        differing = sum(not np.array_equal(first, corpus.drop[bounds[m] : bounds[m + 1]]) for m in members[1:])
        length = int(bounds[members[0] + 1] - bounds[members[0]])
        short = SHORT_ANSWERS[0] <= length <= SHORT_ANSWERS[1]
        for prefix in ("", "short_") if short else ("",):
            figures[prefix + "repeated"] += 1
            figures[prefix + "copies"] += len(members)
            figures[prefix + "differing"] += int(differing > 0)
        found.append(RepeatedAnswer(length, len(members), k, int(first.sum()), differing, "", tuple(str(m) for m in members[:3])))
    found.sort(key=lambda a: (-a.count, -a.length))
    top = tuple(_named(corpus, bounds, a, preview) for a in found[:listed])
    return AnswerRepeats(answers=len(corpus.starts), top=top, **figures)


def _named(corpus: Corpus, bounds: Int64s, answer: RepeatedAnswer, preview: Any) -> RepeatedAnswer:
    first = int(answer.occurrences[0])
    text = preview(corpus.ids[bounds[first] : bounds[first] + min(answer.length, 40)].tolist())
    return dataclasses.replace(answer, preview=text, occurrences=tuple(corpus.name(int(m)) for m in answer.occurrences))
