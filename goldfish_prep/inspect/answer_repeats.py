"""The answers of a chat output as a corpus of their own: what ``repeats`` searches for passages.

In a chat output the goldfish mask lives in the answers only (answer-local
rule: each answer masked as a sequence of its own, docs/mask-spec.md), and the
prompt is never supervised, so repeated passages are searched in the answers
end to end, each answer its own document: a passage the assistant says in
several conversations must lose the same tokens wherever it is said, from its
``context_width``-th token on. (Whole answers said more than once are
``answers.answer_agreement``'s.)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from goldfish_prep.format.chat import answer_spans, assistant_flags, row_k, run_k
from goldfish_prep.format.columns import Int32s, Int64s
from goldfish_prep.format.names import IGNORE_INDEX
from goldfish_prep.format.reader import open_shards
from goldfish_prep.inspect.corpus import Corpus


@dataclasses.dataclass(frozen=True)
class AnswerCorpus:
    """The answers of a chat output end to end (a ``Corpus`` whose documents are answers) and each answer's k."""

    corpus: Corpus
    k: Int64s


def load_answer_corpus(folder: str | Path) -> AnswerCorpus:
    """Every answer of every conversation, in order, with its drop flags (label -100 inside the answer)."""
    shards = open_shards(folder)
    manifest, config, packed = shards.manifest, shards.manifest.mask, shards.packed
    default_k = run_k(config)
    ids: list[Int32s] = []
    drop: list[npt.NDArray[np.bool_]] = []
    ks: list[Int64s] = []
    lengths: list[Int64s] = []
    names: list[str] = []
    for batch in shards.batches():
        table, stream, path = batch.table, batch.stream, batch.path
        starts, ends = answer_spans(assistant_flags(table, path, stream), stream.doc_starts)
        owner = np.searchsorted(stream.doc_starts, starts, side="right") - 1
        recorded = row_k(table, path)
        ks.append(recorded[owner] if recorded is not None else np.full(len(starts), default_k, np.int64))
        take = np.concatenate([np.arange(a, b) for a, b in zip(starts.tolist(), ends.tolist())]) if len(starts) else np.zeros(0, np.int64)
        ids.append(stream.ids[take])
        drop.append(stream.labels[take] == IGNORE_INDEX)
        lengths.append(ends - starts)
        documents = (
            table.column("id").to_pylist()
            if not packed
            else [f"document {batch.documents_before + d}" for d in range(len(stream.doc_starts))]
        )
        turn = np.arange(len(owner)) - np.searchsorted(owner, owner, side="left")  # the answer's number within its conversation
        names.extend(f"{documents[d]} answer {t}" for d, t in zip(owner.tolist(), turn.tolist()))
    flat_lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    corpus = Corpus(
        folder=str(folder), manifest=manifest, config=config,
        ids=np.concatenate(ids) if ids else np.zeros(0, np.int32),
        drop=np.concatenate(drop) if drop else np.zeros(0, np.bool_),
        starts=np.concatenate([[0], np.cumsum(flat_lengths)[:-1]]).astype(np.int64) if len(flat_lengths) else np.zeros(0, np.int64),
        doc_ids=pa.array(names, pa.string()), row_starts=np.zeros(1, np.int64),
    )  # fmt: skip
    return AnswerCorpus(corpus, np.concatenate(ks) if ks else np.zeros(0, np.int64))
