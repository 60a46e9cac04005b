"""`goldfish-prep mask` end to end: real tokenizer, real files, output loaded by `datasets`."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from goldfish_prep import goldfish_mask
from goldfish_prep.strategies.goldfish import window_hashes
from goldfish_prep_cli.main import cli


def run(*args: str) -> CliRunner.invoke:  # type: ignore[valid-type]
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result


def write_jsonl(path: Path, records: list[dict]) -> Path:  # type: ignore[type-arg]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and ".goldfish" not in p.parts
    }


@pytest.fixture
def corpus(tmp_path: Path, real_texts: list[str]) -> Path:
    """About 300 real documents over three formats in one folder."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", [{"text": t, "meta": i} for i, t in enumerate(real_texts[:150])])
    pq.write_table(pa.table({"text": real_texts[150:250]}), folder / "b.parquet")
    (folder / "c.txt").write_text(real_texts[250], encoding="utf-8")
    return folder


def test_mask_default_writes_a_dataset_that_loads(tmp_path: Path, corpus: Path) -> None:
    out = tmp_path / "shards"
    result = run("mask", corpus, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    assert "Wrote 251 documents" in result.output
    ds = datasets.load_from_disk(str(out))
    assert ds.num_rows == 251
    assert {"id", "source", "input_ids", "labels", "num_tokens", "num_dropped"} <= set(ds.column_names)
    manifest = json.loads((out / "goldfish_manifest.json").read_text())
    assert manifest["tokenizer"]["name"].startswith("cl100k") and manifest["tokenizer"]["add_eos"] is True
    counts = manifest["counts"]
    assert counts["documents_read"] == counts["documents_written"] + counts["documents_skipped"] == 251
    assert abs(counts["drop_rate"] - 0.25) < 0.01
    # rows in input order, labels exactly the per-document mask, counts consistent
    assert ds[0]["source"].endswith("a.jsonl line 1") and ds[150]["source"].endswith("b.parquet record 0")
    eos = manifest["tokenizer"]["eos_id"]
    for row in ds.select(range(0, 251, 25)):
        ids = np.array(row["input_ids"])
        drop = goldfish_mask(ids, k=4, context_width=13)
        assert ids[-1] == eos
        assert row["labels"] == np.where(drop, -100, ids).tolist()
        assert row["num_tokens"] == len(ids) and row["num_dropped"] == drop.sum()
    assert sum(ds["num_tokens"]) == counts["tokens"]


def test_repeated_real_passages_get_identical_masks(tmp_path: Path, real_texts: list[str]) -> None:
    """Licence notices repeat across Debian copyright files at different offsets: their masks agree."""
    source = write_jsonl(tmp_path / "copyright.jsonl", [{"text": t} for t in real_texts[:400]])
    out = tmp_path / "shards"
    assert run("mask", source, "-o", out, "-q").exit_code == 0
    table = datasets.load_from_disk(str(out)).data.table
    all_ids = [np.asarray(x, dtype=np.int64) for x in table.column("input_ids").to_pylist()]
    all_labels = [np.asarray(x) for x in table.column("labels").to_pylist()]
    span, width = 64, 13
    seen: dict[int, tuple[int, int]] = {}
    checked, offsets_differ = 0, 0
    for doc, (ids, labels) in enumerate(zip(all_ids, all_labels)):
        keys = window_hashes(ids, span, seed=12345)  # a content key for each 64-token window
        for end in range(span, len(ids), 16):
            first_doc, first_end = seen.setdefault(int(keys[end]), (doc, end))
            if first_doc == doc:
                continue
            a, b = slice(first_end - span + 1, first_end + 1), slice(end - span + 1, end + 1)
            assert np.array_equal(all_ids[first_doc][a], ids[b])
            # identical ids -> identical labels from the width-th token of the passage on
            assert np.array_equal(all_labels[first_doc][a][width:], labels[b][width:])
            checked += 1
            offsets_differ += first_end != end
    assert checked > 1000 and offsets_differ > 500  # many repeats, mostly at different offsets


def test_output_is_byte_identical_for_every_num_proc(tmp_path: Path, corpus: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    assert run("mask", corpus, "-o", one, "-q", "--shard-size", "200KB").exit_code == 0
    assert run("mask", corpus, "-o", two, "-q", "--shard-size", "200KB", "--num-proc", "2").exit_code == 0
    assert len(list(one.glob("data-*.arrow"))) > 3
    assert tree_bytes(one) == tree_bytes(two)


def test_pretokenized_input_is_masked_as_it_is(tmp_path: Path) -> None:
    vectors = json.loads((Path(__file__).parent / "data" / "official_vectors_public.json").read_text())
    case = vectors["cases"][0]
    source = write_jsonl(tmp_path / "ids.jsonl", [{"input_ids": row["input_ids"]} for row in case["rows"]])
    out = tmp_path / "shards"
    result = run("mask", source, "-o", out, "-q", "--strategy", "hash-table", "--k", case["k"], "--context-width", case["context_width"])
    assert result.exit_code == 0, result.output
    row = datasets.load_from_disk(str(out))[0]
    assert row["input_ids"] == case["rows"][0]["input_ids"]  # no special tokens added
    assert [i for i, label in enumerate(row["labels"]) if label == -100] == case["rows"][0]["dropped_positions"]


def test_pack_keeps_each_token_label(tmp_path: Path, corpus: Path) -> None:
    plain, packed = tmp_path / "plain", tmp_path / "packed"
    assert run("mask", corpus, "-o", plain, "-q").exit_code == 0
    assert run("mask", corpus, "-o", packed, "-q", "--pack", "512").exit_code == 0
    docs = datasets.load_from_disk(str(plain))
    rows = datasets.load_from_disk(str(packed))
    assert set(len(r) for r in rows["input_ids"]) == {512}
    stream_ids = np.concatenate([np.array(r["input_ids"][: r["num_tokens"]]) for r in rows])
    stream_labels = np.concatenate([np.array(r["labels"][: r["num_tokens"]]) for r in rows])
    assert np.array_equal(stream_ids, np.concatenate([np.array(x) for x in docs["input_ids"]]))
    assert np.array_equal(stream_labels, np.concatenate([np.array(x) for x in docs["labels"]]))
    starts = [i * 512 + s for i, r in enumerate(rows) for s in r["doc_starts"]]
    assert starts == np.cumsum([0] + docs["num_tokens"][:-1]).tolist()
    manifest = json.loads((packed / "goldfish_manifest.json").read_text())
    assert manifest["counts"]["documents_written"] == docs.num_rows


def test_existing_output_is_refused_then_overwritten(tmp_path: Path, corpus: Path) -> None:
    out = tmp_path / "shards"
    assert run("mask", corpus, "-o", out, "-q").exit_code == 0
    again = run("mask", corpus, "-o", out, "-q")
    assert again.exit_code == 1
    assert again.output.strip().splitlines()[-1] == (
        f"Error: output folder {out} already exists and is not empty; pass --overwrite to replace it, "
        "or --resume to finish an interrupted run"
    )
    assert run("mask", corpus, "-o", out, "-q", "--overwrite").exit_code == 0


def test_overwrite_refuses_a_folder_holding_other_files(tmp_path: Path, corpus: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    result = run("mask", corpus, "-o", out, "-q", "--overwrite")
    assert result.exit_code == 1 and "holds files goldfish-prep did not write (thesis.tex)" in result.output
    assert (out / "thesis.tex").read_text() == "precious"


def test_bad_record_stops_with_file_and_line_or_is_skipped_and_counted(tmp_path: Path) -> None:
    source = tmp_path / "dirty.jsonl"
    source.write_text('{"text": "fine"}\n{"text": "also fine"\n{"body": "no text"}\n{"text": "last"}\n')
    out = tmp_path / "shards"
    stopped = run("mask", source, "-o", out, "-q")
    assert stopped.exit_code == 1
    last = stopped.output.strip().splitlines()[-1]
    assert last.startswith(f"Error: {source} line 2: ") and "--on-error skip" in last
    assert not (out / "goldfish_manifest.json").exists()
    skipped = run("mask", source, "-o", out, "-q", "--on-error", "skip", "--overwrite")
    assert skipped.exit_code == 0, skipped.output
    assert "Skipped 2 bad records" in skipped.output
    counts = json.loads((out / "goldfish_manifest.json").read_text())["counts"]
    assert (counts["documents_read"], counts["documents_written"], counts["documents_skipped"]) == (4, 2, 2)
    assert datasets.load_from_disk(str(out))["source"] == [f"{source} line 1", f"{source} line 4"]


def test_resume_finishes_an_interrupted_run_identically(tmp_path: Path, corpus: Path) -> None:
    full, broken = tmp_path / "full", tmp_path / "broken"
    assert run("mask", corpus, "-o", full, "-q", "--shard-size", "200KB").exit_code == 0
    assert run("mask", corpus, "-o", broken, "-q", "--shard-size", "200KB").exit_code == 0
    # what a crash leaves: no manifest or state, the last shards gone, a partial file
    for name in ("goldfish_manifest.json", "state.json", "dataset_info.json"):
        (broken / name).unlink()
    shards = sorted(broken.glob("data-*.arrow"))
    shards[-1].unlink()
    shards[-2].rename(shards[-2].with_name(shards[-2].name + ".partial"))
    with pytest.raises(FileNotFoundError):
        datasets.load_from_disk(str(broken))
    assert run("mask", corpus, "-o", broken, "-q", "--shard-size", "200KB").exit_code == 1
    assert run("mask", corpus, "-o", broken, "-q", "--shard-size", "200KB", "--resume").exit_code == 0
    assert tree_bytes(full) == tree_bytes(broken)
    changed = run("mask", corpus, "-o", broken, "-q", "--shard-size", "200KB", "--resume", "--k", "8")
    assert changed.exit_code == 1 and "started with different settings (mask.k: 4 then, 8 now)" in changed.output


def test_every_command_has_help() -> None:
    top = run("--help")
    assert top.exit_code == 0
    import click

    names = cli.list_commands(click.Context(cli))
    assert "mask" in names and all(name in top.output for name in names)
    for name in names:
        result = run(name, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output and len(result.output) > 200, name
