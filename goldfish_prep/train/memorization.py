"""The paper's memorisation measurement.

For each document: the last ``suffix_length`` ids (50 in the paper) are the
suffix, the ids before it the prefix, cut from the left so that prefix and
suffix fit the model's context together. The model continues the prefix by
``suffix_length`` ids, greedily or by beam search (the extraction attack), and
the continuation is scored against the true suffix:

- exact match: all ids equal (the paper's headline rate, over documents);
- token match: the fraction of positions where the ids agree;
- Rouge-L over ids, and over the decoded texts' words when a tokenizer is at hand.

Where a continuation leaves the suffix also says *why* a goldfish model does not
reproduce it. Measured on the shards the model was trained on, whose labels hold
the goldfish mask, the report gives the share of continuations whose first
wrong id falls on a dropped position, next to the share of suffix positions that
are dropped (what a first divergence unrelated to the mask would hit). The paper
found generations leaving the text at the first dropped token; a rate near the
chance level would mean the mask is not what stops the model (for instance,
shards masked otherwise than the training data). Rouge-L counts matches after the
divergence too: a model that falls back into the text after each dropped token
reproduces little verbatim yet scores well above unseen text.

On such shards the suffix is also read with teacher forcing (the true ids fed
in): the share of dropped and of kept positions whose argmax is the true id. A
model trained with the mask predicts its training text's kept ids far better
than its dropped ones; equal rates mean the trainer did not apply the labels
(a collator that rebuilt them from the ids, say).

Chat outputs (conversations): each document is its conversation up to the end
of the final assistant answer; the suffix is the last ``suffix_length`` ids of
that answer (its end-of-turn token included: the model must also stop), the
prefix everything before. Conversations whose final answer is shorter than the
suffix are skipped as too short. ``whole_answer`` makes the suffix the whole
final answer, so the model must reproduce it from the prompt alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from goldfish_prep.errors import ConfigError, InputError
from goldfish_prep.format.names import IGNORE_INDEX
from goldfish_prep.train.causal_lm import CausalLM
from goldfish_prep.train.data import Document, load_documents
from goldfish_prep.train.generate import beam_search, greedy, teacher_forced
from goldfish_prep.train.rouge import rouge_l, text_rouge_l

Decoder = Callable[[Sequence[int]], str]


@dataclasses.dataclass(frozen=True)
class MemorizationConfig:
    suffix_length: int = 50
    num_beams: int = 1
    max_documents: int | None = None
    #: chat outputs: the suffix is the whole final answer, whatever its length (the prompt is the prefix)
    whole_answer: bool = False

    def __post_init__(self) -> None:
        if self.suffix_length < 1 or self.num_beams < 1:
            raise ConfigError(f"--suffix-length and --num-beams must be at least 1, got {self.suffix_length} and {self.num_beams}")
        if self.max_documents is not None and self.max_documents < 1:
            raise ConfigError(f"--max-documents must be at least 1, got {self.max_documents}")


@dataclasses.dataclass(frozen=True)
class DocumentScore:
    doc_id: str
    prefix_length: int
    exact_match: bool
    token_match: float
    rouge_l: float
    text_rouge_l: float | None
    generated: list[int]
    suffix: list[int]
    #: index in the suffix of the first id the continuation gets wrong; None when it reproduces all of them
    first_divergence: int | None = None
    #: suffix positions the data's mask leaves out of the loss (empty for unmasked data)
    dropped: list[int] = dataclasses.field(default_factory=list)
    #: the argmax id at each suffix position given the true ids before it (only when ``dropped``)
    teacher_forced: list[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class MemorizationReport:
    config: MemorizationConfig
    model: dict[str, Any]
    data: str
    documents: list[DocumentScore]
    #: documents too short to hold a suffix and one prefix id
    skipped_short: int

    def _mean(self, values: Sequence[float]) -> float | None:
        return sum(values) / len(values) if values else None

    def summary(self) -> dict[str, Any]:
        """The aggregate figures (the table ``memorization`` prints)."""
        texts = [d.text_rouge_l for d in self.documents if d.text_rouge_l is not None]
        # divergence against the mask: only where the suffix has dropped positions to fall on
        masked = [d for d in self.documents if d.dropped and d.first_divergence is not None]
        forced = [d for d in self.documents if d.teacher_forced]
        hits = {True: [0, 0], False: [0, 0]}  # dropped? -> [right, positions]
        for d in forced:
            dropped = set(d.dropped)
            for j, (guess, truth) in enumerate(zip(d.teacher_forced, d.suffix)):
                hits[j in dropped][0] += guess == truth
                hits[j in dropped][1] += 1
        return {
            "documents": len(self.documents),
            "skipped_short": self.skipped_short,
            "exact_match_rate": self._mean([float(d.exact_match) for d in self.documents]),
            "exact_matches": sum(d.exact_match for d in self.documents),
            "token_match": self._mean([d.token_match for d in self.documents]),
            "rouge_l": self._mean([d.rouge_l for d in self.documents]),
            "text_rouge_l": self._mean(texts) if len(texts) == len(self.documents) else None,
            "verbatim_run": self._mean([len(d.suffix) if d.first_divergence is None else d.first_divergence for d in self.documents]),
            "diverged_on_mask": len(masked),
            "divergence_at_drop": self._mean([float(d.first_divergence in d.dropped) for d in masked]),
            "divergence_at_drop_chance": self._mean([len(d.dropped) / len(d.suffix) for d in masked]),
            "forced_accuracy_dropped": hits[True][0] / hits[True][1] if hits[True][1] else None,
            "forced_accuracy_kept": hits[False][0] / hits[False][1] if hits[False][1] else None,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": dataclasses.asdict(self.config),
            "model": self.model,
            "data": self.data,
            "summary": self.summary(),
            "documents": [dataclasses.asdict(d) for d in self.documents],
        }


def score(generated: Sequence[int], suffix: Sequence[int], decode: Decoder | None = None) -> dict[str, Any]:
    """The per-document metrics of one continuation.

    >>> s = score([1, 2, 3, 9], [1, 2, 3, 4])
    >>> s["exact_match"], s["token_match"], s["rouge_l"]
    (False, 0.75, 0.75)
    """
    matches = sum(a == b for a, b in zip(generated, suffix))
    return {
        "exact_match": list(generated) == list(suffix),
        "token_match": matches / len(suffix) if suffix else 0.0,
        "rouge_l": rouge_l(list(generated), list(suffix)).fmeasure,
        "text_rouge_l": text_rouge_l(decode(generated), decode(suffix)).fmeasure if decode is not None else None,
    }


def first_divergence(generated: Sequence[int], suffix: Sequence[int]) -> int | None:
    """The index of the first id where ``generated`` leaves ``suffix``; None when it never does.

    >>> first_divergence([1, 2, 3, 9], [1, 2, 3, 4]), first_divergence([1, 2], [1, 2])
    (3, None)
    """
    for index, (a, b) in enumerate(zip(generated, suffix)):
        if a != b:
            return index
    return None if len(generated) >= len(suffix) else len(generated)


def split_document(ids: Sequence[int], suffix_length: int, context_length: int) -> tuple[list[int], list[int]]:
    """(prefix, suffix): the suffix is the last ``suffix_length`` ids; the prefix keeps at most
    ``context_length - suffix_length`` ids, its last ones, so that the whole generation fits the context.

    >>> split_document(list(range(10)), 3, 6)
    ([4, 5, 6], [7, 8, 9])
    """
    values = [int(i) for i in ids]
    budget = max(context_length - suffix_length, 1)
    return values[:-suffix_length][-budget:], values[-suffix_length:]


def measure_memorization(
    model: CausalLM,
    data_dir: str | Path,
    config: MemorizationConfig = MemorizationConfig(),
    decode: Decoder | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> MemorizationReport:
    """Run the protocol over every document of ``data_dir`` (or the first ``max_documents``)."""
    chosen, skipped = select_documents(model, data_dir, config)
    return measure_documents(model, chosen, skipped, str(data_dir), config, decode, progress)


def select_documents(model: CausalLM, data_dir: str | Path, config: MemorizationConfig) -> tuple[list[Document], int]:
    """(the documents of ``data_dir`` the protocol measures, how many were too short), checked against the model."""
    if config.suffix_length >= model.context_length:
        raise ConfigError(
            f"--suffix-length {config.suffix_length} leaves no room for a prefix in the model's context of {model.context_length}"
        )
    documents = load_documents(data_dir)
    eligible = [d for d in documents if _long_enough(d, config)]
    chosen = eligible[: config.max_documents] if config.max_documents else eligible
    _check_vocabulary(model, chosen, data_dir)
    return chosen, len(documents) - len(eligible)


def measure_documents(
    model: CausalLM,
    documents: Sequence[Document],
    skipped_short: int,
    data: str,
    config: MemorizationConfig = MemorizationConfig(),
    decode: Decoder | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> MemorizationReport:
    """The protocol over ``documents`` (as ``select_documents`` chose them)."""
    scores = []
    for index, document in enumerate(documents):
        scores.append(_score_document(model, document, config, decode))
        if progress is not None:
            progress(index + 1, len(documents))
    return MemorizationReport(config, model.description, data, scores, skipped_short)


def _long_enough(document: Document, config: MemorizationConfig) -> bool:
    """A suffix and at least one prefix id fit; in chat outputs the suffix must lie inside the final answer."""
    answer = document.answer_length
    if config.whole_answer:
        if answer is None:
            raise ConfigError("--whole-answer needs a chat output (conversations masked with their assistant_masks)")
        return 0 < answer < len(document.ids)
    if len(document.ids) <= config.suffix_length:
        return False
    return answer is None or answer >= config.suffix_length


def prefix_and_suffix(document: Document, config: MemorizationConfig, context_length: int) -> tuple[list[int], list[int]]:
    """The prefix the model continues and the suffix it should reproduce, for one document."""
    suffix_length = document.answer_length if config.whole_answer and document.answer_length else config.suffix_length
    if suffix_length >= context_length:
        raise ConfigError(
            f"{document.doc_id}: its final answer of {suffix_length} ids does not fit the model's context of {context_length} with a prompt"
        )
    return split_document(document.ids.tolist(), suffix_length, context_length)


def _score_document(model: CausalLM, document: Document, config: MemorizationConfig, decode: Decoder | None) -> DocumentScore:
    prefix, suffix = prefix_and_suffix(document, config, model.context_length)
    if config.num_beams > 1:
        generated = beam_search(model, prefix, len(suffix), config.num_beams)
    else:
        generated = greedy(model, prefix, len(suffix))
    dropped = np.flatnonzero(document.labels[-len(suffix) :] == IGNORE_INDEX).tolist()
    forced = teacher_forced(model, prefix, suffix) if dropped else []
    return DocumentScore(
        document.doc_id, len(prefix), generated=generated, suffix=suffix, first_divergence=first_divergence(generated, suffix),
        dropped=dropped, teacher_forced=forced, **score(generated, suffix, decode),
    )  # fmt: skip


def _check_vocabulary(model: CausalLM, documents: list[Document], data_dir: str | Path) -> None:
    largest = max((int(d.ids.max()) for d in documents if len(d.ids)), default=-1)
    if largest >= model.vocab_size:
        raise InputError(
            str(data_dir),
            f"token id {largest} is outside the model's vocabulary of {model.vocab_size}: the shards were made with another tokenizer",
            "Measure the model on shards prepared with its own tokenizer",
            "vocab-mismatch",
        )


def text_decoder(data_dir: str | Path, spec: str | None = None) -> tuple[Decoder | None, str | None]:
    """The decoder of the shards' tokenizer (or of ``spec``) for text-level Rouge-L, and why not if none.

    A tokenizer named explicitly must load; the one recorded in the manifest may be
    gone (a relative path, a hub id seen offline), and text Rouge-L is then left
    out with the reason rather than failing the whole measurement.
    """
    from goldfish_prep.errors import TokenizerError
    from goldfish_prep.format.manifest import load_manifest
    from goldfish_prep.tokenizers import load_tokenizer

    if spec is not None:
        return load_tokenizer(spec).decode, None
    recorded = load_manifest(data_dir).tokenizer.get("spec")
    if not recorded:
        return None, "the manifest names no tokenizer; pass --tokenizer"
    try:
        return load_tokenizer(str(recorded)).decode, None
    except TokenizerError as exc:
        return None, f"the manifest's tokenizer {recorded!r} did not load ({exc}); pass --tokenizer"
