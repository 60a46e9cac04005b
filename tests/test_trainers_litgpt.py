"""litgpt 0.5.13, for real, in its own venv: ``finetune_full`` with the data module of docs/training.md.

litgpt's built-in data modules tokenize text themselves, and ``litgpt pretrain``
builds its targets from the ids, so neither can take a mask; a data module of
our own (tests/trainers/goldfish_litgpt.py, the same text as in the docs) reads
the hf export. Two steps of a tiny random litgpt Llama (one layer, the Llama 3
vocabulary) on CPU; the ids ``GPT`` receives and the targets the loss receives
(after the script's shift by one) are recorded, and each target must be the
export's label of the next position, collator padding -100.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.trainers.corpus import compare, export_rows, recorded, shared_corpus
from tests.trainers.venvs import HERE, REPO, run_in

MAKE_CHECKPOINT = """
import json, shutil, sys
from pathlib import Path
import torch
from litgpt.config import Config
from litgpt.model import GPT
from litgpt.utils import save_config

folder, tokenizer = Path(sys.argv[1]), Path(sys.argv[2])
config = Config(
    name="goldfish-tiny", block_size=2048, vocab_size=128256, padded_vocab_size=128256, n_layer=1, n_head=2, n_embd=16,
    n_query_groups=2, rotary_percentage=1.0, parallel_residual=False, bias=False, norm_class_name="RMSNorm",
    mlp_class_name="LLaMAMLP", intermediate_size=32,
)
folder.mkdir(parents=True)
torch.manual_seed(0)
torch.save(GPT(config).state_dict(), folder / "lit_model.pth")
save_config(config, folder)
shutil.copy(tokenizer / "tokenizer.json", folder / "tokenizer.json")
settings = json.loads((tokenizer / "tokenizer_config.json").read_text())
settings["tokenizer_class"] = "PreTrainedTokenizerFast"  # as in Llama 3's own tokenizer_config.json; litgpt reads it
(folder / "tokenizer_config.json").write_text(json.dumps(settings))
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return shared_corpus(tmp_path_factory.getbasetemp())


def test_the_data_module_in_the_docs_is_the_tested_one() -> None:
    docs = (REPO / "docs" / "training.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(\"\"\"goldfish_litgpt\.py.*?)```", docs, re.DOTALL)
    assert blocks == [(HERE / "goldfish_litgpt.py").read_text(encoding="utf-8")]


@pytest.mark.parametrize("data", ["text", "packed", "chat"])
def test_finetune_full_receives_the_export_labels(data: str, corpus: dict[str, Path], tmp_path: Path) -> None:
    run_in("litgpt", "-c", MAKE_CHECKPOINT, tmp_path / "checkpoint", corpus["tokenizer"])
    out = tmp_path / "batches.jsonl"
    run_in(
        "litgpt", HERE / "record.py", "--hook", "litgpt", "--out", out, "--", "litgpt", "finetune_full", tmp_path / "checkpoint",
        "--data", "goldfish_litgpt.Goldfish", "--data.path", corpus[f"{data}-hf"], "--out_dir", tmp_path / "out",
        "--precision", "32-true", "--train.max_steps", "2", "--train.micro_batch_size", "4", "--train.global_batch_size", "4",
        "--train.lr_warmup_steps", "1", "--train.epochs", "2", "--eval.final_validation", "false", "--logger_name", "csv",
        cwd=tmp_path,
    )  # fmt: skip
    batches = recorded(out)
    counts = compare(batches, export_rows(corpus[f"{data}-hf"]), shift=1)
    print(f"litgpt finetune_full {data}: {counts}")
    assert len(batches) == 2 and counts["unmatched"] == 0 and counts["rows"] == 8
    assert counts["mismatches"] == 0 and counts["dropped"] > 0 and counts["positions"] > 500
