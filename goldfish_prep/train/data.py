"""Training rows from goldfish-prep shards, read only through their documented format.

The shards hold ``input_ids`` and *unshifted* ``labels`` (-100 where a token is
dropped from the loss). The trainer needs rows of ``block_size`` inputs and the
``block_size`` labels that follow them, so this module:

1. reads every shard (memory-mapped) into *units*: documents in document mode,
   rows without their padding in packed mode;
2. each epoch, orders the units by a permutation seeded with ``(seed, epoch)``
   and reads them end to end as one stream of ids and labels;
3. cuts that stream into rows: row ``r`` has inputs ``ids[rT : rT+T]`` and
   targets ``labels[rT+1 : rT+T+1]``, so every label but the stream's first is
   used exactly once per epoch and keeps the value the shards gave it. The last
   row is padded with targets -100.

Row ``i`` of the whole run is a pure function of ``(seed, i)``: resuming at a
step needs no sampler state, and each DDP rank takes its own rows.

Chat outputs train the same way (their prompt is -100 in ``labels`` already);
their ``assistant_masks`` column is kept so that validation loss counts the
assistant's tokens only and memorisation can find each conversation's final
answer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from goldfish_prep.errors import InputError
from goldfish_prep.format.chat import ASSISTANT_COLUMN, answer_spans, assistant_flags, is_chat
from goldfish_prep.format.manifest import Manifest
from goldfish_prep.format.names import IGNORE_INDEX
from goldfish_prep.format.reader import ShardSet, open_shards

Int32Array = npt.NDArray[np.int32]


@dataclasses.dataclass
class ShardData:
    """All ids and labels of a folder, flat, plus where each unit (document or packed row) lies."""

    folder: Path
    manifest: Manifest
    ids: Int32Array
    labels: Int32Array
    unit_starts: npt.NDArray[np.int64]
    unit_lengths: npt.NDArray[np.int64]
    #: chat outputs: True on the assistant's tokens, one flag per id; None for text outputs
    assistant: npt.NDArray[np.bool_] | None = None

    @property
    def num_tokens(self) -> int:
        return int(self.unit_lengths.sum())

    @property
    def vocab_size(self) -> int:
        return int(self.manifest.tokenizer["vocab_size"])


def load_shards(folder: str | Path) -> ShardData:
    """Read a complete goldfish-prep folder (document or packed mode) for training.

    Packed rows keep only their ``num_tokens`` leading ids: the padding of the last
    row is not training data.
    """
    shards = open_shards(folder)
    chat = is_chat(shards.manifest)
    ids_parts: list[Int32Array] = []
    label_parts: list[Int32Array] = []
    assistant_parts: list[npt.NDArray[np.bool_]] = []
    lengths: list[npt.NDArray[np.int64]] = []
    for batch in shards.batches([ASSISTANT_COLUMN] if chat else None):
        ids_parts.append(batch.ids)
        label_parts.append(batch.labels)
        lengths.append(np.diff(batch.row_starts))
        if chat:
            assistant_parts.append(assistant_flags(batch.table, batch.path, batch.stream))
    unit_lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
    if int(unit_lengths.sum()) == 0:
        raise InputError(str(folder), "the shards hold no tokens", "Check the inputs given to `goldfish-prep mask`", "empty")
    return ShardData(
        folder=Path(folder),
        manifest=shards.manifest,
        ids=np.concatenate(ids_parts),
        labels=np.concatenate(label_parts),
        unit_starts=np.concatenate(([0], np.cumsum(unit_lengths)[:-1])).astype(np.int64),
        unit_lengths=unit_lengths,
        assistant=np.concatenate(assistant_parts) != 0 if chat else None,
    )


def check_vocabulary(data: ShardData, vocab_size: int) -> None:
    """Refuse ids the embedding cannot hold (a tokenizer mismatch), naming the folder and the fix."""
    largest = int(data.ids.max())
    if largest >= vocab_size:
        raise InputError(
            str(data.folder),
            f"token id {largest} does not fit a vocabulary of {vocab_size} (the manifest's tokenizer.vocab_size)",
            "Pass --vocab-size larger than the largest id, or recreate the shards with the right --tokenizer",
            "vocab-mismatch",
        )


class RowSampler:
    """Rows of ``block_size`` inputs and targets over shuffled epochs (see the module docstring)."""

    def __init__(self, data: ShardData, block_size: int, seed: int, shuffle: bool = True) -> None:
        self.data = data
        self.block_size = block_size
        self.seed = seed
        self.shuffle = shuffle
        # rows per epoch: targets are stream positions 1..N-1, block_size per row
        self.rows_per_epoch = max(1, -(-(data.num_tokens - 1) // block_size))
        self._epoch = -1
        self._order_starts = np.zeros(0, dtype=np.int64)
        self._order_lengths = np.zeros(0, dtype=np.int64)
        self._order_offsets = np.zeros(0, dtype=np.int64)

    def _use_epoch(self, epoch: int) -> None:
        if epoch == self._epoch:
            return
        order = self._order(epoch)
        self._order_starts = self.data.unit_starts[order]
        self._order_lengths = self.data.unit_lengths[order]
        self._order_offsets = np.concatenate(([0], np.cumsum(self._order_lengths)))
        self._epoch = epoch

    def _order(self, epoch: int) -> npt.NDArray[np.int64]:
        """The units of ``epoch`` in stream order."""
        count = len(self.data.unit_starts)
        order: npt.NDArray[np.int64] = np.random.default_rng([self.seed, epoch]).permutation(count) if self.shuffle else np.arange(count)
        return order

    def _stream(self, begin: int, end: int) -> tuple[Int32Array, Int32Array]:
        """ids and labels of positions [begin, end) of the current epoch's stream, padded past its end."""
        ids = np.zeros(end - begin, dtype=np.int32)
        labels = np.full(end - begin, IGNORE_INDEX, dtype=np.int32)
        first = int(np.searchsorted(self._order_offsets, begin, side="right")) - 1
        position = begin
        for unit in range(first, len(self._order_lengths)):
            if position >= end:
                break
            unit_begin = int(self._order_offsets[unit])
            take = min(end, int(self._order_offsets[unit + 1])) - position
            source = int(self._order_starts[unit]) + position - unit_begin
            ids[position - begin : position - begin + take] = self.data.ids[source : source + take]
            labels[position - begin : position - begin + take] = self.data.labels[source : source + take]
            position += take
        return ids, labels

    def row(self, index: int) -> tuple[Int32Array, Int32Array]:
        """Inputs (block_size,) and targets (block_size,) of global row ``index``."""
        epoch, row = divmod(index, self.rows_per_epoch)
        self._use_epoch(epoch)
        begin = row * self.block_size
        ids, labels = self._stream(begin, begin + self.block_size + 1)
        return ids[:-1], labels[1:]

    def batch(self, indices: Sequence[int]) -> tuple[Int32Array, Int32Array]:
        """Inputs and targets of several rows, each (len(indices), block_size) int32."""
        rows = [self.row(index) for index in indices]
        return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])

    def supervised_per_epoch(self) -> int:
        """Targets that count in the loss over one epoch: labels != -100, less the stream's first label.

        Exact for epoch 0; the first unit of another epoch may differ by that one
        label (goldfish spec v2 can drop a document's first token). Used to plan the schedule.
        """
        first = int(self.data.unit_starts[self._order(0)[0]]) if len(self.data.unit_starts) else 0
        return int(np.count_nonzero(self.data.labels != IGNORE_INDEX)) - int(self.data.labels[first] != IGNORE_INDEX)


def evaluation_rows(data: ShardData, block_size: int) -> list[tuple[Int32Array, Int32Array]]:
    """Held-out rows for validation loss: every document's tokens as targets, *no goldfish mask*.

    Validation loss measures the language model, so, as in the paper's code, dropped
    positions count here too; only padding is left out (and, in chat outputs, the
    prompt: the model is fine-tuned to answer, not to write users' turns). Units
    are cut one by one (no packing), in order.
    """
    rows = []
    for start, length in zip(data.unit_starts.tolist(), data.unit_lengths.tolist()):
        ids = data.ids[start : start + length]
        scored = data.assistant[start : start + length] if data.assistant is not None else np.ones(length, np.bool_)
        for begin in range(0, max(length - 1, 0), block_size):
            piece = ids[begin : begin + block_size + 1]
            inputs = np.zeros(block_size, dtype=np.int32)
            targets = np.full(block_size, IGNORE_INDEX, dtype=np.int32)
            inputs[: len(piece) - 1] = piece[:-1]
            targets[: len(piece) - 1] = np.where(scored[begin + 1 : begin + len(piece)], piece[1:], IGNORE_INDEX)
            rows.append((inputs, targets))
    return rows


@dataclasses.dataclass(frozen=True)
class EvalDocument:
    """A document as memorisation measures it (not a shard row: ``format.ShardDocument``). Chat outputs: the conversation up to the end of its final answer,
    which begins at ``answer_start`` (``len(ids)`` when it has none); None for text outputs."""

    doc_id: str
    ids: Int32Array
    #: the labels as masked (-100: left out of the loss), as long as ``ids``
    labels: Int32Array
    answer_start: int | None = None

    @property
    def answer_length(self) -> int | None:
        return None if self.answer_start is None else len(self.ids) - self.answer_start


#: the earlier name of ``EvalDocument`` (train/memorization.py still uses it)
Document = EvalDocument


def load_documents(folder: str | Path) -> list[EvalDocument]:
    """The documents of a folder, whole, in order (packed rows are joined back into documents by the shard
    reader); packed outputs keep no ids, so their documents are named by number. Chat documents end
    with their final answer (see ``EvalDocument``)."""
    shards = open_shards(folder)
    if is_chat(shards.manifest):
        return _chat_documents(shards)
    return [
        EvalDocument(doc.id if doc.id is not None else f"document {doc.index}", doc.input_ids, doc.labels) for doc in shards.documents()
    ]


def _chat_documents(shards: ShardSet) -> list[EvalDocument]:
    """Conversations from the reader's flat batches, with their assistant flags, cut after their final answer."""
    pieces: list[Int32Array] = []
    label_pieces: list[Int32Array] = []
    flags: list[npt.NDArray[np.bool_]] = []
    starts: list[npt.NDArray[np.int64]] = []
    names: list[str] = []
    offset = 0
    for batch in shards.batches([ASSISTANT_COLUMN] + ([] if shards.packed else ["id"])):
        pieces.append(batch.ids)
        label_pieces.append(batch.labels)
        flags.append(assistant_flags(batch.table, batch.path, batch.stream))
        starts.append(batch.doc_starts + offset)
        if not shards.packed:
            names.extend(str(name) for name in batch.column("id").to_pylist())
        offset += len(batch.ids)
    stream = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
    labels = np.concatenate(label_pieces) if label_pieces else np.zeros(0, dtype=np.int32)
    edges = np.append(np.concatenate(starts) if starts else np.zeros(0, np.int64), len(stream)).astype(np.int64)
    assistant = np.concatenate(flags) if flags else np.zeros(0, np.bool_)
    return _split_documents(stream, labels, edges, None if shards.packed else names, assistant)


def _split_documents(
    stream: Int32Array, labels: Int32Array, edges: npt.NDArray[np.int64], names: list[str] | None, assistant: npt.NDArray[np.bool_]
) -> list[EvalDocument]:
    """Documents between consecutive ``edges``, each ending with its final answer."""
    answer_ends: dict[int, tuple[int, int]] = {}
    starts, ends = answer_spans(assistant, edges[:-1])
    owner = np.searchsorted(edges, starts, side="right") - 1
    for document, start, end in zip(owner.tolist(), starts.tolist(), ends.tolist()):
        answer_ends[document] = (start, end)  # later answers overwrite earlier ones: the final answer stays
    documents = []
    for i, (a, b) in enumerate(zip(edges[:-1].tolist(), edges[1:].tolist())):
        name = names[i] if names is not None else f"document {i}"
        if i in answer_ends:
            start, end = answer_ends[i]
            documents.append(EvalDocument(name, stream[a:end], labels[a:end], start - a))
        else:  # a conversation without an assistant token: no answer to measure (answer length 0)
            documents.append(EvalDocument(name, stream[a:b], labels[a:b], b - a))
    return documents
