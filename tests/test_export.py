"""``goldfish-prep export`` (the default ``--format nanogpt``): flat .bin ids and masks for nanoGPT-style loops, round-tripped against the shards."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from goldfish_prep.export import export
from goldfish_prep.format import IGNORE_INDEX, iter_shards
from goldfish_prep_cli.main import cli
from tests.shards import LICENSES, mask_texts, train_bpe


@pytest.fixture(scope="module")
def texts() -> list[str]:
    text = (LICENSES / "MPL-2.0").read_text(encoding="utf-8")
    return [p.strip() for p in re.split(r"\n\s*\n", text) if len(p.strip()) > 100][:40]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(train_bpe(tmp_path_factory.mktemp("tokenizer")))


def shard_columns(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every document's ids and labels end to end, read through the documented format."""
    ids, labels = [], []
    for _, table in iter_shards(folder, ["input_ids", "labels"]):
        ids.extend(table.column("input_ids").to_pylist())
        labels.extend(table.column("labels").to_pylist())
    return np.concatenate(ids), np.concatenate(labels)


def test_export_round_trips_ids_and_mask(tmp_path: Path, texts: list[str], tokenizer: str) -> None:
    shards = mask_texts(tmp_path, "shards", texts, "--tokenizer", tokenizer, "--k", "3")
    result = export(shards, tmp_path / "flat" / "train")
    meta = json.loads((tmp_path / "flat" / "train.json").read_text())
    assert meta["tokens"] == {"file": "train.bin", "dtype": "uint16", "count": result.counts.tokens}  # vocab 512 fits 16 bits
    ids = np.memmap(tmp_path / "flat" / "train.bin", dtype=np.uint16, mode="r")
    keep = np.memmap(tmp_path / "flat" / "train.mask.bin", dtype=np.uint8, mode="r")
    expected_ids, expected_labels = shard_columns(shards)
    assert np.array_equal(ids, expected_ids)
    assert np.array_equal(keep, (expected_labels != IGNORE_INDEX).astype(np.uint8))
    assert meta["supervised_tokens"] == int(keep.sum()) == result.counts.supervised_tokens
    assert meta["goldfish"]["k"] == 3 and meta["tokenizer"]["vocab_size"] == 512


def test_packed_and_document_shards_export_the_same_bytes(tmp_path: Path, texts: list[str], tokenizer: str) -> None:
    plain = mask_texts(tmp_path, "plain", texts, "--tokenizer", tokenizer)
    packed = mask_texts(tmp_path, "packed", texts, "--tokenizer", tokenizer, "--pack", "96")
    export(plain, tmp_path / "plain-flat")
    export(packed, tmp_path / "packed-flat")  # the padding of the last packed row is left out
    for suffix in (".bin", ".mask.bin"):
        assert (tmp_path / f"plain-flat{suffix}").read_bytes() == (tmp_path / f"packed-flat{suffix}").read_bytes()


def test_the_nanogpt_recipe_recovers_the_shard_labels(tmp_path: Path, texts: list[str], tokenizer: str) -> None:
    shards = mask_texts(tmp_path, "shards", texts, "--tokenizer", tokenizer)
    export(shards, tmp_path / "train")
    ids = np.memmap(tmp_path / "train.bin", dtype=np.uint16, mode="r")
    keep = np.memmap(tmp_path / "train.mask.bin", dtype=np.uint8, mode="r")
    _, labels = shard_columns(shards)
    block, start = 64, 123
    y = ids[start + 1 : start + 1 + block].astype(np.int64)
    y[keep[start + 1 : start + 1 + block] == 0] = IGNORE_INDEX  # docs/training.md's nanoGPT loop does exactly this
    assert np.array_equal(y, labels[start + 1 : start + 1 + block])


def test_large_vocabularies_export_as_uint32(tmp_path: Path, texts: list[str]) -> None:
    shards = mask_texts(tmp_path, "shards", texts[:3])  # the default cl100k_base: 100,277 ids
    result = export(shards, tmp_path / "train")
    assert result.dtype == "uint32"
    ids, _ = shard_columns(shards)
    assert np.array_equal(np.fromfile(tmp_path / "train.bin", dtype=np.uint32), ids)


def test_cli_refuses_to_overwrite_unless_asked(tmp_path: Path, texts: list[str], tokenizer: str) -> None:
    shards = mask_texts(tmp_path, "shards", texts[:3], "--tokenizer", tokenizer)
    first = CliRunner().invoke(cli, ["export", str(shards), "-o", str(tmp_path / "train")])
    assert first.exit_code == 0, first.output
    assert re.match(r"Wrote [\d,]+ token ids as uint16 to .*train\.bin", first.output)
    again = CliRunner().invoke(cli, ["export", str(shards), "-o", str(tmp_path / "train")])
    assert again.exit_code == 1
    assert (
        again.output.strip()
        == f"Error: {tmp_path / 'train.bin'} already exists; pass --overwrite to replace it, or choose another -o prefix"
    )
    forced = CliRunner().invoke(cli, ["export", str(shards), "-o", str(tmp_path / "train"), "--overwrite"])
    assert forced.exit_code == 0
    assert not list(tmp_path.glob("*.partial"))


def test_cli_names_an_incomplete_folder(tmp_path: Path) -> None:
    (tmp_path / "half").mkdir()
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "half"), "-o", str(tmp_path / "train")])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {tmp_path / 'half'}: no goldfish_manifest.json")


def test_cli_refuses_a_folder_as_the_nanogpt_prefix(tmp_path: Path, texts: list[str], tokenizer: str) -> None:
    shards = mask_texts(tmp_path, "shards", texts[:3], "--tokenizer", tokenizer)
    (tmp_path / "data").mkdir()
    result = CliRunner().invoke(cli, ["export", str(shards), "-o", str(tmp_path / "data")])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: {tmp_path / 'data'} is a folder; nanoGPT exports take a file prefix (PREFIX.bin, PREFIX.mask.bin, PREFIX.json): "
        f"pass -o {tmp_path / 'data' / 'train'}, say"
    )
