"""``export --format olmo`` read back by OLMo-core's own numpy datasets, label masks compared with the shards.

OLMo-core (ai2-olmo-core, a test dependency) builds the datasets exactly as a
training config would: ``NumpyFSLDatasetConfig`` (documents end to end, cut into
fixed windows) and ``NumpyPaddedFSLDatasetConfig`` (one instance per document,
boundaries from the ``.csv.gz`` metadata), both with ``label_mask_paths``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from goldfish_prep.export import export
from tests.exports import IGNORE_INDEX, keep_of, make_corpora, shard_documents

olmo_data = pytest.importorskip("olmo_core.data")


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_corpora(tmp_path_factory.mktemp("olmo"))


def tokenizer_config(folder: Path) -> object:
    tokenizer = json.loads((folder / "goldfish_manifest.json").read_text())["tokenizer"]
    return olmo_data.TokenizerConfig(vocab_size=tokenizer["vocab_size"], eos_token_id=tokenizer["eos_id"], pad_token_id=tokenizer["eos_id"])


def build(config_type: type, out: Path, folder: Path, work: Path, sequence_length: int) -> object:
    config = config_type(
        paths=[str(out / "token_ids" / "*.npy")],
        label_mask_paths=[str(out / "label_mask" / "*.npy")],
        expand_glob=True,
        tokenizer=tokenizer_config(folder),
        sequence_length=sequence_length,
        work_dir=str(work),
    )
    dataset = config.build()
    dataset.prepare()
    return dataset


@pytest.mark.parametrize("layout", ["documents", "packed"])
def test_fsl_dataset_label_masks_equal_the_shard_labels(
    layout: str, corpora: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLMO_DATA_PREP_WORKERS", "1")
    result = export(corpora[layout], tmp_path / "olmo", "olmo")
    assert result.dtype == "uint16"  # OLMo-core's own rule for a 512-id vocabulary: uint8 cannot hold id 511
    documents = shard_documents(corpora[layout])
    sequence_length = 32
    dataset = build(olmo_data.NumpyFSLDatasetConfig, tmp_path / "olmo", corpora[layout], tmp_path / "work", sequence_length)
    assert dataset.dtype == np.uint16
    # OLMo-core chunks each file on its own and drops each file's remainder: build the expectation per part
    parts = json.loads((tmp_path / "olmo" / "goldfish_export.json").read_text())["layout"]["parts"]
    assert sum(p["documents"] for p in parts) == len(documents) and len(parts) > 3
    expected_ids, expected_labels, first = [], [], 0
    for part in parts:
        ids = np.concatenate([d[0] for d in documents[first : first + part["documents"]]])
        labels = np.concatenate([d[1] for d in documents[first : first + part["documents"]]])
        usable = len(ids) // sequence_length * sequence_length
        expected_ids.append(ids[:usable])
        expected_labels.append(labels[:usable])
        first += part["documents"]
    ids, labels = np.concatenate(expected_ids), np.concatenate(expected_labels)
    assert len(dataset) * sequence_length == len(ids)
    for index in range(len(dataset)):
        item = dataset[index]
        window = slice(index * sequence_length, (index + 1) * sequence_length)
        assert np.array_equal(item["input_ids"].numpy(), ids[window])
        assert np.array_equal(item["label_mask"].numpy(), keep_of(labels[window]))
        # what the trainer computes its loss on: the next token's label, -100 where goldfish dropped it
        targets = olmo_data.utils.get_labels({"input_ids": item["input_ids"][None], "label_mask": item["label_mask"][None]})[0]
        assert np.array_equal(targets[:-1].numpy(), labels[window][1:])
    assert (labels == IGNORE_INDEX).any() and not (labels == IGNORE_INDEX).all()


@pytest.mark.parametrize("layout", ["documents", "packed"])
def test_padded_dataset_gives_each_document_its_mask(
    layout: str, corpora: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLMO_DATA_PREP_WORKERS", "1")
    monkeypatch.setenv("OLMO_DATA_PREP_USE_ARRAY_IF_LOCAL", "false")  # document boundaries from our .csv.gz files
    export(corpora[layout], tmp_path / "olmo", "olmo")
    documents = shard_documents(corpora[layout])
    longest = max(len(ids) for ids, _ in documents)
    dataset = build(olmo_data.NumpyPaddedFSLDatasetConfig, tmp_path / "olmo", corpora[layout], tmp_path / "work", longest)
    assert len(dataset) == len(documents) == 40
    for index, (ids, labels) in enumerate(documents):
        item = dataset[index]
        assert np.array_equal(item["input_ids"][: len(ids)].numpy(), ids)
        assert np.array_equal(item["label_mask"].numpy(), np.concatenate([keep_of(labels), np.zeros(longest - len(ids), bool)]))
    assert isinstance(item["label_mask"], torch.Tensor)


@pytest.mark.parametrize("vocab_size", [256, 257, 65536, 65537, 100277, 2**32 + 1])
def test_the_token_dtype_is_the_one_olmo_core_infers(vocab_size: int) -> None:
    """The dtype follows OLMo-core's NumpyDatasetConfig.get_dtype, so a config that leaves dtype out reads the files right."""
    from goldfish_prep.export.dtypes import token_dtype
    from goldfish_prep.export.olmo import DTYPES

    tokenizer = olmo_data.TokenizerConfig(vocab_size=vocab_size, eos_token_id=0, pad_token_id=0)
    config = olmo_data.NumpyFSLDatasetConfig(paths=["unused.npy"], tokenizer=tokenizer, sequence_length=8)
    assert token_dtype(vocab_size, DTYPES, "olmo") == np.dtype(config.get_dtype())
