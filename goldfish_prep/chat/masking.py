"""A batch of conversations in a worker: render and tokenize them, then mask each answer on its own.

The pure rule is ``strategies.answer_local``; this module finds its inputs in
a flat batch: the answers (maximal runs of assistant tokens within a
document), which of their tokens may be dropped (not special, not
``--keep-ids``), and each token's k (the record's own from ``--k-field``, else
the run's ``--k``; 0 and ``--strategy none``: nothing dropped).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from goldfish_prep.config import MaskConfig
from goldfish_prep.errors import InputError
from goldfish_prep.readers.records import Record
from goldfish_prep.strategies.answer_local import answer_drops


@dataclasses.dataclass(frozen=True)
class ChatSetup:
    """What a worker needs to render conversations; small and picklable (the template travels as text)."""

    template_text: str
    train_on_prompt: bool = False
    keep_ids: tuple[int, ...] = ()


@dataclasses.dataclass
class ChatTokens:
    """Documents end to end with the assistant's tokens, the droppable ones, and each document's k."""

    ids: npt.NDArray[np.int32]
    starts: npt.NDArray[np.int64]
    assistant: npt.NDArray[np.bool_]
    eligible: npt.NDArray[np.bool_]
    k: npt.NDArray[np.int32]
    kept: list[Record]


def drops_nothing(mask: MaskConfig) -> bool:
    """The standard-loss control (``--strategy none``): answers keep every token."""
    return mask.strategy_object.expected_rate(mask) == 0.0


def masks_answers(mask: MaskConfig) -> bool:
    """Whether answer-local masking implements ``mask`` (``goldfish``, every spec version, and ``none``).

    The strategy says so itself: a strategy whose rule is not answer-local
    (``robust`` decides on normalised text, ``hash-table``, ``static``) is
    refused for chat records instead of being silently replaced by goldfish's.
    """
    return mask.strategy_object.masks_chat_answers


def tokenize_chats(
    records: Sequence[Record], tokenizer_spec: str, setup: ChatSetup, mask: MaskConfig, errors: list[InputError]
) -> ChatTokens:
    """Render and tokenize ``records``; records the template fails on are appended to ``errors``."""
    from goldfish_prep.chat.render import chat_renderer

    renderer = chat_renderer(tokenizer_spec, setup.template_text, setup.keep_ids)
    pieces: list[npt.NDArray[np.int32]] = []
    assistant: list[npt.NDArray[np.bool_]] = []
    protected: list[npt.NDArray[np.bool_]] = []
    kept: list[Record] = []
    ks: list[int] = []
    default_k = 0 if drops_nothing(mask) else mask.k
    for record, rendered in zip(records, renderer.render_batch(records, setup.train_on_prompt)):
        if isinstance(rendered, InputError):
            errors.append(rendered)
            continue
        pieces.append(rendered.ids)
        assistant.append(rendered.assistant)
        protected.append(rendered.protected)
        kept.append(record)
        ks.append(default_k if record.k is None or drops_nothing(mask) else record.k)
    lengths = np.array([len(p) for p in pieces], dtype=np.int64)
    starts = np.zeros(len(pieces), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])

    ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
    is_assistant = np.concatenate(assistant) if assistant else np.zeros(0, dtype=np.bool_)
    eligible = is_assistant & ~(np.concatenate(protected) if protected else np.zeros(0, dtype=np.bool_))
    return ChatTokens(ids, starts, is_assistant, eligible, np.array(ks, dtype=np.int32), kept)


def mask_answers(tokens: ChatTokens, mask: MaskConfig) -> npt.NDArray[np.bool_]:
    """Answer-local drop decisions over the whole batch (False off the answers)."""
    n = len(tokens.ids)
    drop = np.zeros(n, dtype=np.bool_)
    if n == 0 or not tokens.assistant.any():
        return drop
    doc_head = np.zeros(n, dtype=np.bool_)
    doc_head[tokens.starts] = True
    previous = np.concatenate([[False], tokens.assistant[:-1]])
    run_head = tokens.assistant & (doc_head | ~previous)
    where = np.flatnonzero(tokens.assistant)
    run_starts = np.flatnonzero(run_head[where])
    lengths = np.diff(np.append(tokens.starts, n))
    k_per_token = np.repeat(tokens.k, lengths)[where]
    drop[where] = answer_drops(tokens.ids[where], run_starts, tokens.eligible[where], k_per_token, mask.context_width, mask.seed)
    return drop
