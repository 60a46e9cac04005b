"""torchtune 0.6.1, for real, in its own venv: the hf export through a dataset builder (its extension point).

``tune run full_finetune_single_device`` trains two steps of a tiny random
torchtune Llama 3 (one layer, the Llama 3 vocabulary) on CPU, with the dataset
builder of docs/training.md (tests/trainers/goldfish_torchtune.py, the same
text). The tokens the decoder receives and the labels the loss receives (after
the recipe's shift by one) are recorded; each label must be the export's label
of the next position, position by position, collator padding -100.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from tests.trainers.corpus import compare, export_rows, recorded, shared_corpus
from tests.trainers.venvs import HERE, REPO, run_in

MODEL = dict(vocab_size=128256, num_layers=1, num_heads=2, num_kv_heads=2, embed_dim=16, max_seq_len=2048, intermediate_dim=32)

CONFIG = """\
output_dir: {out}
model:
  _component_: torchtune.models.llama3.llama3
  vocab_size: 128256
  num_layers: 1
  num_heads: 2
  num_kv_heads: 2
  embed_dim: 16
  max_seq_len: 2048
  intermediate_dim: 32
tokenizer:
  _component_: torchtune.models.llama3.llama3_tokenizer
  path: {tokenizer}
dataset:  # the builder of docs/training.md: rows of `goldfish-prep export shards/ -o hf/ --format hf`
  _component_: goldfish_torchtune.goldfish_dataset
  path: {data}
seed: 0
shuffle: true
checkpointer:
  _component_: torchtune.training.FullModelTorchTuneCheckpointer
  checkpoint_dir: {model}
  checkpoint_files: [model.pt]
  output_dir: {out}
  model_type: LLAMA3
resume_from_checkpoint: false
batch_size: 4
epochs: 1
max_steps_per_epoch: 2
optimizer:
  _component_: torch.optim.AdamW
  lr: 1.0e-4
  fused: false
loss:
  _component_: torchtune.modules.loss.CEWithChunkedOutputLoss
gradient_accumulation_steps: 1
optimizer_in_bwd: false
clip_grad_norm: null
compile: false
device: cpu
dtype: fp32
enable_activation_checkpointing: false
enable_activation_offloading: false
metric_logger:
  _component_: torchtune.training.metric_logging.DiskLogger
  log_dir: {out}/logs
log_every_n_steps: 1
log_peak_memory_stats: false
profiler:
  _component_: torchtune.training.setup_torch_profiler
  enabled: false
"""

MAKE_MODEL = """
import sys, torch
from torchtune.models.llama3 import llama3
torch.manual_seed(0)
torch.save(llama3(**{model}).state_dict(), sys.argv[1])
"""


def bytes_to_unicode() -> dict[int, str]:
    """Byte-level BPE's printable stand-in for each byte (the GPT-2 table that tokenizer.json's vocabulary is written in)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes)))


def tiktoken_model(tokenizer_json: Path, out: Path) -> Path:
    """Llama 3's ``tokenizer.model`` (tiktoken ranks) written from its ``tokenizer.json``: the file torchtune's tokenizer reads."""
    to_byte = {char: byte for byte, char in bytes_to_unicode().items()}
    vocab = json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]["vocab"]
    lines = [f"{base64.b64encode(bytes(to_byte[c] for c in token)).decode()} {rank}" for token, rank in vocab.items() if rank < 128000]
    out.write_text("\n".join(sorted(lines, key=lambda line: int(line.split()[1]))) + "\n", encoding="ascii")
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return shared_corpus(tmp_path_factory.getbasetemp())


def test_the_builder_in_the_docs_is_the_tested_one() -> None:
    docs = (REPO / "docs" / "training.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(\"\"\"goldfish_torchtune\.py.*?)```", docs, re.DOTALL)
    assert blocks == [(HERE / "goldfish_torchtune.py").read_text(encoding="utf-8")]


@pytest.mark.parametrize("data", ["text", "packed", "chat"])
def test_full_finetune_receives_the_export_labels(data: str, corpus: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    run_in("torchtune", "-c", MAKE_MODEL.replace("{model}", repr(MODEL)), tmp_path / "model" / "model.pt")
    tokenizer = tiktoken_model(corpus["tokenizer"] / "tokenizer.json", tmp_path / "tokenizer.model")
    config = tmp_path / "train.yaml"
    config.write_text(CONFIG.format(out=tmp_path / "out", tokenizer=tokenizer, data=corpus[f"{data}-hf"], model=tmp_path / "model"))
    out = tmp_path / "batches.jsonl"
    run_in(
        "torchtune", HERE / "record.py", "--hook", "torchtune", "--out", out,
        "--", "torchtune._cli.tune", "run", "full_finetune_single_device", "--config", config, cwd=tmp_path,
    )  # fmt: skip
    batches = recorded(out)
    counts = compare(batches, export_rows(corpus[f"{data}-hf"]), shift=1)
    print(f"torchtune full_finetune_single_device {data}: {counts}")
    full_batches = len(export_rows(corpus[f"{data}-hf"])) // 4  # torchtune's loader drops a last, smaller batch
    assert len(batches) == min(2, full_batches) and counts["unmatched"] == 0 and counts["rows"] == 4 * len(batches)
    assert counts["mismatches"] == 0 and counts["dropped"] > 0 and counts["positions"] > 500
