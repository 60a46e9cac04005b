"""``export --format megatron`` read back by megatron-core's ``IndexedDataset`` and ``GPTDataset``.

Three checks: the files are byte for byte what Megatron's own
``IndexedDatasetBuilder`` writes for the same documents; ``IndexedDataset``
gives every document's ids and mask; and the ``GoldfishGPTDataset`` of
docs/training.md (executed from the docs) turns every sample's mask into
``loss_mask`` at the right, shifted, positions.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from goldfish_prep.export import export
from tests.exports import keep_of, license_paragraphs, make_corpora, shard_documents
from tests.shards import mask_texts

pytest.importorskip("megatron.core")
torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # megatron-core warns that Apex/TE are absent

DOCS = Path(__file__).resolve().parents[1] / "docs" / "training.md"


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_corpora(tmp_path_factory.mktemp("megatron"))


@pytest.mark.parametrize("layout", ["documents", "packed"])
def test_indexed_datasets_hold_every_document_and_its_mask(layout: str, corpora: dict[str, Path], tmp_path: Path) -> None:
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    export(corpora[layout], tmp_path / "mg", "megatron")
    documents = shard_documents(corpora[layout])
    text = IndexedDataset(str(tmp_path / "mg" / "text_document"))
    mask = IndexedDataset(str(tmp_path / "mg" / "loss_mask_document"))
    assert len(text) == len(mask) == len(documents) == 40
    assert text.index.dtype == np.uint16 and mask.index.dtype == np.uint8
    assert np.array_equal(text.document_indices, mask.document_indices)
    assert np.array_equal(text.sequence_lengths, mask.sequence_lengths)
    for index, (ids, labels) in enumerate(documents):
        assert np.array_equal(text[index], ids)
        assert np.array_equal(mask[index], keep_of(labels).astype(np.uint8))
    assert np.array_equal(mask.get(5, offset=3, length=7), keep_of(documents[5][1])[3:10])


def test_files_equal_what_megatrons_own_builder_writes(corpora: dict[str, Path], tmp_path: Path) -> None:
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    export(corpora["packed"], tmp_path / "mg", "megatron")
    for prefix, dtype, values in (("text_document", np.uint16, 0), ("loss_mask_document", np.uint8, 1)):
        builder = IndexedDatasetBuilder(str(tmp_path / f"{prefix}.bin"), dtype=dtype)
        for ids, labels in shard_documents(corpora["packed"]):
            item = ids if values == 0 else keep_of(labels).astype(np.uint8)
            builder.add_document(item, [len(item)])
        builder.finalize(str(tmp_path / f"{prefix}.idx"))
        for suffix in (".bin", ".idx"):
            assert (tmp_path / "mg" / f"{prefix}{suffix}").read_bytes() == (tmp_path / f"{prefix}{suffix}").read_bytes()


def test_large_vocabularies_export_as_int32(tmp_path: Path) -> None:
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    shards = mask_texts(tmp_path, "big", license_paragraphs(3))  # cl100k_base: 100,277 ids
    assert export(shards, tmp_path / "mg", "megatron").dtype == "int32"
    text = IndexedDataset(str(tmp_path / "mg" / "text_document"))
    assert text.index.dtype == np.int32
    assert np.array_equal(np.concatenate([text[i] for i in range(len(text))]), np.concatenate([d[0] for d in shard_documents(shards)]))


def goldfish_gpt_dataset() -> type:
    """The class docs/training.md tells a Megatron user to add, executed from the docs themselves."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)
    (code,) = [b for b in blocks if "class GoldfishGPTDataset" in b]
    namespace: dict[str, object] = {}
    exec(compile(code, str(DOCS), "exec"), namespace)  # noqa: S102  # our own docs, run as a user would paste them
    cls = namespace["GoldfishGPTDataset"]
    assert isinstance(cls, type)
    return cls


@pytest.mark.parametrize("extra_token", [True, False])
def test_the_documented_gpt_dataset_puts_the_mask_into_loss_mask(extra_token: bool, corpora: dict[str, Path], tmp_path: Path) -> None:
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.datasets.indexed_dataset import IndexedDataset, IndexedDatasetBuilder
    from megatron.core.datasets.utils import Split

    export(corpora["packed"], tmp_path / "mg", "megatron")
    documents = shard_documents(corpora["packed"])
    ids = np.concatenate([d[0] for d in documents])
    keep = keep_of(np.concatenate([d[1] for d in documents]))
    # a third indexed dataset, written by Megatron's own builder, whose items are global token positions:
    # the same sample cut from it says which tokens (and so which labels) a sample holds
    positions = IndexedDatasetBuilder(str(tmp_path / "positions.bin"), dtype=np.int64)
    start = 0
    for doc_ids, _ in documents:
        positions.add_document(np.arange(start, start + len(doc_ids)), [len(doc_ids)])
        start += len(doc_ids)
    positions.finalize(str(tmp_path / "positions.idx"))

    class Tokenizer:  # the attributes GPTDataset reads
        eod, pad, vocab_size = 0, -1, 512
        unique_identifiers: ClassVar[dict[str, str]] = {"class": "Tokenizer"}

    config = GPTDatasetConfig(
        random_seed=7,
        sequence_length=64,
        tokenizer=Tokenizer(),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        add_extra_token_to_sequence=extra_token,
    )
    text = IndexedDataset(str(tmp_path / "mg" / "text_document"))
    dataset = goldfish_gpt_dataset()(text, str(tmp_path / "mg" / "text_document"), np.arange(len(text)), None, Split.train, config)
    where = GPTDataset(
        IndexedDataset(str(tmp_path / "positions")), str(tmp_path / "positions"), np.arange(len(text)), None, Split.train, config
    )
    assert len(dataset) == len(where) > 50
    dropped = 0
    for index in range(len(dataset)):
        item = dataset[index]
        sample, _ = where._query_document_sample_shuffle_indices(index)  # positions of tokens (and the extra label)
        inputs, targets = (sample[:-1], sample[1:]) if extra_token else (sample, np.append(sample[1:], -1))
        real = targets >= 0
        assert np.array_equal(item["tokens"].numpy(), ids[inputs])
        assert np.array_equal(item["labels"].numpy()[real], ids[targets[real]])
        expected = np.zeros(len(targets), np.float32)
        expected[real] = keep[targets[real]]
        assert np.array_equal(item["loss_mask"].numpy(), expected)
        dropped += int((~keep[targets[real]]).sum())
    assert dropped > 100  # the goldfish mask did reach loss_mask
