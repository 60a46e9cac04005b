"""One document (or packed row) with its mask, ready to be shown: what ``show`` renders.

Finding a document by id reads only the ``id`` column of each shard (memory
mapped), so it is quick even in large outputs. The text of each token comes
from the tokenizer recorded in the manifest; when that tokenizer cannot be
loaded here (a local file that moved, a missing optional package) the view
carries the ids and says why, rather than failing.

In chat outputs a -100 label is either the prompt (not the assistant's part)
or a goldfish drop inside an answer; the view keeps the two apart through the
``assistant_masks`` column, so ``show`` can mark them differently.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from goldfish_prep.config import MaskConfig
from goldfish_prep.errors import ConfigError, GoldfishError, InputError
from goldfish_prep.format.columns import Int32s, Int64s, list_values
from goldfish_prep.format.location import Location
from goldfish_prep.format.manifest import Manifest
from goldfish_prep.format.names import IGNORE_INDEX, MANIFEST
from goldfish_prep.format.reader import ShardSet, open_shards
from goldfish_prep.inspect.never_dropped import never_dropped_ids
from goldfish_prep.mask import eligible_counts


@dataclasses.dataclass(frozen=True)
class DocumentView:
    """A row's tokens and drop flags. ``eligible`` is None for packed rows (it depends on earlier rows)."""

    folder: str
    shard: str
    row: int
    name: str
    source: str | None
    ids: Int32s
    dropped: npt.NDArray[np.bool_]
    eligible: int | None
    doc_starts: Int64s
    padding: int
    config: MaskConfig
    pieces: list[str] | None
    note: str | None
    #: chat outputs: True on the assistant's tokens (the rest is prompt: -100, but not dropped); None otherwise
    assistant: npt.NDArray[np.bool_] | None = None
    packed: bool = False

    @property
    def is_packed(self) -> bool:
        return self.packed

    @property
    def num_prompt(self) -> int:
        return 0 if self.assistant is None else int((~self.assistant).sum())

    @property
    def num_tokens(self) -> int:
        return len(self.ids)

    @property
    def num_dropped(self) -> int:
        return int(self.dropped.sum())


def load_document(
    folder: str | Path,
    doc_id: str | None = None,
    row: int | None = None,
    tokenizer: str | None = None,
) -> DocumentView:
    """The document with id ``doc_id``, or global row ``row`` (0-based over all shards in order).

    ``tokenizer`` overrides the spec recorded in the manifest (e.g. a tokenizer file that moved).
    """
    if (doc_id is None) == (row is None):
        raise ConfigError("name exactly one document: an id or a row number")
    shards = open_shards(folder)
    manifest = shards.manifest
    packed = manifest.packed
    if doc_id is not None:
        if packed:
            raise InputError(str(folder), "packed outputs have no document ids (rows mix documents)", "Pick a row with --row N", "no-ids")
        index, shard_row, row = _find_id(folder, shards, doc_id)
    else:
        assert row is not None
        index, shard_row = _find_row(folder, manifest, row)
    path = shards.paths[index]
    table = shards.rows(index, shard_row)  # a shard at a URL is streamed: only this row is kept
    view = _view(folder, manifest, path, table, row, packed, tokenizer)
    spec = tokenizer or manifest.tokenizer.get("spec")
    pieces, note = token_pieces(spec, view.ids)
    return dataclasses.replace(view, pieces=pieces, note=note)


def _eligible(manifest: Manifest, ids: Int32s) -> int:
    """Eligible positions of one document: from its length, or (robust) from the text its ids spell."""
    from goldfish_prep.mask import mask_and_eligible
    from goldfish_prep.tokenizers.token_bytes import extras_for, recorded_table

    config = manifest.mask
    table = recorded_table(config, manifest.tokenizer)
    if table is None:
        return int(eligible_counts([len(ids)], config)[0])
    return int(mask_and_eligible(ids, np.zeros(1, np.int64), config, extras_for(config, table, 1))[1].sum())


def _view(
    folder: str | Path, manifest: Manifest, path: Location, table: pa.Table, row: int, packed: bool, tokenizer: str | None = None
) -> DocumentView:
    config = manifest.mask
    ids, _ = list_values(table, "input_ids", path)
    labels, _ = list_values(table, "labels", path)
    if packed:
        used = int(table.column("num_tokens")[0].as_py())
        starts, _ = list_values(table, "doc_starts", path)
        name, source, eligible, padding = f"row {row}", None, None, len(ids) - used
        ids, labels, doc_starts = ids[:used], labels[:used], starts.astype(np.int64)
    else:
        name, source = table.column("id")[0].as_py(), table.column("source")[0].as_py()
        eligible, padding, doc_starts = _eligible(manifest, ids), 0, np.zeros(1, np.int64)
    assistant = None
    if "assistant_masks" in table.column_names:
        flags, _ = list_values(table, "assistant_masks", path)
        assistant = flags[: len(ids)] != 0
        eligible = None if packed else 0 if _row_k(table) == 0 else _eligible_answer_tokens(manifest, ids, assistant, tokenizer)
    dropped = labels == IGNORE_INDEX if assistant is None else (labels == IGNORE_INDEX) & assistant
    return DocumentView(
        str(folder), path.name, row, name, source, ids, dropped, eligible, doc_starts, padding, config, None, None, assistant, packed
    )


def _eligible_answer_tokens(manifest: Manifest, ids: Int32s, assistant: npt.NDArray[np.bool_], tokenizer: str | None) -> int | None:
    """Assistant tokens the rule could drop, or None when the tokenizer (its special tokens) cannot be loaded here."""
    try:
        never = never_dropped_ids(manifest, tokenizer)
    except InputError:
        return None
    return int((assistant & ~np.isin(ids, never)).sum())


def _row_k(table: pa.Table) -> int | None:
    """The row's own k (``--k-field`` outputs), or None."""
    return int(table.column("k")[0].as_py()) if "k" in table.column_names else None


def _find_id(folder: str | Path, shards: ShardSet, doc_id: str) -> tuple[int, int, int]:
    """(shard index, row in it, global row) of the document ``doc_id``."""
    before = 0
    first: list[str] = []
    for index in range(len(shards)):
        ids = shards.table(index, ["id"]).column("id")
        where = pc.index(ids, doc_id).as_py()
        if where >= 0:
            return index, where, before + where
        if len(first) < 3:
            first.extend(ids.slice(0, 3 - len(first)).to_pylist())
        before += len(ids)
    raise InputError(
        str(folder),
        f"no document has id {doc_id!r} ({before} documents; ids look like {', '.join(map(repr, first))})",
        "Check the id (see `goldfish-prep stats --json`), or pick a row with --row N",
        "unknown-id",
    )


def _find_row(folder: str | Path, manifest: Manifest, row: int) -> tuple[int, int]:
    """(shard index, row in it) of global row ``row``."""
    before = 0
    for index, record in enumerate(manifest.shards):
        if row < before + record.num_rows:
            return index, row - before
        before += record.num_rows
    if not before:
        raise InputError(
            str(folder),
            "the output has no rows (every input record was skipped or empty)",
            f"See `skipped` in its {MANIFEST}",
            "unknown-row",
        )
    raise InputError(
        str(folder),
        f"row {row} does not exist (the output has {before} rows, numbered from 0)",
        f"Pick a row in 0..{before - 1}",
        "unknown-row",
    )


def token_pieces(spec: str | None, ids: Int32s) -> tuple[list[str] | None, str | None]:
    """(text of each token, None), or (None, why) when the tokenizer cannot be loaded here."""
    if not spec:
        return None, "the manifest names no tokenizer; showing token ids"
    try:
        from goldfish_prep.tokenizers import load_tokenizer

        pieces: list[str] = load_tokenizer(spec).token_pieces(ids.tolist())
    except (GoldfishError, ImportError, OSError, ValueError) as exc:
        return None, f"cannot load tokenizer {spec!r} here ({exc}); showing token ids. Pass --tokenizer to name it"
    return pieces, None
