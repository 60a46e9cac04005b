"""`goldfish-prep verify`: intact outputs pass; any single changed byte, label, id or count is caught and located."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import xxhash

from goldfish_prep.format import read_shard
from goldfish_prep.format.columns import list_values
from goldfish_prep.inspect.stats import compute_stats
from goldfish_prep.inspect.verify import verify_folder
from tests.shards import mask_documents_with_ids as mask
from tests.shards import run

PACK = 1024
FIX = "Recreate it: rerun the `goldfish-prep mask` command that made it with --resume (it redoes every shard whose checksum fails) or with --overwrite"


@pytest.fixture(scope="module")
def texts(real_texts: list[str]) -> list[str]:
    """About 150 real copyright notices, small enough to keep the tests quick."""
    return [t for t in real_texts[:200] if len(t) < 20000]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory, texts: list[str]) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("verify")
    return {
        "documents": mask(base / "documents", texts, "--shard-size", "200KB"),
        "packed": mask(base / "packed", texts[:60], "--pack", str(PACK), "--shard-size", "100KB"),
        "small": mask(base / "small", texts[:20]),
    }


@pytest.fixture
def copy(tmp_path: Path) -> Any:
    def make(source: Path) -> Path:
        target = tmp_path / source.parent.name
        shutil.copytree(source, target)
        return target

    return make


def manifest_of(folder: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((folder / "goldfish_manifest.json").read_text())
    return manifest


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    (folder / "goldfish_manifest.json").write_text(json.dumps(manifest, indent=2))


def rewrite(path: Path, column: str, change: Any) -> None:
    """Rewrite a shard with ``change(values)`` applied to one list column's flat values (a tampering user)."""
    table = read_shard(path)
    values, offsets = list_values(table, column, path)
    values = values.copy()
    change(values)
    array = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values, type=pa.int32()))
    table = table.set_column(table.column_names.index(column), table.schema.field(column), array)
    write_stream(path, table)


def write_stream(path: Path, table: pa.Table) -> None:
    """Write beside and rename: the old file may still be memory-mapped by ``table``."""
    temporary = path.with_name(path.name + ".tmp")
    with pa.OSFile(str(temporary), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    os.replace(temporary, path)


def reseal(folder: Path, index: int = 0) -> None:
    """Record the shard's new checksums in the manifest, as a careful forger would."""
    manifest = manifest_of(folder)
    shard = manifest["shards"][index]
    data = (folder / shard["filename"]).read_bytes()
    shard["sha256"], shard["xxh3_128"] = hashlib.sha256(data).hexdigest(), xxhash.xxh3_128_hexdigest(data)
    write_manifest(folder, manifest)


@pytest.mark.parametrize("kind", ["documents", "packed"])
def test_intact_output_passes(outputs: dict[str, Path], kind: str) -> None:
    folder = outputs[kind]
    result = run("verify", folder, "-q")
    assert result.exit_code == 0, result.output
    manifest = manifest_of(folder)
    counts = manifest["counts"]
    assert result.output.startswith(f"OK: {folder}: {len(manifest['shards'])} shard(s), {counts['documents_written']:,} documents")
    assert len(manifest["shards"]) > 1  # the checks cross shard boundaries


def test_num_proc_gives_the_same_report(outputs: dict[str, Path]) -> None:
    one = verify_folder(outputs["documents"])
    two = verify_folder(outputs["documents"], num_proc=2)
    assert one.ok and two.ok and one.shards == two.shards


@pytest.mark.parametrize("strategy", ["hash-table", "static", "none"])
def test_every_strategy_is_recomputed(tmp_path: Path, texts: list[str], strategy: str) -> None:
    out = mask(tmp_path / strategy, texts[:15], "--strategy", strategy, "--k", "3")
    report = verify_folder(out)
    assert report.ok, report.problems
    assert report.total("dropped") == manifest_of(out)["counts"]["dropped_tokens"]


def test_every_single_flipped_byte_is_caught(outputs: dict[str, Path], copy: Any) -> None:
    folder = copy(outputs["small"])
    shard = folder / "data-00000.arrow"
    original = shard.read_bytes()
    rng = np.random.default_rng(7)
    for offset in rng.choice(len(original), size=40, replace=False).tolist():
        damaged = bytearray(original)
        damaged[offset] ^= 1 << int(rng.integers(8))
        shard.write_bytes(bytes(damaged))
        report = verify_folder(folder)
        assert not report.ok, offset
        assert str(report.problems[0]).startswith("data-00000.arrow: sha256 ")
    shard.write_bytes(original)
    assert verify_folder(folder).ok


def test_every_single_changed_label_is_located_even_with_a_resealed_checksum(outputs: dict[str, Path], copy: Any) -> None:
    folder = copy(outputs["small"])
    shard = folder / "data-00000.arrow"
    original = shard.read_bytes()
    labels, offsets = list_values(read_shard(shard), "labels", shard)
    ids, _ = list_values(read_shard(shard), "input_ids", shard)
    rng = np.random.default_rng(11)
    for position in rng.choice(len(labels), size=25, replace=False).tolist():
        new = int(ids[position]) if labels[position] == -100 else -100 if rng.random() < 0.5 else int(labels[position]) + 1

        def change(values: Any, position: int = position, new: int = new) -> None:
            values[position] = new

        rewrite(shard, "labels", change)
        reseal(folder)
        report = verify_folder(folder)
        row = int(np.searchsorted(offsets, position, side="right") - 1)
        assert not report.ok
        assert str(report.problems[0]).startswith(
            f"data-00000.arrow row {row} position {position - offsets[row]} (global row {row}): label {new}, expected "
        )
        shard.write_bytes(original)
        reseal(folder)


def test_changed_ids_are_caught_and_kept_ones_located(outputs: dict[str, Path], copy: Any) -> None:
    """A changed id under a kept label breaks labels == input_ids there; under a dropped label only the
    checksum can see it (the mask it yields may be unchanged), so both layers are needed."""
    folder = copy(outputs["small"])
    shard = folder / "data-00000.arrow"
    original = shard.read_bytes()
    labels, offsets = list_values(read_shard(shard), "labels", shard)
    rng = np.random.default_rng(5)
    for position in rng.choice(len(labels), size=20, replace=False).tolist():

        def change(values: Any, position: int = position) -> None:
            values[position] = (int(values[position]) + 1) % 100_000

        rewrite(shard, "input_ids", change)
        assert not verify_folder(folder).ok  # the checksum
        if labels[position] != -100:
            reseal(folder)
            row = int(np.searchsorted(offsets, position, side="right") - 1)
            assert f"data-00000.arrow row {row} position {position - offsets[row]} (global row {row}): label " in str(
                verify_folder(folder).problems[0]
            )
        shard.write_bytes(original)
        reseal(folder)


def test_cli_names_the_first_mismatch(outputs: dict[str, Path], copy: Any) -> None:
    folder = copy(outputs["documents"])
    shard = folder / "data-00001.arrow"
    labels, offsets = list_values(read_shard(shard), "labels", shard)
    ids, _ = list_values(read_shard(shard), "input_ids", shard)
    position = int(np.flatnonzero(labels == -100)[10])  # a dropped token, now claimed as kept

    def change(values: Any) -> None:
        values[position] = ids[position]

    rewrite(shard, "labels", change)
    reseal(folder, 1)
    result = run("verify", folder, "-q")
    row = int(np.searchsorted(offsets, position, side="right") - 1)
    before = manifest_of(folder)["shards"][0]["num_rows"]
    first = (
        f"data-00001.arrow row {row} position {position - offsets[row]} (global row {before + row}): "
        f"label {ids[position]}, expected -100: the recomputed mask drops this token (id {ids[position]})"
    )
    assert result.exit_code == 1
    # the mask mismatch, then the row's num_dropped, the shard's record and the manifest's dropped_tokens
    assert result.stdout.splitlines()[0] == f"  {first}" and len(result.stdout.splitlines()) == 4
    assert result.stderr == f"Error: {folder} failed verification: 4 problem(s), first: {first}. {FIX}\n"


def test_manifest_counts_must_add_up(outputs: dict[str, Path], copy: Any) -> None:
    folder = copy(outputs["small"])
    manifest = manifest_of(folder)
    manifest["counts"]["documents_read"] += 1
    write_manifest(folder, manifest)
    result = run("verify", folder, "-q")
    counts = manifest["counts"]
    problem = f"goldfish_manifest.json counts: documents_read {counts['documents_read']} != documents_written {counts['documents_written']} + documents_skipped {counts['documents_skipped']}"
    assert result.exit_code == 1
    assert result.stderr == f"Error: {folder} failed verification: 1 problem(s), first: {problem}. {FIX}\n"


def test_shard_record_and_row_columns_are_checked(outputs: dict[str, Path], copy: Any) -> None:
    folder = copy(outputs["small"])
    manifest = manifest_of(folder)
    manifest["shards"][0]["num_tokens"] += 5
    manifest["counts"]["eligible_tokens"] -= 1
    write_manifest(folder, manifest)
    problems = [str(p) for p in verify_folder(folder).problems]
    assert any(p.startswith("data-00000.arrow: the manifest records num_tokens ") for p in problems)
    assert any(p.startswith("goldfish_manifest.json counts: eligible_tokens is ") for p in problems)


def test_state_json_must_list_the_manifest_shards(outputs: dict[str, Path], copy: Any) -> None:
    folder = copy(outputs["documents"])
    state = json.loads((folder / "state.json").read_text())
    state["_data_files"] = state["_data_files"][::-1]
    (folder / "state.json").write_text(json.dumps(state))
    assert [p.where for p in verify_folder(folder).problems] == ["state.json"]


def test_packed_padding_and_doc_starts_are_checked(outputs: dict[str, Path], copy: Any) -> None:
    folder = copy(outputs["packed"])
    last = folder / manifest_of(folder)["shards"][-1]["filename"]
    table = read_shard(last)
    used = table.column("num_tokens").to_numpy()
    assert used[-1] < PACK  # the shard's last row is padded

    def pad(values: Any) -> None:
        values[-1] = 7

    rewrite(last, "input_ids", pad)
    problems = [str(p) for p in verify_folder(folder).problems]
    assert (
        f"{last.name} row {len(used) - 1} position {PACK - 1}: padding holds id 7 label -100; padding is id 100257 with label -100"
        in problems
    )

    shutil.rmtree(folder)
    folder = copy(outputs["packed"])
    first = folder / "data-00000.arrow"

    starts, offsets = list_values(read_shard(first), "doc_starts", first)
    row = int(np.flatnonzero(np.diff(offsets) >= 2)[0])  # a row where two documents begin

    def repeat(values: Any) -> None:
        values[offsets[row] + 1] = values[offsets[row]]  # two equal starts: not increasing

    rewrite(first, "doc_starts", repeat)
    assert [str(p).startswith(f"data-00000.arrow row {row}: doc_starts [") for p in verify_folder(folder).problems] == [
        False,
        True,
    ]  # after the checksum


def split_packed_shard(folder: Path, at_row: int) -> None:
    """Cut a one-shard packed output in two at ``at_row``: a document then runs across the shard boundary,
    which the format allows although `mask` itself never writes it."""
    manifest = manifest_of(folder)
    (record,) = manifest["shards"]
    table = read_shard(folder / record["filename"])
    parts = [table.slice(0, at_row), table.slice(at_row)]
    assert 0 not in parts[1].column("doc_starts")[0].as_py()  # the second shard opens mid-document
    records = []
    for index, part in enumerate(parts):
        name = f"data-{index:05d}.arrow"
        write_stream(folder / name, part)
        starts = sum(len(s) for s in part.column("doc_starts").to_pylist())
        records.append(
            {
                "filename": name,
                "num_rows": part.num_rows,
                "num_documents": starts,
                "num_tokens": int(pa.compute.sum(part.column("num_tokens")).as_py()),
                "num_dropped": int(pa.compute.sum(part.column("num_dropped")).as_py()),
                "sha256": hashlib.sha256((folder / name).read_bytes()).hexdigest(),
            }
        )
    manifest["shards"] = records
    write_manifest(folder, manifest)
    state = json.loads((folder / "state.json").read_text())
    state["_data_files"] = [{"filename": r["filename"]} for r in records]
    (folder / "state.json").write_text(json.dumps(state))


@pytest.mark.parametrize("strategy", ["goldfish", "static"])
def test_document_running_across_shards_is_recomputed_exactly(tmp_path: Path, texts: list[str], strategy: str) -> None:
    """The continued document is recomputed from a short stand-in of its first part: for static,
    that stand-in must also keep every position's residue mod k."""
    folder = mask(tmp_path / "long", [texts[0] * 3, texts[1]], "--pack", "61", "--strategy", strategy, "--k", "3", "--seed", "2")
    rows = read_shard(folder / "data-00000.arrow").column("doc_starts").to_pylist()
    cut = next(i for i in range(5, len(rows)) if not rows[i])  # a row inside the first, long document
    split_packed_shard(folder, cut)
    report = verify_folder(folder)
    assert report.ok, report.problems
    assert compute_stats(folder).eligible.sum() == manifest_of(folder)["counts"]["eligible_tokens"]
    second = folder / "data-00001.arrow"

    def change(values: Any) -> None:
        values[20] = -100 if values[20] != -100 else 1  # early in the continued document

    rewrite(second, "labels", change)
    reseal(folder, 1)
    assert str(verify_folder(folder).problems[0]).startswith(f"data-00001.arrow row 0 position 20 (global row {cut}): label ")


def test_not_an_output_folder(tmp_path: Path) -> None:
    result = run("verify", tmp_path)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {tmp_path}: no goldfish_manifest.json and state.json: not a goldfish-prep output, or an interrupted run. "
        "Rerun `goldfish-prep mask ... --resume` to finish it\n"
    )


def test_help_teaches() -> None:
    result = run("verify", "--help")
    assert result.exit_code == 0 and "Examples:" in result.output and "--num-proc" in result.output


def test_masks_of_an_unknown_spec_version_are_refused(outputs: dict[str, Path], copy: Any) -> None:
    """docs/mask-spec.md: verify refuses masks of a goldfish spec version it does not implement."""
    folder = copy(outputs["documents"])
    manifest = manifest_of(folder)
    manifest["mask"]["spec_version"] = 99
    (folder / "goldfish_manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    result = run("verify", folder, "-q")
    assert result.exit_code == 1
    assert "these masks use goldfish spec version 99, this goldfish-prep implements version 1" in result.stderr
