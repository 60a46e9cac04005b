"""The format package and the strategy registry: ``open_shards`` gives back exactly what ``datasets`` reads,
packed rows turn back into the very documents they were cut from, the manifest is validated on load, and
nothing outside ``strategies/`` compares strategy names."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import goldfish_prep
from goldfish_prep import MaskConfig, mask_documents
from goldfish_prep.errors import ConfigError, InputError
from goldfish_prep.format import IGNORE_INDEX, MANIFEST, Manifest, load_manifest, open_shards, read_shard
from goldfish_prep.strategies import REGISTRY, STRATEGY_NAMES, Strategy, get_strategy
from goldfish_prep.strategies.base import Extras, Int64s
from tests.shards import mask_documents_with_ids as mask

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def texts(real_texts: list[str]) -> list[str]:
    return [t for t in real_texts[:80] if len(t) < 20000]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory, texts: list[str]) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("format")
    return {
        "documents": mask(base / "documents", texts, "--shard-size", "100KB"),
        "packed": mask(base / "packed", texts, "--pack", "300", "--shard-size", "100KB"),
    }


def rows_by_datasets(folder: Path) -> list[dict[str, Any]]:
    import datasets

    return list(datasets.load_from_disk(str(folder)))


def test_documents_equal_what_datasets_reads(outputs: dict[str, Path]) -> None:
    rows = rows_by_datasets(outputs["documents"])
    documents = list(goldfish_prep.open_shards(outputs["documents"]).documents())
    assert len(documents) == len(rows) > 10
    for index, (doc, row) in enumerate(zip(documents, rows)):
        assert (doc.index, doc.row, doc.id, doc.source) == (index, index, row["id"], row["source"])
        assert doc.input_ids.tolist() == row["input_ids"] and doc.labels.tolist() == row["labels"]


def test_packed_rows_come_back_as_the_documents_they_were_cut_from(outputs: dict[str, Path]) -> None:
    whole = list(goldfish_prep.open_shards(outputs["documents"]).documents())
    shards = goldfish_prep.open_shards(outputs["packed"])
    assert shards.packed and len(shards) > 1
    packed = list(shards.documents())
    assert len(packed) == len(whole)
    for doc, reference in zip(packed, whole):
        assert doc.id is None and np.array_equal(doc.input_ids, reference.input_ids) and np.array_equal(doc.labels, reference.labels)


def test_views_are_zero_copy(outputs: dict[str, Path]) -> None:
    """Views of the memory-mapped file: read-only and owning no data (a packed document that runs across
    two Arrow record batches is the one exception: it is joined by a copy)."""
    for kind in ("documents", "packed"):
        documents = list(goldfish_prep.open_shards(outputs[kind]).documents())
        views = [not d.input_ids.flags.owndata and not d.input_ids.flags.writeable and not d.labels.flags.owndata for d in documents]
        assert all(views) if kind == "documents" else sum(views) >= 0.9 * len(views), kind


def test_batches_give_flat_ids_labels_and_document_offsets(outputs: dict[str, Path]) -> None:
    for kind in ("documents", "packed"):
        shards = goldfish_prep.open_shards(outputs[kind])
        documents = rows_before = 0
        for batch, entry in zip(shards.batches(), shards.manifest.shards):
            assert len(batch.ids) == len(batch.labels) == entry.num_tokens
            assert int(np.count_nonzero(batch.labels == IGNORE_INDEX)) == entry.num_dropped
            assert len(batch.doc_starts) == entry.num_documents and batch.doc_starts[0] == 0
            assert (batch.documents_before, batch.rows_before) == (documents, rows_before)
            documents, rows_before = documents + entry.num_documents, rows_before + entry.num_rows
            # the labels are the masks recomputed over the flat batch
            drop = mask_documents(batch.ids, batch.doc_starts, shards.manifest.mask)
            assert np.array_equal(batch.labels, np.where(drop, IGNORE_INDEX, batch.ids))


def test_a_document_running_across_shards_is_joined(outputs: dict[str, Path], tmp_path: Path) -> None:
    """The format allows a packed document to continue in the next shard (``mask`` never writes it)."""
    folder = tmp_path / "split"
    shutil.copytree(outputs["packed"], folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    table = read_shard(outputs["packed"] / manifest["shards"][0]["filename"])  # not the copy: it is rewritten below
    starts = table.column("doc_starts").to_pylist()
    cut = next(i for i in range(1, len(starts)) if starts[i] and starts[i][0] != 0)  # a row that opens mid-document
    records = []
    for index, part in enumerate([table.slice(0, cut), table.slice(cut)]):
        name = f"data-{index:05d}.arrow"
        with pa.OSFile(str(folder / name), "wb") as sink, pa.ipc.new_stream(sink, part.schema) as writer:
            writer.write_table(part)
        records.append({**manifest["shards"][0], "filename": name, "num_rows": part.num_rows})
    manifest["shards"] = records
    (folder / MANIFEST).write_text(json.dumps(manifest))
    expected = [d for d in goldfish_prep.open_shards(outputs["packed"]).documents() if d.row < table.num_rows]
    # a folder cut by hand: its checksums and counts are not the manifest's, so it is read unchecked
    found = list(open_shards(folder, check_sha256=False).documents())
    assert [d.input_ids.tolist() for d in found] == [d.input_ids.tolist() for d in expected]
    assert [d.labels.tolist() for d in found] == [d.labels.tolist() for d in expected]


def test_manifest_is_typed_and_keeps_the_raw_dict(outputs: dict[str, Path]) -> None:
    manifest = load_manifest(outputs["packed"])
    raw = json.loads((outputs["packed"] / MANIFEST).read_text())
    assert isinstance(manifest, Manifest) and manifest.raw == raw and manifest["counts"] == raw["counts"]
    assert manifest.packed and manifest.pack == 300 and not load_manifest(outputs["documents"]).packed
    assert manifest.mask == MaskConfig.from_dict(raw["mask"]) and manifest.tokenizer == raw["tokenizer"]
    assert [s.filename for s in manifest.shards] == [s["filename"] for s in raw["shards"]]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["shards"][0].update(filename="../elsewhere.arrow"), "is not a plain file name"),
        (lambda m: m["shards"][0].pop("sha256"), "has sha256 None, not a str"),
        (lambda m: m.update(layout=[]), "'layout' is list, not an object"),
        (lambda m: m.update(format_version=2), "is not goldfish-prep format 1"),
    ],
)
def test_a_damaged_manifest_is_refused_on_load(outputs: dict[str, Path], tmp_path: Path, change: Any, message: str) -> None:
    folder = tmp_path / "damaged"
    shutil.copytree(outputs["documents"], folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    change(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=re.escape(message)):
        load_manifest(folder)


def test_the_registry_names_every_strategy_once() -> None:
    assert STRATEGY_NAMES == ("goldfish", "robust", "hash-table", "static", "none") == goldfish_prep.STRATEGIES
    for name, strategy in REGISTRY.items():
        assert strategy.name == name and get_strategy(name) is strategy
        config = MaskConfig(strategy=name, k=4, context_width=5)
        assert config.spec_version == strategy.spec_version and strategy.eligible_rule(config)
    assert [n for n, s in REGISTRY.items() if s.spec_version is not None] == ["goldfish", "robust"]
    assert [n for n, s in REGISTRY.items() if s.random_draws] == ["goldfish", "robust", "hash-table"]


class _NeedsText(Strategy):
    """A strategy that needs each document's text: drops the positions where the text has a capital letter."""

    name = "needs-text"
    requires = frozenset({"text"})

    def drop(self, ids: Any, starts: Int64s, config: MaskConfig, extras: Extras | None = None) -> Any:
        assert extras is not None
        out = np.zeros(len(ids), dtype=np.bool_)
        for start, text in zip(starts.tolist(), extras["text"]):
            out[start + np.flatnonzero([c.isupper() for c in text])] = True
        return out

    def eligible_counts(self, lengths: Int64s, config: MaskConfig) -> Int64s:
        return np.asarray(lengths, dtype=np.int64)

    def eligible_rule(self, config: MaskConfig) -> str:
        return "every position"


def test_a_strategy_can_take_per_document_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(REGISTRY, "needs-text", _NeedsText())
    config = MaskConfig(strategy="needs-text")
    ids, starts = np.arange(6), np.array([0, 3])
    assert mask_documents(ids, starts, config, {"text": ["aBc", "Xyz"]}).tolist() == [False, True, False, True, False, False]
    with pytest.raises(ConfigError, match="needs per-document text"):
        mask_documents(ids, starts, config)


def test_nothing_outside_strategies_compares_strategy_names() -> None:
    pattern = re.compile(r"""strategy["'\]]*\s*(==|!=|\bin\b|\bnot in\b)\s*[("'\[]""")
    offenders = []
    for path in [*ROOT.joinpath("goldfish_prep").rglob("*.py"), *ROOT.joinpath("cli").rglob("*.py")]:
        if "strategies" in path.parts:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_file_names_are_spelled_only_in_format_names() -> None:
    """Bare output-file names appear only in format/names.py (docstrings and messages may mention them)."""
    pattern = re.compile(r"""=\s*["'](state\.json|goldfish_manifest\.json|dataset_info\.json|run\.json|\.goldfish)["']|f["']task-\{""")
    offenders = []
    for path in [*ROOT.joinpath("goldfish_prep").rglob("*.py"), *ROOT.joinpath("cli").rglob("*.py")]:
        if path.name == "names.py" or "readers" in path.parts:  # readers read datasets' own save_to_disk folders
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line) or re.search(r"""/\s*["']state\.json["']""", line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
