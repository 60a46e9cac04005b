"""LLaMA-Factory 0.9.5, for real, in its own venv: the hf export as ``tokenized_path``.

``stage: sft`` trains two steps of a tiny random Llama on the export of text,
packed text and chat shards; every batch the model receives is recorded (a
patched ``LlamaForCausalLM.forward``) and its labels must equal the export's,
position by position (collator padding -100). ``stage: pt`` is the route that
cannot carry the mask: it rebuilds labels from ``input_ids``, so the dropped
positions come back into the loss; the test shows it, and that
docs/training.md's warning is true.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.trainers.corpus import compare, export_rows, recorded, shared_corpus
from tests.trainers.venvs import HERE, run_in

CONFIG = """\
### model
model_name_or_path: {model}
trust_remote_code: false
### method
stage: {stage}
do_train: true
finetuning_type: full
### dataset: the export of `goldfish-prep export shards/ -o hf/ --format hf`
tokenized_path: {data}
dataset: goldfish  # required by the argument check, unused: a non-empty tokenized_path is loaded as it is
template: llama3
cutoff_len: 1024
### train
output_dir: {out}
per_device_train_batch_size: 4
gradient_accumulation_steps: 1
max_steps: 2
learning_rate: 1.0e-4
logging_steps: 1
save_strategy: "no"
report_to: none
overwrite_output_dir: true
use_cpu: true
dataloader_num_workers: 0
seed: 0
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return shared_corpus(tmp_path_factory.getbasetemp())


def train(corpus: dict[str, Path], data: str, stage: str, folder: Path) -> tuple[list[dict[str, Any]], str]:
    config = folder / "train.yaml"
    out = folder / "batches.jsonl"
    config.write_text(CONFIG.format(model=folder / "model", stage=stage, data=corpus[f"{data}-hf"], out=folder / "out"))
    log = run_in(
        "llamafactory", HERE / "record.py", "--model", folder / "model", "--tokenizer", corpus["tokenizer"], "--out", out,
        "--", "llamafactory.cli", "train", config, cwd=folder,
    )  # fmt: skip
    return recorded(out), log


@pytest.mark.parametrize("data", ["text", "packed", "chat"])
def test_sft_on_the_hf_export_keeps_every_label(data: str, corpus: dict[str, Path], tmp_path: Path) -> None:
    batches, _ = train(corpus, data, "sft", tmp_path)
    counts = compare(batches, export_rows(corpus[f"{data}-hf"]))
    print(f"llamafactory sft {data}: {counts}")
    assert len(batches) == 2 and counts["unmatched"] == 0 and counts["rows"] == min(8, len(export_rows(corpus[f"{data}-hf"])))
    assert counts["mismatches"] == 0 and counts["dropped"] > 0 and counts["positions"] > 500


def test_pt_rebuilds_the_labels_and_loses_the_mask(corpus: dict[str, Path], tmp_path: Path) -> None:
    batches, _ = train(corpus, "packed", "pt", tmp_path)
    counts = compare(batches, export_rows(corpus["packed-hf"]))
    print(f"llamafactory pt packed: {counts}")
    assert counts["rows"] == min(8, len(export_rows(corpus["packed-hf"]))) and counts["unmatched"] == 0
    # every goldfish-dropped position is supervised again: the mask is gone
    assert counts["mismatches"] >= counts["dropped"] > 0
