"""Tokenize and mask one batch of records: the work a pipeline worker does.

A batch is a list of ``Record`` objects (or JSON lines still to parse into
one, ``JsonLine``) and the ``InputError`` items a reader yielded in their place. The result keeps the errors beside the documents so the
main process can stop at, or skip and count, every bad record, whichever worker
found it. Documents are masked as one flat array (``mask_documents``): the
vectorised hashes are only fast on long arrays.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from goldfish_prep.chat.masking import ChatSetup, mask_answers, tokenize_chats
from goldfish_prep.config import MaskConfig
from goldfish_prep.errors import ConfigError, InputError
from goldfish_prep.mask import mask_and_eligible
from goldfish_prep.readers.jsonl import parse_line
from goldfish_prep.readers.options import ReaderOptions
from goldfish_prep.readers.records import JsonLine, Record
from goldfish_prep.strategies import Extras


@dataclasses.dataclass(frozen=True)
class BatchContext:
    """What a worker needs besides the records; small and picklable."""

    tokenizer_spec: str
    add_bos: bool
    add_eos: bool
    mask: MaskConfig
    #: ids of pre-tokenized records must lie below this; None when the user named no tokenizer
    vocab_size: int | None = None
    #: how to parse ``JsonLine`` items
    reader: ReaderOptions = ReaderOptions()
    #: ``--tokenizer-backend``: which engine encodes (the ids are the same for every choice)
    tokenizer_backend: str = "auto"
    #: chat records: the template and label options (None for text records)
    chat: ChatSetup | None = None


@dataclasses.dataclass
class MaskedBatch:
    """Documents end to end (``ids``, ``drop``), where each starts, and the errors met on the way."""

    ids: npt.NDArray[np.int32]
    starts: npt.NDArray[np.int64]
    drop: npt.NDArray[np.bool_]
    doc_ids: list[str]
    sources: list[str]
    errors: list[InputError]
    #: chat batches: the assistant's tokens, per-document k (``--k-field``), and how many tokens could be dropped
    assistant: npt.NDArray[np.bool_] | None = None
    k: npt.NDArray[np.int32] | None = None
    eligible: int | None = None

    @property
    def lengths(self) -> npt.NDArray[np.int64]:
        return np.diff(np.append(self.starts, len(self.ids)))


def mask_batch(batch: Sequence[Record | JsonLine | InputError], context: BatchContext) -> MaskedBatch:
    """Parse JSON lines, tokenize the text records (one ``encode_batch`` call), add special tokens, check ids, mask."""
    items = [parse_line(item.line, item.location, context.reader) if isinstance(item, JsonLine) else item for item in batch]
    errors = [item for item in items if isinstance(item, InputError)]
    records = [item for item in items if isinstance(item, Record)]
    if context.chat is not None:
        return _mask_chats(records, errors, context, context.chat)
    encoded = iter(_encode_texts([r.text for r in records if r.text is not None], context))
    pieces: list[npt.NDArray[np.int32]] = []
    kept: list[Record] = []
    for record in records:
        if record.text is not None:
            pieces.append(next(encoded))
        else:
            problem = _check_ids(record, context.vocab_size)
            if problem is not None:
                errors.append(problem)
                continue
            pieces.append(np.asarray(record.input_ids, dtype=np.int32))
        kept.append(record)
    lengths = np.array([len(p) for p in pieces], dtype=np.int64)
    starts = np.zeros(len(pieces), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
    drop, eligible = mask_and_eligible(ids, starts, context.mask, _extras(context, len(starts), any(r.text is None for r in kept)))
    return MaskedBatch(ids, starts, drop, [r.doc_id for r in kept], [r.location for r in kept], errors, eligible=int(eligible.sum()))


def _extras(context: BatchContext, num_documents: int, pretokenized: bool) -> Extras | None:
    """What the strategy needs besides ids: for ``robust`` the tokenizer's bytes per id, which
    pre-tokenized ids only have when the user named the tokenizer that made them."""
    from goldfish_prep.tokenizers import load_tokenizer  # cached per process
    from goldfish_prep.tokenizers.token_bytes import extras_for, needs_token_bytes, token_bytes

    if not needs_token_bytes(context.mask):
        return None
    if pretokenized and context.vocab_size is None:
        raise ConfigError(
            f"--strategy {context.mask.strategy} reads the text that pre-tokenized input_ids spell, so it needs the tokenizer "
            "that made them; pass --tokenizer, or choose another --strategy"
        )
    return extras_for(context.mask, token_bytes(load_tokenizer(context.tokenizer_spec)), num_documents)


def _mask_chats(records: list[Record], errors: list[InputError], context: BatchContext, setup: ChatSetup) -> MaskedBatch:
    """Conversations: rendered by the chat template, masked answer by answer (``chat.masking``)."""
    tokens = tokenize_chats(records, context.tokenizer_spec, setup, context.mask, errors)
    drop = mask_answers(tokens, context.mask)
    kept = tokens.kept
    k = tokens.k if context.reader.k_field is not None else None
    eligible = int((tokens.eligible & (np.repeat(tokens.k, np.diff(np.append(tokens.starts, len(tokens.ids)))) >= 2)).sum())
    return MaskedBatch(
        tokens.ids, tokens.starts, drop, [r.doc_id for r in kept], [r.location for r in kept], errors, tokens.assistant, k, eligible
    )


def _encode_texts(texts: list[str], context: BatchContext) -> list[npt.NDArray[np.int32]]:
    """Token ids of each text with the special-token policy applied (BOS first, EOS last)."""
    if not texts:
        return []
    from goldfish_prep.tokenizers import load_tokenizer  # cached per process

    tokenizer = load_tokenizer(context.tokenizer_spec, context.tokenizer_backend)
    encoded = tokenizer.encode_batch(texts)
    head = [tokenizer.bos_id] if context.add_bos and tokenizer.bos_id is not None else []
    tail = [tokenizer.eos_id] if context.add_eos and tokenizer.eos_id is not None else []
    if not head and not tail:
        return [np.asarray(ids, dtype=np.int32) for ids in encoded]
    prefix = np.array(head, dtype=np.int32)
    suffix = np.array(tail, dtype=np.int32)
    return [np.concatenate([prefix, np.asarray(ids, dtype=np.int32), suffix]) for ids in encoded]


def _check_ids(record: Record, vocab_size: int | None) -> InputError | None:
    """Pre-tokenized ids beyond the tokenizer's vocabulary would index past its embedding table."""
    if vocab_size is None or not record.input_ids:
        return None
    largest = max(record.input_ids)
    if largest < vocab_size:
        return None
    return InputError(
        record.location,
        f"token id {largest} is outside the tokenizer's vocabulary of {vocab_size} ids",
        "Pass the --tokenizer these ids were made with, or fix the ids",
        "id-beyond-vocab",
    )
