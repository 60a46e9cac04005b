"""Every strategy and spec version against every input kind: what ``mask`` does, stated case by case.

Input kinds: text documents, the same packed into rows, pre-tokenized ids, and
chat records (real Llama 3 tokenizer with a template). A case either writes a
folder that ``verify`` recomputes and accepts, recording the strategy and its
spec version, or is refused with one ``Error:`` line naming the fix. Nothing in
between: in particular ``robust`` on chat records is refused, never masked
with goldfish's answer rule under robust's name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pytest
from click.testing import CliRunner, Result

from goldfish_prep.strategies import VERSIONS
from goldfish_prep.tokenizers.load import load_tokenizer
from goldfish_prep_cli.main import cli
from tests.chat_data import template_text, tokenizer_folder

CASES = [(name, version) for name, version in VERSIONS]
KINDS = ["documents", "packed", "pretokenized", "chat"]
TEXTS = [
    "Hi there.",
    "The quick brown fox jumps over the lazy dog.",
    "Permission is hereby granted, free of charge, to any person obtaining a copy of this software " * 4,
    "ok",
]
#: what each case does: None = masked and verified, otherwise the start of the one-line error
REFUSED: dict[tuple[str, str], str] = {
    ("robust", "chat"): "Error: --strategy robust is a rule for whole documents",
    ("hash-table", "chat"): "Error: --strategy hash-table is a rule for whole documents",
    ("static", "chat"): "Error: --strategy static is a rule for whole documents",
}


def run(*args: Any) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    here = tmp_path_factory.mktemp("inputs")
    ids = load_tokenizer("cl100k_base").encode_batch(TEXTS)
    (here / "docs.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS), encoding="utf-8")
    (here / "ids.jsonl").write_text("".join(json.dumps({"input_ids": i.tolist()}) + "\n" for i in ids), encoding="utf-8")
    chats = [[{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": text}] for i, text in enumerate(TEXTS)]
    (here / "chat.jsonl").write_text("".join(json.dumps({"messages": m}) + "\n" for m in chats), encoding="utf-8")
    return {
        "docs": here / "docs.jsonl",
        "ids": here / "ids.jsonl",
        "chat": here / "chat.jsonl",
        "llama3": tokenizer_folder(here, "llama3", template_text("llama3")),
    }


def _arguments(kind: str, inputs: dict[str, Path], name: str) -> list[Any]:
    if kind == "chat":
        return [inputs["chat"], "--tokenizer", inputs["llama3"]]
    if kind == "pretokenized":
        return [inputs["ids"], "--tokenizer", "cl100k_base"]  # robust reads the text the ids spell: name their tokenizer
    return [inputs["docs"], *(["--pack", "16"] if kind == "packed" else [])]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("name", "version"), CASES, ids=[f"{n}-v{v}" for n, v in CASES])
def test_each_strategy_and_input_kind_is_masked_and_verified_or_refused(
    tmp_path: Path, inputs: dict[str, Path], name: str, version: int | None, kind: str
) -> None:
    out = tmp_path / "out"
    versioned = ["--spec-version", version] if version is not None else []
    result = run("mask", *_arguments(kind, inputs, name), "-o", out, "-q", "--strategy", name, *versioned)
    refusal = REFUSED.get((name, kind))
    if refusal is not None:
        assert result.exit_code == 1 and result.output.startswith(refusal), result.output
        assert len(result.output.strip().splitlines()) == 1 and "Fix:" in result.output
        assert not (out / "goldfish_manifest.json").exists()
        return
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "goldfish_manifest.json").read_text())
    assert (manifest["mask"]["strategy"], manifest["mask"]["spec_version"]) == (name, version)
    verified = run("verify", out, "-q")
    assert verified.exit_code == 0, verified.output
    if kind == "documents":  # export reads the manifest's config too: every version stays exportable
        exported = run("export", out, "-o", tmp_path / "exported", "--format", "parquet")
        assert exported.exit_code == 0, exported.output
    counts = manifest["counts"]
    assert sum(datasets.load_from_disk(str(out))["num_dropped"]) == counts["dropped_tokens"]
    assert (counts["dropped_tokens"] == 0) == (name == "none")
    assert manifest["counts"]["dropped_tokens"] <= manifest["counts"]["eligible_tokens"] <= manifest["counts"]["tokens"]


def test_pretokenized_ids_without_their_tokenizer_are_refused_for_robust_only(tmp_path: Path, inputs: dict[str, Path]) -> None:
    """robust reads the text the ids spell, so it needs their tokenizer named; every other strategy masks ids as they are."""
    for name, version in CASES:
        versioned = ["--spec-version", version] if version is not None else []
        result = run("mask", inputs["ids"], "-o", tmp_path / f"{name}{version}", "-q", "--strategy", name, *versioned)
        if name == "robust":
            assert result.exit_code == 1 and result.output.startswith("Error: --strategy robust reads the text"), result.output
        else:
            assert result.exit_code == 0, result.output


def test_chat_masks_under_goldfish_are_the_same_for_every_spec_version(tmp_path: Path, inputs: dict[str, Path]) -> None:
    """Answers are masked by the answer-local rule, which every goldfish version shares: old chat outputs stay reproducible."""
    labels = []
    for version in sorted(v for n, v in VERSIONS if n == "goldfish" and v is not None):
        out = tmp_path / f"v{version}"
        result = run("mask", *_arguments("chat", inputs, "goldfish"), "-o", out, "-q", "--spec-version", version)
        assert result.exit_code == 0, result.output
        labels.append(datasets.load_from_disk(str(out))["labels"])
    assert all(other == labels[0] for other in labels)
