"""axolotl 0.19, for real, in its own venv: the parquet export as a pre-tokenized dataset (no ``type:``).

``python -m axolotl.cli.train`` trains two steps of a tiny random Llama on CPU
on the export of text, packed text and chat shards; every batch the model
receives is recorded (a patched ``LlamaForCausalLM.forward``) and its labels
must equal the export's, position by position (collator padding -100).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trainers.corpus import compare, export_rows, recorded, shared_corpus
from tests.trainers.venvs import HERE, run_in

CONFIG = """\
base_model: {model}
tokenizer_type: AutoTokenizer
datasets:  # `goldfish-prep export shards/ -o parquet/ --format parquet`; no `type:`: used as tokenized
  - path: {data}
    ds_type: parquet
    data_files: {files}
    split: train
dataset_prepared_path: {out}/prepared
val_set_size: 0
sequence_len: 1024
sample_packing: false
pad_to_sequence_len: false
micro_batch_size: 4
gradient_accumulation_steps: 1
max_steps: 2
num_epochs: 1
optimizer: adamw_torch
learning_rate: 1.0e-4
lr_scheduler: constant
output_dir: {out}
save_strategy: "no"
logging_steps: 1
seed: 0
bf16: false
fp16: false
tf32: false
use_cpu: true
dataloader_num_workers: 0
special_tokens:
  pad_token: "<|end_of_text|>"
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return shared_corpus(tmp_path_factory.getbasetemp())


@pytest.mark.parametrize("data", ["text", "packed", "chat"])
def test_training_on_the_parquet_export_keeps_every_label(data: str, corpus: dict[str, Path], tmp_path: Path) -> None:
    files = sorted(str(p) for p in corpus[f"{data}-parquet"].glob("*.parquet"))
    config = tmp_path / "train.yaml"
    config.write_text(CONFIG.format(model=tmp_path / "model", data=corpus[f"{data}-parquet"], files=files, out=tmp_path / "out"))
    out = tmp_path / "batches.jsonl"
    run_in(
        "axolotl", HERE / "record.py", "--model", tmp_path / "model", "--tokenizer", corpus["tokenizer"], "--out", out,
        "--", "axolotl.cli.train", config, cwd=tmp_path,
    )  # fmt: skip
    batches = recorded(out)
    counts = compare(batches, export_rows(corpus[f"{data}-hf"]))
    print(f"axolotl {data}: {counts}")
    assert len(batches) == 2 and counts["unmatched"] == 0 and counts["rows"] == min(8, len(export_rows(corpus[f"{data}-hf"])))
    assert counts["mismatches"] == 0 and counts["dropped"] > 0 and counts["positions"] > 500
