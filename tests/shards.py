"""Shared test helpers: a real tiny tokenizer, and shards made by the real `mask` command."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from goldfish_prep_cli.main import cli

LICENSES = Path("/usr/share/common-licenses")


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """The test models are tiny: intra-op threads only add synchronisation, which is slow on a shared 2-core machine."""
    import torch  # here, not at the top: test_export must not need torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def train_bpe(folder: Path, vocab_size: int = 512) -> Path:
    """A real byte-level BPE tokenizer.json, trained on the machine's licence texts in a tenth of a second."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator([p.read_text(encoding="utf-8") for p in sorted(LICENSES.iterdir())[:6]], trainer)
    path = folder / "bpe.json"
    tokenizer.save(str(path))
    return path


def mask_texts(folder: Path, name: str, texts: list[str], *options: str) -> Path:
    """Shards made by the real `goldfish-prep mask` command."""
    source = folder / f"{name}.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    result = CliRunner().invoke(cli, ["mask", str(source), "-o", str(folder / name), "-q", *options])
    assert result.exit_code == 0, result.output
    return folder / name


def run(*args: Any) -> Result:
    """A goldfish-prep command in-process; arguments may be paths or numbers."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def mask_documents_with_ids(folder: Path, texts: list[str], *options: Any) -> Path:
    """A real output of `goldfish-prep mask` over ``texts`` (ids: doc-0, doc-1, ...)."""
    folder.mkdir(parents=True)
    source = folder / "corpus.jsonl"
    source.write_text("".join(json.dumps({"id": f"doc-{i}", "text": t}) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    out = folder / "out"
    result = run("mask", source, "-o", out, "-q", "--id-field", "id", *options)
    assert result.exit_code == 0, result.output
    return out
