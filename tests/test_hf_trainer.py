"""Any trainer: Hugging Face ``Trainer`` on the shards as they are (the recipe in docs/training.md).

A tiny ``LlamaForCausalLM`` built from a config (no download) trains on
``datasets.load_from_disk(shards)`` with a collator that pads labels with -100;
its loss must be the cross-entropy over the non-masked labels, computed here by
hand. The trained model, saved with ``save_pretrained``, is then measured by
``memorization`` through the Hugging Face adapter.
"""

from __future__ import annotations

import re
from typing import Any

import datasets
import pytest
import torch

from goldfish_prep.format import IGNORE_INDEX, load_manifest
from goldfish_prep.train.causal_lm import load_causal_lm
from goldfish_prep.train.generate import beam_search, greedy, teacher_forced
from goldfish_prep.train.memorization import MemorizationConfig, measure_memorization
from tests.shards import LICENSES, mask_texts, one_thread, train_bpe  # noqa: F401  (one_thread: an autouse fixture, registered by import)

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")  # the Trainer needs it


class PadCollator:
    """Pads a batch of shard rows to its longest: ids with the EOS id, labels with -100, attention mask 0."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        length = max(len(row["input_ids"]) for row in rows)
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row["input_ids"])
            ids[i, :n] = torch.tensor(row["input_ids"])
            labels[i, :n] = torch.tensor(row["labels"])  # unshifted, as HF expects: the model shifts
            attention[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": attention}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("hf")
    texts = [p.strip() for p in re.split(r"\n\s*\n", (LICENSES / "Apache-2.0").read_text(encoding="utf-8")) if 200 <= len(p.strip()) <= 600]
    shards = mask_texts(folder, "shards", texts[:8], "--tokenizer", str(train_bpe(folder)), "--k", "4")
    manifest = load_manifest(shards)
    config = transformers.LlamaConfig(
        vocab_size=manifest["tokenizer"]["vocab_size"], hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256, bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    dataset = datasets.load_from_disk(str(shards)).select_columns(["input_ids", "labels"])
    arguments = transformers.TrainingArguments(
        output_dir=str(folder / "out"), per_device_train_batch_size=4, max_steps=30, learning_rate=5e-3, warmup_steps=2,
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, seed=0, dataloader_num_workers=0, disable_tqdm=True,
    )  # fmt: skip
    collator = PadCollator(manifest["tokenizer"]["eos_id"])
    trainer = transformers.Trainer(model=model, args=arguments, train_dataset=dataset, data_collator=collator)
    trainer.train()
    model.save_pretrained(folder / "model")
    return {"shards": shards, "trainer": trainer, "model": model, "dataset": dataset, "collator": collator, "folder": folder}


def test_trainer_loss_is_the_cross_entropy_over_non_masked_labels(trained: dict[str, Any]) -> None:
    model, trainer = trained["model"], trained["trainer"]
    batch = trained["collator"]([trained["dataset"][i] for i in range(4)])
    model.eval()
    with torch.no_grad():
        reported = float(trainer.compute_loss(model, batch))
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    # by hand: position t predicts labels[t + 1]; -100 (goldfish-dropped or padding) counts nowhere
    targets = batch["labels"][:, 1:]
    logprobs = logits[:, :-1].float().log_softmax(dim=-1)
    kept = targets != IGNORE_INDEX
    by_hand = -logprobs[kept].gather(1, targets[kept][:, None]).mean()
    assert reported == pytest.approx(float(by_hand), rel=1e-5)
    dropped = (targets == IGNORE_INDEX) & (batch["attention_mask"][:, 1:] == 1)
    assert int(dropped.sum()) > 0  # the batch really has goldfish-dropped labels
    every_token = (
        -logprobs[batch["attention_mask"][:, 1:] == 1]
        .gather(1, batch["input_ids"][:, 1:][batch["attention_mask"][:, 1:] == 1][:, None])
        .mean()
    )
    assert reported != pytest.approx(float(every_token), rel=1e-3)


def test_trainer_training_lowers_the_loss(trained: dict[str, Any]) -> None:
    losses = [entry["loss"] for entry in trained["trainer"].state.log_history if "loss" in entry]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.0


def test_memorization_measures_a_hugging_face_folder(trained: dict[str, Any]) -> None:
    lm = load_causal_lm(trained["folder"] / "model", "cpu")
    assert lm.description["architecture"] == "LlamaForCausalLM" and lm.context_length == 256
    report = measure_memorization(lm, trained["shards"], MemorizationConfig(suffix_length=20, max_documents=3))
    assert len(report.documents) == 3 and all(len(d.generated) == 20 for d in report.documents)


def test_cached_decoding_of_a_hugging_face_model_matches_generate(trained: dict[str, Any]) -> None:
    lm = load_causal_lm(trained["folder"] / "model", "cpu")
    prefix = trained["dataset"][0]["input_ids"][:40]
    hf_model = lm.model  # type: ignore[attr-defined]
    expected = hf_model.generate(torch.tensor([prefix]), max_new_tokens=25, do_sample=False, num_beams=1)[0, 40:].tolist()
    assert greedy(lm, prefix, 25) == expected
    beamed = beam_search(lm, prefix, 25, 4)  # exercises the cache's beam reordering
    ids = trained["dataset"][0]["input_ids"][:65]
    with torch.no_grad():
        forward = hf_model(torch.tensor([ids])).logits[0, 39:-1].argmax(dim=-1).tolist()
    assert teacher_forced(lm, ids[:40], ids[40:]) == forward
    assert len(beamed) == 25
