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


class Oracle:
    """A 'model' that has memorised ``sequences`` whole: it continues any of their prefixes (from the
    start) exactly, and answers id 0 after any other prefix. torch is imported here, not at the top:
    test_export must not need it."""

    def __init__(self, sequences: list[list[int]], vocab_size: int) -> None:
        import torch

        self.next = {tuple(s[:i]): s[i] for s in sequences for i in range(1, len(s))}
        self.vocab_size, self.context_length, self.device, self.description = vocab_size, 4096, torch.device("cpu"), {"kind": "oracle"}

    def _logprobs(self, prefixes: list[tuple[int, ...]]) -> Any:
        import torch

        # one buffer, reset where it was set: greedy decoding reads each answer before the next call
        if not hasattr(self, "_out") or self._out.shape[0] != len(prefixes):
            self._out, self._hot = torch.full((len(prefixes), self.vocab_size), -30.0), []
        for i, token in self._hot:
            self._out[i, token] = -30.0
        self._hot = [(i, self.next.get(prefix, 0)) for i, prefix in enumerate(prefixes)]
        for i, token in self._hot:
            self._out[i, token] = 0.0
        return self._out

    def prefill(self, ids: Any) -> tuple[Any, Any]:
        cache = [tuple(row) for row in ids.tolist()]
        return cache, self._logprobs(cache)

    def extend(self, cache: Any, rows: Any, tokens: Any) -> tuple[Any, Any]:
        grown = [cache[r] + (t,) for r, t in zip(rows.tolist(), tokens.tolist())]
        return grown, self._logprobs(grown)
