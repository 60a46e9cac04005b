"""Checks one shard against its manifest record and its recorded mask config.

Three layers, each catching what the others cannot: the checksums (sha256, and
xxh3_128 where the manifest records it) catch any changed byte (an id under a dropped label included, which no recomputation can
see); the recomputed masks say *where* labels went wrong, down to row and
position, even after someone rewrote the checksums; and the per-row and
per-shard counts catch accounting that no longer matches the lists. A shard is
checked as a whole (flat arrays), so the cost is a hash pass and a mask pass.
Chat shards are recomputed from ``assistant_masks`` and the answer-local rule
(``chat_check``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from goldfish_prep.config import MaskConfig
from goldfish_prep.errors import InputError
from goldfish_prep.format.columns import Int32s, Int64s, TokenStream, int_column, list_values, per_row_counts, row_of, shard_stream
from goldfish_prep.format.folder import OutputFolder
from goldfish_prep.format.location import Location
from goldfish_prep.format.manifest import ShardEntry
from goldfish_prep.format.names import IGNORE_INDEX
from goldfish_prep.format.schema import output_fields
from goldfish_prep.inspect.chat_check import chat_expectation
from goldfish_prep.inspect.packed import carried_context, eligible_per_row, recompute_drop
from goldfish_prep.inspect.robust_masks import robust_recompute
from goldfish_prep.mask import eligible_counts
from goldfish_prep.strategies.robust import TokenBytes

#: mismatching positions named per shard; the count covers all of them
SHOWN = 3


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing that does not hold: where (file, row, position) and what."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclasses.dataclass(frozen=True)
class VerifyContext:
    """What every shard check needs; small and picklable for worker processes (``folder`` too: a URL folder
    pickles its file system's options, and a worker opens its own connections)."""

    folder: OutputFolder
    paths: tuple[Location, ...]
    records: tuple[ShardEntry, ...]
    config: MaskConfig
    pack: int | None
    pad_id: int
    vocab_size: int | None
    #: the recorded tokenizer's bytes per id, for strategies that read the text the ids spell (robust)
    token_bytes: TokenBytes | None = None
    #: chat outputs: the ids never dropped (special tokens, --keep-ids); None for text outputs
    protected: tuple[int, ...] | None = None
    #: a --k-field run: document rows carry their own k
    k_field: bool = False


@dataclasses.dataclass(frozen=True)
class ShardCheck:
    """What was measured in one shard, and what did not hold."""

    filename: str
    rows: int = 0
    documents: int = 0
    tokens: int = 0
    eligible: int = 0
    dropped: int = 0
    mismatches: int = 0
    #: chat shards: the assistant's tokens
    assistant: int = 0
    #: False when eligible positions cannot be counted (packed --k-field rows carry no k)
    eligible_known: bool = True
    problems: tuple[Problem, ...] = ()
    #: False when the shard could not be read as the format describes (its counts are then unknown)
    measured: bool = True


def check_shard(index: int, context: VerifyContext) -> ShardCheck:
    """Every check of shard ``index``; never raises for a damaged shard, it reports."""
    path, record = context.paths[index], context.records[index]
    name = path.name
    folder = context.folder
    if not folder.has_file(name):
        return ShardCheck(name, problems=(Problem(name, "missing: the manifest lists it but the folder lacks it"),), measured=False)
    problems: list[Problem] = []
    try:
        shard = folder.read_shard_bytes(name)  # read once: hashed, then parsed from the same mapped pages
        # both checksums where the manifest has both (xxh3_128 is None in those written before it); one line per shard
        differing = [
            (algorithm, shard.checksums[algorithm], recorded)
            for algorithm, recorded in (("sha256", record.sha256), ("xxh3_128", record.xxh3_128))
            if recorded is not None and shard.checksums[algorithm] != recorded
        ]
        if differing:
            algorithm, found, recorded = differing[0]
            problems.append(
                Problem(
                    name,
                    f"{algorithm} {found[:12]}... differs from the manifest's {recorded[:12]}...: the file changed after it was written",
                )
            )
        table = shard.table()
        problems.extend(_schema_problems(table, name, context))
        stream = shard_stream(table, path, context.pack is not None)
        measured = _measure(table, stream, index, context, problems)
    except InputError as exc:
        problems.append(Problem(exc.location.replace(str(path), name), exc.cause))
        return ShardCheck(name, problems=tuple(problems), measured=False)
    problems.extend(_record_problems(name, record, measured))
    return dataclasses.replace(measured, problems=tuple(problems))


def _measure(table: Any, stream: TokenStream, index: int, context: VerifyContext, problems: list[Problem]) -> ShardCheck:
    """Recompute the masks and the counts of one shard, appending what does not hold."""
    name = stream.path.name
    tokens = np.diff(stream.row_starts)
    at = _Locator(name, sum(record.num_rows for record in context.records[:index]), stream.row_starts)
    if context.protected is not None:
        chat = chat_expectation(table, stream, np.asarray(context.protected, np.int64), context.config, context.k_field)
        expected, assistant, lead = chat.expected, chat.assistant, 0
        eligible_flags: Any = chat.eligible
    else:
        prefix, lead = _prefix(stream, index, context)
        if context.token_bytes is not None:  # robust: eligible positions depend on the text the ids spell
            drop, eligible_flags = robust_recompute(stream, prefix, context.config, context.token_bytes)
        else:
            drop, eligible_flags = recompute_drop(stream, prefix, context.config), None
        expected, assistant = np.where(drop, np.int32(IGNORE_INDEX), stream.ids), None
    wrong = np.flatnonzero(stream.labels != expected)
    problems.extend(_label_problems(at, stream, expected, wrong, assistant))
    problems.extend(_id_problems(at, stream, context.vocab_size))
    dropped_flags = stream.labels == IGNORE_INDEX if assistant is None else (stream.labels == IGNORE_INDEX) & assistant
    dropped = per_row_counts(dropped_flags, stream.row_starts)
    problems.extend(_column_problems(table, stream.path, tokens, dropped))
    if eligible_flags is not None:
        eligible = int(eligible_flags.sum())
    elif context.pack is None:
        eligible = int(eligible_counts(tokens, context.config).sum())
    else:
        eligible = int(eligible_per_row(stream, lead, context.config)[0].sum())
    documents = stream.num_rows if context.pack is None else len(stream.doc_starts)
    if context.pack is not None:
        problems.extend(_padding_problems(table, stream, context))
    known = not (context.protected is not None and context.k_field and context.pack is not None)
    return ShardCheck(name, stream.num_rows, documents, int(tokens.sum()), eligible, int(dropped.sum()), len(wrong),
                      assistant=int(assistant.sum()) if assistant is not None else 0, eligible_known=known)  # fmt: skip


def _prefix(stream: TokenStream, index: int, context: VerifyContext) -> tuple[Int32s, int]:
    """The open document's stand-in prefix and length (packed shards that open mid-document only)."""
    if context.pack is None or (len(stream.doc_starts) and stream.doc_starts[0] == 0) or len(stream.ids) == 0:
        return np.zeros(0, np.int32), 0
    return carried_context(context.folder, context.paths, index, context.config)


@dataclasses.dataclass(frozen=True)
class _Locator:
    """Names a token: shard, row and position in it, and the row as ``show --row`` numbers it."""

    name: str
    rows_before: int
    row_starts: Int64s

    def __call__(self, position: int) -> str:
        row = int(row_of([position], self.row_starts)[0])
        return f"{self.name} row {row} position {position - int(self.row_starts[row])} (global row {self.rows_before + row})"


def _label_problems(at: _Locator, stream: TokenStream, expected: Int32s, wrong: Int64s, assistant: Any = None) -> list[Problem]:
    problems = []
    for position in wrong[:SHOWN].tolist():
        found, wanted = int(stream.labels[position]), int(expected[position])
        if assistant is not None and not assistant[position]:
            what = (
                f"label {found}, expected {IGNORE_INDEX}: the token is not the assistant's (assistant_masks 0), so it is never supervised"
            )
        elif wanted == IGNORE_INDEX:
            what = f"label {found}, expected {IGNORE_INDEX}: the recomputed mask drops this token (id {stream.ids[position]})"
        elif found == IGNORE_INDEX:
            what = f"label {IGNORE_INDEX}, expected {wanted}: the recomputed mask keeps this token"
        else:
            what = f"label {found}, expected {wanted}: a kept token's label must equal its input id"
        problems.append(Problem(at(position), what))
    if len(wrong) > SHOWN:
        problems.append(Problem(at.name, f"{len(wrong)} labels in all differ from the masks recomputed from input_ids"))
    return problems


def _id_problems(at: _Locator, stream: TokenStream, vocab_size: int | None) -> list[Problem]:
    limit = vocab_size if vocab_size is not None else 2**31
    bad = np.flatnonzero((stream.ids < 0) | (stream.ids >= limit))
    if not len(bad):
        return []
    position = int(bad[0])
    return [Problem(at(position), f"input id {stream.ids[position]} is outside the vocabulary [0, {limit}) ({len(bad)} such ids)")]


def _column_problems(table: Any, path: Location, tokens: Int64s, dropped: Int64s) -> list[Problem]:
    problems = []
    for column, measured, meaning in (("num_tokens", tokens, "tokens"), ("num_dropped", dropped, "-100 labels")):
        recorded = int_column(table, column, path)
        bad = np.flatnonzero(recorded != measured)
        if len(bad):
            row = int(bad[0])
            problems.append(
                Problem(
                    f"{path.name} row {row}",
                    f"{column} is {recorded[row]} but the row holds {measured[row]} {meaning} ({len(bad)} such rows)",
                )
            )
    return problems


def _padding_problems(table: Any, stream: TokenStream, context: VerifyContext) -> list[Problem]:
    """Packed rows: all SEQ_LEN long, padded only at the shard's end, with the pad id and label -100."""
    name = stream.path.name
    lengths = np.diff(stream.raw_offsets)
    problems = []
    bad_length = np.flatnonzero(lengths != context.pack)
    if len(bad_length):
        row = int(bad_length[0])
        problems.append(Problem(f"{name} row {row}", f"holds {lengths[row]} ids; packed rows hold exactly {context.pack}"))
    short = np.flatnonzero(np.diff(stream.row_starts)[:-1] < lengths[:-1])
    if len(short):
        problems.append(Problem(f"{name} row {int(short[0])}", "is padded but is not the shard's last row"))
    ids, _ = list_values(table, "input_ids", stream.path)
    labels, _ = list_values(table, "labels", stream.path)
    bad = stream.padding[(ids[stream.padding] != context.pad_id) | (labels[stream.padding] != IGNORE_INDEX)]
    if len(bad):
        position = int(bad[0])
        row = int(row_of([position], stream.raw_offsets)[0])
        problems.append(
            Problem(
                f"{name} row {row} position {position - int(stream.raw_offsets[row])}",
                f"padding holds id {ids[position]} label {labels[position]}; padding is id {context.pad_id} with label {IGNORE_INDEX}",
            )
        )
    return problems


def _schema_problems(table: Any, name: str, context: VerifyContext) -> list[Problem]:
    expected = output_fields(context.pack is not None, context.protected is not None, context.k_field)
    found = [(field.name, str(field.type)) for field in table.schema]
    wanted = [(field.name, str(field.type)) for field in expected]
    if found == wanted:
        return []
    return [Problem(name, f"columns {found} differ from the format's {wanted}")]


def _record_problems(name: str, record: ShardEntry, measured: ShardCheck) -> list[Problem]:
    """The shard's line in the manifest against what the shard holds."""
    problems = []
    for key, value in (
        ("num_rows", measured.rows),
        ("num_documents", measured.documents),
        ("num_tokens", measured.tokens),
        ("num_dropped", measured.dropped),
    ):
        if getattr(record, key) != value:
            problems.append(Problem(name, f"the manifest records {key} {getattr(record, key)}, the shard holds {value}"))
    return problems
