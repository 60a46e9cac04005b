"""``export --format parquet`` read back with pyarrow and with Hugging Face ``datasets`` (as axolotl loads it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from goldfish_prep.export import export
from goldfish_prep.export.parquet import export_parquet
from goldfish_prep.export.source import open_source
from tests.exports import IGNORE_INDEX, make_corpora, shard_documents


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_corpora(tmp_path_factory.mktemp("parquet"))


def shard_rows(folder: Path) -> list[dict[str, list[int]]]:
    import datasets

    return list(datasets.load_from_disk(str(folder)).select_columns(["input_ids", "labels"]))


@pytest.mark.parametrize("layout", ["documents", "packed"])
def test_pyarrow_reads_exactly_the_three_columns_with_the_shard_labels(layout: str, corpora: dict[str, Path], tmp_path: Path) -> None:
    result = export(corpora[layout], tmp_path / "pq", "parquet")
    table = pq.read_table(sorted((tmp_path / "pq").glob("*.parquet")))
    assert table.column_names == ["input_ids", "attention_mask", "labels"]  # axolotl's rule: exactly these
    rows = shard_rows(corpora[layout])
    assert table.num_rows == len(rows) and len(result.files) > 3
    exported = table.to_pylist()
    for row, shard_row in zip(exported, rows):
        assert row["input_ids"] == shard_row["input_ids"] and row["labels"] == shard_row["labels"]
    # every real token, end to end: the mask is labels != -100; padding (packed only) has attention 0
    real_ids = np.concatenate([np.array(r["input_ids"])[np.array(r["attention_mask"]) == 1] for r in exported])
    real_labels = np.concatenate([np.array(r["labels"])[np.array(r["attention_mask"]) == 1] for r in exported])
    documents = shard_documents(corpora[layout])
    assert np.array_equal(real_ids, np.concatenate([d[0] for d in documents]))
    assert np.array_equal(real_labels != IGNORE_INDEX, np.concatenate([d[1] for d in documents]) != IGNORE_INDEX)
    padding_labels = [label for r in exported for a, label in zip(r["attention_mask"], r["labels"]) if a == 0]
    assert (len(padding_labels) > 0) == (layout == "packed") and set(padding_labels) <= {IGNORE_INDEX}
    assert result.counts.documents == 40 and result.counts.tokens == len(real_ids)


def test_datasets_streams_the_export(corpora: dict[str, Path], tmp_path: Path) -> None:
    import datasets

    export(corpora["packed"], tmp_path / "pq", "parquet")
    stream = datasets.load_dataset("parquet", data_files=str(tmp_path / "pq" / "*.parquet"), split="train", streaming=True)
    streamed = list(stream)
    rows = shard_rows(corpora["packed"])
    assert [r["labels"] for r in streamed] == [r["labels"] for r in rows]
    assert [r["input_ids"] for r in streamed] == [r["input_ids"] for r in rows]
    assert sorted(streamed[0]) == ["attention_mask", "input_ids", "labels"]


def test_row_groups_hold_a_bounded_number_of_tokens(corpora: dict[str, Path], tmp_path: Path) -> None:
    export_parquet(open_source(corpora["documents"]), tmp_path / "pq", row_group_tokens=300)
    groups = 0
    for path in sorted((tmp_path / "pq").glob("*.parquet")):
        file = pq.ParquetFile(path)
        for index in range(file.num_row_groups):
            lengths = [len(ids) for ids in file.read_row_group(index, columns=["input_ids"]).column(0).to_pylist()]
            assert sum(lengths) <= 300 or len(lengths) == 1
            groups += 1
    assert groups > len(list((tmp_path / "pq").glob("*.parquet")))  # the budget did split files
