"""What every export format promises: streaming memory, atomic output, same bytes twice, the source's hash, clear errors."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import pytest
import xxhash
from click.testing import CliRunner

from goldfish_prep.errors import InputError
from goldfish_prep.export import FORMATS, export
from goldfish_prep_cli.main import cli
from tests.exports import make_corpora, shard_documents, tree_bytes
from tests.shards import LICENSES, mask_texts, train_bpe

REPO = Path(__file__).resolve().parents[1]
NUMPY_DOMAIN = 389047  # numpy reports its array buffers to tracemalloc under this domain (NPY_TRACE_DOMAIN)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_corpora(tmp_path_factory.mktemp("safety"))


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every licence on the machine, paragraph by paragraph (881 documents, 135k tokens), in about 70 packed shards."""
    folder = tmp_path_factory.mktemp("many")
    texts = [
        p.strip()
        for f in sorted(LICENSES.iterdir())
        if f.is_file()
        for p in re.split(r"\n\s*\n", f.read_text(encoding="utf-8", errors="replace"))
        if len(p.strip()) > 40
    ]
    return mask_texts(folder, "shards", texts, "--tokenizer", str(train_bpe(folder)), "--shard-size", "4KB", "--pack", "256")


def record_of(out: Path, format_name: str) -> dict[str, object]:
    path = out.with_name(out.name + ".json") if format_name == "nanogpt" else out / "goldfish_export.json"
    record: dict[str, object] = json.loads(path.read_text())
    return record


def leftovers(root: Path, keep: set[Path]) -> list[Path]:
    """Everything under ``root`` that is not one of the ``keep`` folders (the input corpora)."""
    return sorted(p for p in root.rglob("*") if not any(p == k or k in p.parents for k in keep))


@pytest.mark.parametrize("format_name", list(FORMATS))
def test_same_bytes_twice_and_the_manifest_hash_recorded(format_name: str, corpora: dict[str, Path], tmp_path: Path) -> None:
    first = export(corpora["packed"], tmp_path / "a" / "out", format_name)
    export(corpora["packed"], tmp_path / "b" / "out", format_name)
    files = tree_bytes(tmp_path / "a" / "out")
    assert files == tree_bytes(tmp_path / "b" / "out") and len(files) >= 3
    manifest_sha = hashlib.sha256((corpora["packed"] / "goldfish_manifest.json").read_bytes()).hexdigest()
    record = record_of(tmp_path / "a" / "out", format_name)
    recorded = record["source_manifest_sha256"] if format_name == "nanogpt" else record["source"]["manifest_sha256"]  # type: ignore[index]
    assert recorded == manifest_sha
    assert first.counts.tokens > 6000 and 0 < first.counts.supervised_tokens < first.counts.tokens


@pytest.mark.parametrize("format_name", list(FORMATS))
def test_a_failure_mid_export_leaves_nothing_behind(
    format_name: str, corpora: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from goldfish_prep.format.folder import OutputFolder

    calls = []

    def failing_read(folder: OutputFolder, name: str, columns: object = None, *checksums: object) -> object:
        calls.append(name)
        if len(calls) == 4:
            raise InputError(name, "injected failure")
        return real_read(folder, name, columns, *checksums)

    real_read = OutputFolder.read_shard
    monkeypatch.setattr(OutputFolder, "read_shard", failing_read)
    with pytest.raises(InputError, match="injected failure"):
        export(corpora["packed"], tmp_path / "out", format_name)
    assert leftovers(tmp_path, set()) == []


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from goldfish_prep.format.folder import OutputFolder
    from goldfish_prep.export import export

    real_read, calls = OutputFolder.read_shard, []

    def read_then_die(folder, name, columns=None, *checksums):
        calls.append(name)
        if len(calls) == 4:  # three shards written, the fourth being read: die as a kill -9 would
            os.kill(os.getpid(), signal.SIGKILL)
        return real_read(folder, name, columns, *checksums)

    OutputFolder.read_shard = read_then_die  # every shard is read through the output folder
    export(sys.argv[1], sys.argv[2], sys.argv[3])
    """
)


@pytest.mark.parametrize("format_name", list(FORMATS))
def test_a_killed_export_leaves_no_file_that_loads_and_a_rerun_completes(
    format_name: str, corpora: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    killed = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(corpora["packed"]), str(out), format_name],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = leftovers(tmp_path, set())
    assert left, "the kill should have struck mid-export"
    if format_name == "nanogpt":  # only temporary names: no OUT.bin, OUT.mask.bin or OUT.json
        assert all(p.name.endswith(".partial") for p in left), left
    else:  # nothing at OUT; in the staging folder, only whole files or .partial ones
        assert not out.exists() and all(p == out.with_name("out.partial") or out.with_name("out.partial") in p.parents for p in left)
        assert not (out.with_name("out.partial") / "goldfish_export.json").exists()
    export(corpora["packed"], out, format_name)  # the rerun clears the leftover and completes
    export(corpora["packed"], tmp_path / "clean" / "out", format_name)
    assert tree_bytes(out) == tree_bytes(tmp_path / "clean" / "out")
    assert not out.with_name("out.partial").exists() and not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("format_name", list(FORMATS))
def test_memory_does_not_grow_with_the_corpus(format_name: str, many_shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The numpy memory in use whenever a shard is opened stays at about one shard, over 70 shards.

    Holding what was read would cost at least one byte per token (the keep
    flags) and two to four more for the ids; streaming holds one shard (plus
    the one packed document that runs on into the next shard).
    """
    from goldfish_prep.format.folder import OutputFolder

    shards = many_shards
    export(shards, tmp_path / "warm-up", format_name)  # imports and first-call caches are not the export's memory
    in_use: list[int] = []
    real_read = OutputFolder.read_shard

    def measured_read(folder: OutputFolder, name: str, columns: object = None, *checksums: object) -> object:
        numpy_arrays = tracemalloc.take_snapshot().filter_traces([tracemalloc.DomainFilter(True, NUMPY_DOMAIN)])
        in_use.append(sum(trace.size for trace in numpy_arrays.traces))
        return real_read(folder, name, columns, *checksums)

    monkeypatch.setattr(OutputFolder, "read_shard", measured_read)
    tracemalloc.start()
    try:
        tokens = export(shards, tmp_path / "out", format_name).counts.tokens
    finally:
        tracemalloc.stop()
    # about 40 KB at most here (one shard of about 1,900 tokens); all keep flags alone would be 135 KB
    assert len(in_use) >= 50 and tokens > 100_000
    assert max(in_use) < tokens / 2, (in_use, tokens)


def test_cli_errors_are_one_line(corpora: dict[str, Path], tmp_path: Path) -> None:
    def run(*args: object) -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["export", *map(str, args)])
        return result.exit_code, result.output.strip()

    shards, out = corpora["documents"], tmp_path / "olmo"
    assert run(shards, "-o", out, "--format", "olmo")[0] == 0
    assert run(shards, "-o", out, "--format", "olmo") == (
        1,
        f"Error: {out} already exists; pass --overwrite to replace it, or choose another -o folder",
    )
    assert run(shards, "-o", out, "--format", "megatron", "--overwrite")[0] == 0  # an earlier export may be replaced
    assert sorted(p.name for p in out.iterdir()) == [
        "goldfish_export.json",
        "loss_mask_document.bin",
        "loss_mask_document.idx",
        "text_document.bin",
        "text_document.idx",
    ]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert run(shards, "-o", tmp_path / "mine", "--format", "parquet", "--overwrite") == (
        1,
        f"Error: {tmp_path / 'mine'} is not an export of goldfish-prep (no goldfish_export.json); refusing to replace it: choose another -o folder",
    )
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert run(shards, "-o", tmp_path / "x", "--format", "olmo", "--dtype", "uint8") == (
        1,
        "Error: --dtype uint8 cannot hold the ids of a 512-id vocabulary (largest id 511); leave --dtype out to get the smallest that does",
    )
    assert run(shards, "-o", tmp_path / "x", "--format", "nanogpt", "--dtype", "int32") == (
        1,
        "Error: --dtype int32 is not read by nanoGPT exports; choose one of uint16, uint32, or leave --dtype out",
    )
    assert run(shards, "-o", tmp_path / "x", "--format", "parquet", "--dtype", "int32") == (
        1,
        "Error: --dtype does not apply to Parquet exports (ids and labels are int32, as in the shards); leave it out",
    )
    assert run(shards, "-o", tmp_path / "x", "--format", "megatron", "--dtype", "int32")[0] == 0
    assert record_of(tmp_path / "x", "megatron")["token_dtype"] == "int32"
    code, output = run(shards, "-o", tmp_path / "y", "--format", "xml")
    assert code == 2 and "'xml' is not one of 'nanogpt', 'olmo', 'megatron', 'parquet', 'hf'" in output
    assert not (tmp_path / "y").exists()


@pytest.mark.parametrize("format_name", list(FORMATS))
def test_a_folder_that_is_not_a_goldfish_output_is_named(format_name: str, tmp_path: Path) -> None:
    (tmp_path / "half").mkdir()
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "half"), "-o", str(tmp_path / "out"), "--format", format_name])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {tmp_path / 'half'}: no goldfish_manifest.json and state.json: not a goldfish-prep output")
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def split_first_shard(packed: Path, folder: Path) -> Path:
    """A copy of a packed output whose first shard is cut, at a row that opens mid-document, into two shards.

    The format allows a document to run on into the next shard (``mask`` never writes one): the
    exports must then still write it whole.
    """
    import pyarrow as pa

    from goldfish_prep.format import read_shard

    shutil.copytree(packed, folder)
    manifest = json.loads((folder / "goldfish_manifest.json").read_text())
    first = manifest["shards"][0]
    table = read_shard(packed / first["filename"])
    starts = table.column("doc_starts").to_pylist()
    cut = next(i for i in range(1, len(starts)) if starts[i] and starts[i][0] != 0)
    records = []
    for name, part in (("data-split-a.arrow", table.slice(0, cut)), ("data-split-b.arrow", table.slice(cut))):
        with pa.OSFile(str(folder / name), "wb") as sink, pa.ipc.new_stream(sink, part.schema) as writer:
            writer.write_table(part)
        records.append(_entry(first, folder / name, part))
    records[1]["num_documents"] = first["num_documents"] - records[0]["num_documents"]
    manifest["shards"] = records + manifest["shards"][1:]
    (folder / "goldfish_manifest.json").write_text(json.dumps(manifest))
    state = json.loads((folder / "state.json").read_text())  # readers check that it lists the manifest's shards
    state["_data_files"] = [{"filename": entry["filename"]} for entry in manifest["shards"]]
    (folder / "state.json").write_text(json.dumps(state))
    return folder


def _entry(first: dict[str, object], path: Path, part: object) -> dict[str, object]:
    """The manifest entry of a shard cut by hand: its checksum and counts, so readers' checks pass."""
    column = part.column  # type: ignore[attr-defined]
    return {
        **first,
        "filename": path.name,
        "num_rows": part.num_rows,  # type: ignore[attr-defined]
        "num_tokens": sum(column("num_tokens").to_pylist()),
        "num_dropped": sum(column("num_dropped").to_pylist()),
        "num_documents": sum(len(starts) for starts in column("doc_starts").to_pylist()),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "xxh3_128": xxhash.xxh3_128_hexdigest(path.read_bytes()),
    }


@pytest.mark.filterwarnings("ignore::UserWarning")  # megatron-core warns that Apex/TE are absent
def test_a_document_running_across_shards_is_exported_whole(corpora: dict[str, Path], tmp_path: Path) -> None:
    import gzip

    import numpy as np
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    split = split_first_shard(corpora["packed"], tmp_path / "split")
    documents = shard_documents(corpora["packed"])  # the unsplit folder, read with `datasets`
    export(split, tmp_path / "mg", "megatron")
    text = IndexedDataset(str(tmp_path / "mg" / "text_document"))
    mask = IndexedDataset(str(tmp_path / "mg" / "loss_mask_document"))
    assert len(text) == len(documents)
    for index, (ids, labels) in enumerate(documents):
        assert np.array_equal(text[index], ids) and np.array_equal(mask[index], (labels != -100).astype(np.uint8))
    export(split, tmp_path / "olmo", "olmo")
    lengths = []
    for part in sorted((tmp_path / "olmo" / "token_ids").glob("*.csv.gz")):
        with gzip.open(part, "rt") as rows:
            lengths.extend(int(end) - int(start) for start, end in (line.split(",") for line in rows))
    assert lengths == [len(ids) for ids, _ in documents]  # every part holds whole documents
    export(split, tmp_path / "flat", "nanogpt")
    export(corpora["packed"], tmp_path / "flat-unsplit", "nanogpt")
    for suffix in (".bin", ".mask.bin"):
        assert (tmp_path / f"flat{suffix}").read_bytes() == (tmp_path / f"flat-unsplit{suffix}").read_bytes()
