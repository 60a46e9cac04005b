"""One interface over the models ``memorization`` can test: the bundled one and Hugging Face ones.

Decoding needs the log-probabilities of the next token, computed incrementally
(a prefix once, then one new token per row, with the model's key/value cache),
and the longest input the model takes. ``load_causal_lm`` picks the adapter from what the
folder holds: ``checkpoint.pt`` (a ``goldfish-prep train`` run) or
``config.json`` (a local Hugging Face causal-LM folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

from goldfish_prep.errors import InputError
from goldfish_prep.train.checkpoint import CHECKPOINT_NAME, load_checkpoint, model_from_checkpoint
from goldfish_prep.train.model import GPT, KVCache
from goldfish_prep.train.runtime import Runtime, select_runtime


class CausalLM(Protocol):
    #: the longest id sequence the model accepts
    context_length: int
    vocab_size: int
    device: torch.device
    #: what the model is, for reports (kind, path, and for bundled runs the mask it was trained with)
    description: dict[str, Any]

    def prefill(self, ids: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """(cache, log-probabilities (B, V) fp32 of the token after each row of ``ids`` (B, T) int64)."""
        ...

    def extend(self, cache: Any, rows: torch.Tensor, tokens: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """Continue row ``rows[i]`` of ``cache`` with ``tokens[i]`` (both (B',) int64); the new cache's
        row ``i`` is that continuation (beam search reorders and duplicates rows this way)."""
        ...

    def all_logprobs(self, ids: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (B, T, V) fp32 of the token after *every* position of ``ids`` (B, T) int64:
        one forward pass, no cache (the membership scores of ``goldfish_prep.audit``)."""
        ...


class BundledLM:
    """A ``goldfish-prep train`` checkpoint."""

    def __init__(self, model: GPT, runtime: Runtime, description: dict[str, Any]) -> None:
        self.model = model.to(runtime.device).eval()
        self.runtime = runtime
        self.device = runtime.device
        self.context_length = model.config.block_size
        self.vocab_size = model.config.vocab_size
        self.description = description

    def prefill(self, ids: torch.Tensor) -> tuple[KVCache, torch.Tensor]:
        with torch.no_grad(), self.runtime.autocast():
            logits, cache = self.model.decode(ids)
        return cache, logits.float().log_softmax(dim=-1)

    def extend(self, cache: KVCache, rows: torch.Tensor, tokens: torch.Tensor) -> tuple[KVCache, torch.Tensor]:
        # rows 0..B-1 in order (greedy, and sampling after its first step) keep the cache as it is: no copy
        same = rows.numel() == cache[0][0].shape[0] and torch.equal(rows, torch.arange(rows.numel(), device=rows.device))
        chosen = cache if same else [(k[rows], v[rows]) for k, v in cache]
        with torch.no_grad(), self.runtime.autocast():
            logits, grown = self.model.decode(tokens[:, None], chosen)
        return grown, logits.float().log_softmax(dim=-1)

    def all_logprobs(self, ids: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), self.runtime.autocast():
            logits: torch.Tensor = self.model(ids)  # (B, T, V)
        return logits.float().log_softmax(dim=-1)


def load_causal_lm(path: str | Path, device: str = "auto") -> CausalLM:
    """The model in ``path``: a bundled run folder or a local Hugging Face model folder."""
    folder = Path(path)
    runtime = select_runtime(device)
    if (folder / CHECKPOINT_NAME).is_file():
        state = load_checkpoint(folder)
        description = {"kind": "goldfish-prep", "path": str(folder), "step": state["step"], **state.get("data_manifest", {})}
        return BundledLM(model_from_checkpoint(state), runtime, description)
    if (folder / "config.json").is_file():
        from goldfish_prep.train.hf_causal_lm import HFCausalLM

        return HFCausalLM(folder, runtime)
    raise InputError(
        str(folder),
        f"neither {CHECKPOINT_NAME} (a `goldfish-prep train` run) nor config.json (a Hugging Face model folder)",
        "Pass the -o folder of `goldfish-prep train`, or a folder written by `model.save_pretrained`",
        "no-model",
    )
