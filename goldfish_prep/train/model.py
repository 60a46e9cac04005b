"""A small decoder-only transformer, written to be read (nanoGPT's spirit).

Pre-norm blocks of causal self-attention and an MLP, rotary position
embeddings, tied input/output embeddings. Rotary rather than learned absolute
positions because training sees each document at an arbitrary offset inside a
packed row while the memorisation test feeds it from offset 0: attention that
depends only on relative positions treats both alike.

Attention goes through ``F.scaled_dot_product_attention``, which picks the
fused flash kernel on CUDA (bf16) and a plain implementation on CPU.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from goldfish_prep.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    """Shape of the model. ``vocab_size`` comes from the shards' manifest (never guessed)."""

    vocab_size: int
    block_size: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    rope_base: float = 10000.0

    def __post_init__(self) -> None:
        if self.vocab_size < 2 or self.block_size < 2:
            raise ConfigError(f"vocab_size and block_size must be >= 2, got {self.vocab_size} and {self.block_size}")
        if self.n_embd % self.n_head or (self.n_embd // self.n_head) % 2:
            raise ConfigError(f"n_embd ({self.n_embd}) must split into {self.n_head} heads of even size (rotary embeddings)")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: Size presets. ``tiny`` trains in minutes on two CPU cores; ``124m`` is GPT-2 small's shape
#: (12 layers, 12 heads, 768 wide, 1024 context; about 124M parameters with a 50k vocabulary).
PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"block_size": 256, "n_layer": 4, "n_head": 4, "n_embd": 128},
    "small": {"block_size": 512, "n_layer": 6, "n_head": 6, "n_embd": 384},
    "124m": {"block_size": 1024, "n_layer": 12, "n_head": 12, "n_embd": 768},
}


def preset_config(preset: str, vocab_size: int, **overrides: Any) -> GPTConfig:
    """The ``GPTConfig`` of a named preset, with ``None``-valued overrides ignored.

    >>> preset_config("tiny", 1000, block_size=64).block_size
    64
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown model preset {preset!r}; choose one of {', '.join(PRESETS)}")
    fields = {**PRESETS[preset], **{key: value for key, value in overrides.items() if value is not None}}
    return GPTConfig(vocab_size=vocab_size, **fields)


def rotary_tables(head_dim: int, length: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables, each (length, head_dim / 2), fp32."""
    inverse = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inverse)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (first half, second half) of the last dim of x (B, H, T, D); cos/sin (T, D/2) are its positions' rows."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


#: per layer, keys and values (B, H, T, D) of the positions seen so far (decoding only)
KVCache = list[tuple[torch.Tensor, torch.Tensor]]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.dropout = config.dropout

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x (B, T, C); cos/sin already cut to these T positions. With ``past`` (decoding), x is one new position."""
        batch, length, width = x.shape
        # (B, T, 3C) -> three (B, H, T, C/H)
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_head, width // self.n_head).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        dropout = self.dropout if self.training else 0.0
        # a single new position may attend to everything before it: no mask needed
        y = F.scaled_dot_product_attention(q, k, v, is_causal=past is None, dropout_p=dropout)
        return self.proj(y.transpose(1, 2).reshape(batch, length, width)), (k, v)


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.n_embd, bias=False)
        self.attn = CausalSelfAttention(config)
        self.norm2 = nn.LayerNorm(config.n_embd, bias=False)
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.fc_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)
        self.drop = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        attended, kv = self.attn(self.norm1(x), cos, sin, past)
        x = x + self.drop(attended)
        return x + self.drop(self.fc_proj(F.gelu(self.fc(self.norm2(x))))), kv


class GPT(nn.Module):
    """``forward(ids)`` returns logits (B, T, V); with ``last_only`` only those of the last position."""

    rope_cos: torch.Tensor  # (block_size, head_dim / 2) fp32 buffers, not saved in checkpoints
    rope_sin: torch.Tensor

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm = nn.LayerNorm(config.n_embd, bias=False)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.embed.weight  # tied: one vocabulary matrix, as GPT-2
        cos, sin = rotary_tables(config.n_embd // config.n_head, config.block_size, config.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        for name, parameter in self.named_parameters():
            if name.endswith("proj.weight"):  # residual projections scaled down with depth (GPT-2)
                nn.init.normal_(parameter, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, ids: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        length = ids.shape[1]
        if length > self.config.block_size:
            raise ValueError(f"sequence of {length} ids exceeds the model's context of {self.config.block_size}")
        x = self.embed(ids)
        for block in self.blocks:
            x, _ = block(x, self.rope_cos[:length], self.rope_sin[:length])
        x = self.norm(x[:, -1:] if last_only else x)
        logits: torch.Tensor = self.lm_head(x)
        return logits

    def decode(self, ids: torch.Tensor, cache: KVCache | None = None) -> tuple[torch.Tensor, KVCache]:
        """Logits (B, V) of the position after ``ids`` and the grown cache.

        Without a cache ``ids`` (B, T) is a whole prefix; with one, ``ids`` (B, 1) is
        the next position of each row. Generation then costs one position per token
        instead of the whole sequence.
        """
        start = cache[0][0].shape[2] if cache else 0
        end = start + ids.shape[1]
        if end > self.config.block_size:
            raise ValueError(f"decoding past the model's context of {self.config.block_size}")
        x = self.embed(ids)
        grown: KVCache = []
        for index, block in enumerate(self.blocks):
            x, kv = block(x, self.rope_cos[start:end], self.rope_sin[start:end], cache[index] if cache else None)
            grown.append(kv)
        logits: torch.Tensor = self.lm_head(self.norm(x[:, -1]))
        return logits, grown

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def flops_per_token(config: GPTConfig, num_parameters: int) -> float:
    """Training FLOPs per token (forward + backward): 6N plus attention, as in the PaLM paper's appendix B."""
    head_dim = config.n_embd // config.n_head
    return 6.0 * num_parameters + 12.0 * config.n_layer * config.n_head * head_dim * config.block_size
