"""ms-swift 4.6, for real, in its own venv: ``--cached_dataset`` with the ``goldfish`` template of docs/training.md.

ms-swift's cached datasets hold untokenized ``messages`` plus ``lengths`` and
every built-in template re-encodes them at training time, so pre-computed
labels need a template that passes tokenized rows through
(tests/trainers/goldfish_swift.py, the same text as in the docs, loaded with
``--custom_register_path``). The hf export provides the ``lengths`` column
ms-swift reads. Two steps of a tiny random Llama on CPU; every batch the model
receives is recorded and its labels must equal the export's, position by
position (collator padding -100). ``--use_logits_to_keep false``: with it on,
ms-swift 4.6 crops the labels' leading all-ignored columns (the recorded labels
are then shorter than the ids) and fails on packed rows ("Expected input
batch_size (195) to match target batch_size (196)").
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.trainers.corpus import compare, export_rows, recorded, shared_corpus
from tests.trainers.venvs import HERE, REPO, run_in


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return shared_corpus(tmp_path_factory.getbasetemp())


def test_the_template_in_the_docs_is_the_tested_one() -> None:
    docs = (REPO / "docs" / "training.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(\"\"\"goldfish_swift\.py.*?)```", docs, re.DOTALL)
    assert blocks == [(HERE / "goldfish_swift.py").read_text(encoding="utf-8")]


@pytest.mark.parametrize("data", ["text", "packed", "chat"])
def test_sft_with_the_cached_export_keeps_every_label(data: str, corpus: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "batches.jsonl"
    run_in(
        "ms-swift", HERE / "record.py", "--model", tmp_path / "model", "--tokenizer", corpus["tokenizer"], "--out", out,
        "--", "swift.cli.sft", "--model", tmp_path / "model", "--model_type", "llama", "--template", "goldfish",
        "--custom_register_path", HERE / "goldfish_swift.py", "--cached_dataset", corpus[f"{data}-hf"],
        "--tuner_type", "full", "--torch_dtype", "float32", "--max_steps", "2", "--per_device_train_batch_size", "4",
        "--gradient_accumulation_steps", "1", "--output_dir", tmp_path / "out", "--save_strategy", "no", "--report_to", "none",
        "--dataloader_num_workers", "0", "--logging_steps", "1", "--use_logits_to_keep", "false",
        cwd=tmp_path, env={"USE_HF": "1", "MODELSCOPE_OFFLINE": "1"},
    )  # fmt: skip
    batches = recorded(out)
    counts = compare(batches, export_rows(corpus[f"{data}-hf"]))
    print(f"ms-swift sft {data}: {counts}")
    assert len(batches) == 2 and counts["unmatched"] == 0 and counts["rows"] == min(8, len(export_rows(corpus[f"{data}-hf"])))
    assert counts["mismatches"] == 0 and counts["dropped"] > 0 and counts["positions"] > 500
