"""Run inside a trainer's venv: build a tiny random Llama, record every batch the model receives, run the trainer.

    python record.py --model DIR --tokenizer DIR --out FILE.json -- MODULE [ARGS...]

``--model``: a ``LlamaForCausalLM`` of one small layer, random weights from a
fixed seed, saved with this venv's own ``transformers`` (so its config is
written in the version that reads it), with the tokenizer files beside it.
Every call of ``LlamaForCausalLM.forward`` (patched on the class, so whatever
wrapper the trainer puts around the model) appends its ``input_ids``,
``labels``, ``attention_mask`` and ``position_ids`` to ``--out`` as lists.
Then ``MODULE`` runs as ``python -m MODULE ARGS`` would (the trainer's own
command line), in this process. Only the standard library is imported at the
top: pytest imports every module under tests/ for its doctests.
"""

from __future__ import annotations

import argparse
import functools
import json
import runpy
import shutil
import sys
from pathlib import Path
from typing import Any


def make_llama(model: Path, tokenizer: Path) -> None:
    """A one-layer Llama with the tokenizer's vocabulary, saved to ``model`` with the tokenizer files."""
    import torch
    import transformers

    if (model / "config.json").is_file():
        return
    vocab = len(transformers.AutoTokenizer.from_pretrained(str(tokenizer)))
    config = transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(str(model))
    for file in tokenizer.iterdir():
        shutil.copy(file, model / file.name)


def record_batches(out: Path) -> None:
    """Patch ``LlamaForCausalLM.forward`` to append what it receives to ``out`` (one JSON object per line)."""
    import transformers

    original = transformers.LlamaForCausalLM.forward

    @functools.wraps(original)  # the Trainer reads the signature to choose the columns it keeps
    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        names = ("input_ids", "attention_mask", "position_ids")
        seen = {name: kwargs.get(name) for name in names}
        for name, value in zip(names, args):
            seen[name] = value
        seen["labels"] = kwargs.get("labels")
        if self.training:
            with out.open("a", encoding="utf-8") as sink:
                sink.write(json.dumps({k: v.tolist() for k, v in seen.items() if v is not None and hasattr(v, "tolist")}) + "\n")
        return original(self, *args, **kwargs)

    transformers.LlamaForCausalLM.forward = forward


def record_torchtune(out: Path) -> None:
    """Record torchtune's batches: the tokens the decoder receives and the labels the loss receives (shifted by the recipe)."""
    from torchtune.modules import TransformerDecoder
    from torchtune.modules.loss import CEWithChunkedOutputLoss

    tokens: list[Any] = []
    decode, loss = TransformerDecoder.forward, CEWithChunkedOutputLoss.forward

    def decoder_forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.training:
            tokens.append((args[0] if args else kwargs["tokens"]).tolist())
        return decode(self, *args, **kwargs)

    def loss_forward(self: Any, logits: Any, labels: Any) -> Any:
        with out.open("a", encoding="utf-8") as sink:
            sink.write(json.dumps({"input_ids": tokens.pop(0), "labels": labels.reshape(len(logits[0]), -1).tolist()}) + "\n")
        return loss(self, logits, labels)

    TransformerDecoder.forward = decoder_forward
    CEWithChunkedOutputLoss.forward = loss_forward


def record_litgpt(out: Path) -> None:
    """Record litgpt's batches: the ids ``GPT`` receives and the targets ``chunked_cross_entropy`` receives (shifted by the script)."""
    import litgpt.finetune.full as full
    from litgpt.model import GPT

    tokens: list[Any] = []
    decode, loss = GPT.forward, full.chunked_cross_entropy

    def gpt_forward(self: Any, idx: Any, *args: Any, **kwargs: Any) -> Any:
        if self.training:
            tokens.append(idx.tolist())
        return decode(self, idx, *args, **kwargs)

    def loss_function(logits: Any, targets: Any, *args: Any, **kwargs: Any) -> Any:
        if tokens:  # validation runs the model in eval mode: nothing recorded, nothing to pair
            with out.open("a", encoding="utf-8") as sink:
                sink.write(json.dumps({"input_ids": tokens.pop(0), "labels": targets.tolist()}) + "\n")
        return loss(logits, targets, *args, **kwargs)

    GPT.forward = gpt_forward
    full.chunked_cross_entropy = loss_function


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path)
    parser.add_argument("--tokenizer", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--hook", choices=["transformers", "torchtune", "litgpt"], default="transformers")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    options = parser.parse_args()
    command = options.command[1:] if options.command[:1] == ["--"] else options.command
    if options.model is not None:
        make_llama(options.model, options.tokenizer)
    options.out.unlink(missing_ok=True)
    {"transformers": record_batches, "torchtune": record_torchtune, "litgpt": record_litgpt}[options.hook](options.out)
    sys.argv = [command[0], *command[1:]]
    runpy.run_module(command[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
