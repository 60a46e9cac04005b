"""What ``goldfish-prep train`` does, as one frozen, validated object."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from goldfish_prep.errors import ConfigError
from goldfish_prep.train.model import PRESETS


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A training run. ``block_size``, ``n_layer``, ``n_head`` and ``n_embd`` override
    the preset's (None keeps it). Duration: exactly one of ``max_steps``, ``epochs`` and
    ``max_supervised_tokens`` (the paper's equal-supervised-tokens comparison);
    none given means one epoch.

    ``batch_size`` is rows per micro-batch per process; one optimizer step sees
    ``batch_size * grad_accum * world_size`` rows of ``block_size`` tokens.
    """

    #: an output folder of ``mask``: a local path, or a URL (``s3://bucket/shards``) as text
    data: Path | str
    run_dir: Path
    preset: str = "tiny"
    block_size: int | None = None
    n_layer: int | None = None
    n_head: int | None = None
    n_embd: int | None = None
    vocab_size: int | None = None
    dropout: float = 0.0
    batch_size: int = 16
    grad_accum: int = 1
    learning_rate: float = 1e-3
    min_learning_rate: float | None = None
    warmup_steps: int | None = None
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    max_steps: int | None = None
    epochs: float | None = None
    max_supervised_tokens: int | None = None
    seed: int = 0
    eval_data: Path | str | None = None
    eval_interval: int = 0
    log_interval: int = 10
    checkpoint_interval: int = 0
    device: str = "auto"
    compile: bool = False
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown model preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        durations = [d for d in (self.max_steps, self.epochs, self.max_supervised_tokens) if d is not None]
        if len(durations) > 1:
            raise ConfigError("give at most one of --max-steps, --epochs and --max-supervised-tokens")
        if any(d <= 0 for d in durations):
            raise ConfigError("--max-steps, --epochs and --max-supervised-tokens must be positive")
        for name in ("batch_size", "grad_accum", "log_interval"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.learning_rate <= 0 or (self.min_learning_rate is not None and self.min_learning_rate < 0):
            raise ConfigError("the learning rates must be positive")
        if self.resume and self.overwrite:
            raise ConfigError("--resume continues the run in RUN_DIR, --overwrite deletes it: choose one")

    @property
    def floor_learning_rate(self) -> float:
        """The end of the cosine decay: a tenth of the peak unless given (nanoGPT's choice)."""
        return self.min_learning_rate if self.min_learning_rate is not None else self.learning_rate / 10

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for config.json and the checkpoint (paths as strings)."""
        data = dataclasses.asdict(self)
        for key, value in data.items():
            if isinstance(value, Path):
                data[key] = str(value)
        data["betas"] = list(self.betas)
        return data

    def run_identity(self) -> dict[str, Any]:
        """The settings that must match for ``--resume`` to continue the same run."""
        data = self.to_dict()
        for key in (
            "resume",
            "overwrite",
            "log_interval",
            "checkpoint_interval",
            "eval_interval",
            "device",
            "compile",
            "eval_data",
            "run_dir",
            "data",
        ):
            data.pop(key)
        return data
