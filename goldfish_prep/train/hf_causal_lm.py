"""A local Hugging Face causal LM as a ``CausalLM`` (transformers' ``AutoModelForCausalLM``).

Only local folders, and never ``trust_remote_code``: the measurement must not
download or run code it was not given. bf16 on CUDA, fp32 on CPU.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch

from goldfish_prep.errors import InputError
from goldfish_prep.train.runtime import Runtime


class HFCausalLM:
    def __init__(self, folder: Path, runtime: Runtime) -> None:
        try:
            import transformers
            from transformers import AutoModelForCausalLM
        except ImportError as exc:
            raise InputError(
                str(folder),
                "a Hugging Face model folder needs the Python package 'transformers', which is not installed",
                "Fix: pip install 'goldfish-prep[hf]'",
                "missing-dependency",
            ) from exc
        dtype = torch.bfloat16 if runtime.autocast_dtype is not None else torch.float32
        try:
            # transformers renamed torch_dtype to dtype in 4.56
            major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
            precision = {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}
            model: Any = AutoModelForCausalLM.from_pretrained(str(folder), trust_remote_code=False, local_files_only=True, **precision)
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(
                str(folder),
                f"cannot load a causal LM from this folder ({exc})",
                "Pass a folder saved with `model.save_pretrained` for a causal-LM architecture transformers knows",
                "bad-model",
            ) from exc
        self.model: Any = model.to(runtime.device).eval()
        config = model.config
        self.device = runtime.device
        self.vocab_size = int(config.vocab_size)
        self.context_length = int(getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or 2048)
        self.description: dict[str, Any] = {"kind": "huggingface", "path": str(folder), "architecture": type(model).__name__}
        self._keep_last = "logits_to_keep" in inspect.signature(model.forward).parameters

    def prefill(self, ids: torch.Tensor) -> tuple[Any, torch.Tensor]:
        extra = {"logits_to_keep": 1} if self._keep_last else {}
        with torch.no_grad():
            output = self.model(input_ids=ids, use_cache=True, **extra)
        return output.past_key_values, output.logits[:, -1].float().log_softmax(dim=-1)

    def extend(self, cache: Any, rows: torch.Tensor, tokens: torch.Tensor) -> tuple[Any, torch.Tensor]:
        if not torch.equal(rows, torch.arange(rows.numel(), device=rows.device)):
            cache.reorder_cache(rows)  # index_select on every layer: beams may be dropped or duplicated
        with torch.no_grad():
            output = self.model(input_ids=tokens[:, None], past_key_values=cache, use_cache=True)
        return output.past_key_values, output.logits[:, -1].float().log_softmax(dim=-1)

    def all_logprobs(self, ids: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            output = self.model(input_ids=ids, use_cache=False)
        logits: torch.Tensor = output.logits  # (B, T, V)
        return logits.float().log_softmax(dim=-1)
