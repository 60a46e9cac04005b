"""`goldfish-prep show`: the text comes back exactly, with exactly the dropped tokens marked."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from goldfish_prep.config import MaskConfig
from goldfish_prep.format import read_shard
from goldfish_prep.inspect.document import DocumentView, load_document
from goldfish_prep.tokenizers import load_tokenizer
from goldfish_prep_cli.show import BOUNDARY, CLOSE, OPEN, body
from tests.shards import mask_documents_with_ids as mask
from tests.shards import run

MARKED = re.compile(f"{OPEN}(.*?){CLOSE}", re.DOTALL)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory, real_texts: list[str]) -> dict[str, Path]:
    texts = [t for t in real_texts[:40] if len(t) < 20000][:20]
    base = tmp_path_factory.mktemp("show")
    return {"documents": mask(base / "documents", texts), "packed": mask(base / "packed", texts, "--pack", "700")}


def unmark(shown: str) -> str:
    """Undo the markers: dropped whitespace was made visible, and line breaks moved after the marker."""

    def plain(match: re.Match[str]) -> str:
        inside = match.group(1).rstrip("\u21b5")
        return inside.replace("\u00b7", " ").replace("\u2192", "\t") if not inside.strip("\u00b7\u2192") else inside

    return MARKED.sub(plain, shown)


def row_of(folder: Path, row: int) -> dict[str, Any]:
    rows: list[dict[str, Any]] = read_shard(folder / "data-00000.arrow").slice(row, 1).to_pylist()
    return rows[0]


def test_piped_output_marks_exactly_the_dropped_tokens(outputs: dict[str, Path]) -> None:
    folder = outputs["documents"]
    row = row_of(folder, 4)
    result = run("show", folder, "--row", 4)
    assert result.exit_code == 0, result.output
    header, shown = result.output.split("\n\n", 1)
    dropped = row["labels"].count(-100)
    eligible = len(row["input_ids"])  # goldfish spec v2 (the default): every position
    assert header.splitlines() == [
        f"doc-4  [row 4 in data-00000.arrow, source {row['source']}]",
        f"{len(row['input_ids']):,} tokens, {dropped:,} dropped ({dropped / eligible:.2%} of {eligible:,} eligible); "
        f"goldfish k=4 context width 13; dropped tokens marked {OPEN}like this{CLOSE}",
    ]
    assert len(MARKED.findall(shown)) == dropped
    assert unmark(shown) == load_tokenizer("cl100k_base").decode(row["input_ids"]) + "\n"


def test_marked_tokens_are_the_dropped_ones() -> None:
    """Marker placement, token by token, on a view whose pieces are known."""
    view = view_of(["The", " cat", "\n", " sat", "  ", "!\n"], [False, True, True, False, True, True])
    assert body(view, color=False) == f"The{OPEN} cat{CLOSE}{OPEN}\u21b5{CLOSE}\n sat{OPEN}\u00b7\u00b7{CLOSE}{OPEN}!\u21b5{CLOSE}\n"


def view_of(pieces: list[str], dropped: list[bool]) -> DocumentView:
    return DocumentView(
        "f",
        "data-00000.arrow",
        0,
        "d",
        None,
        np.arange(len(pieces), dtype=np.int32),
        np.array(dropped),
        len(pieces),
        np.zeros(1, np.int64),
        0,
        MaskConfig(),
        pieces,
        None,
    )


def test_id_and_row_name_the_same_document(outputs: dict[str, Path]) -> None:
    by_id = load_document(outputs["documents"], doc_id="doc-7")
    by_row = load_document(outputs["documents"], row=7)
    assert by_id.row == 7 and by_id.ids.tolist() == by_row.ids.tolist() and by_id.pieces == by_row.pieces
    assert run("show", outputs["documents"], "--id", "doc-7").output == run("show", outputs["documents"], "--row", 7).output


def test_colour_and_html(outputs: dict[str, Path], tmp_path: Path) -> None:
    folder = outputs["documents"]
    dropped = row_of(folder, 2)["labels"].count(-100)
    coloured = run("show", folder, "--row", 2, "--color")
    assert coloured.output.count("\x1b[41m") == dropped and OPEN not in coloured.output
    page = tmp_path / "doc.html"
    result = run("show", folder, "--row", 2, "--html", page)
    assert result.output.endswith(f"Web page written to {page}\n")
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.count("<mark ") == dropped


def test_packed_row_shows_where_documents_begin(outputs: dict[str, Path]) -> None:
    folder = outputs["packed"]
    manifest = json.loads((folder / "goldfish_manifest.json").read_text())
    last = manifest["shards"][0]["num_rows"] - 1
    row = row_of(folder, last)
    result = run("show", folder, "--row", last)
    header, shown = result.output.split("\n\n", 1)
    used = row["num_tokens"]
    assert header.splitlines()[1].startswith(
        f"{used:,} tokens, {row['num_dropped']:,} dropped, {700 - used:,} padding; {len(row['doc_starts'])} document(s) begin here"
    )
    assert shown.count(BOUNDARY) == len(row["doc_starts"])
    assert len(MARKED.findall(shown)) == row["num_dropped"]


def test_unloadable_tokenizer_falls_back_to_ids(outputs: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "gone" / "tokenizer.json"
    result = run("show", outputs["documents"], "--row", 0, "--tokenizer", missing)
    assert result.exit_code == 0
    assert result.stderr.startswith(f"Note: cannot load tokenizer '{missing}' here (")
    ids = row_of(outputs["documents"], 0)["input_ids"]
    assert unmark(result.stdout.split("\n\n", 1)[1]).startswith(" ".join(map(str, ids[:13])) + " ")


def test_errors_name_the_fix(outputs: dict[str, Path]) -> None:
    folder = outputs["documents"]
    unknown = run("show", folder, "--id", "nope")
    assert unknown.exit_code == 1
    assert unknown.stderr == (
        f"Error: {folder}: no document has id 'nope' (20 documents; ids look like 'doc-0', 'doc-1', 'doc-2'). "
        "Check the id (see `goldfish-prep stats --json`), or pick a row with --row N\n"
    )
    beyond = run("show", folder, "--row", 20)
    assert beyond.stderr == f"Error: {folder}: row 20 does not exist (the output has 20 rows, numbered from 0). Pick a row in 0..19\n"
    packed = run("show", outputs["packed"], "--id", "doc-1")
    assert (
        packed.stderr == f"Error: {outputs['packed']}: packed outputs have no document ids (rows mix documents). Pick a row with --row N\n"
    )
    neither = run("show", folder)
    assert neither.exit_code == 2 and neither.stderr.endswith("Error: name one document: --id ID or --row N\n")
