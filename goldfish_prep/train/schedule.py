"""Learning rate: linear warm-up, then cosine decay to a floor (GPT-2 / nanoGPT's schedule)."""

from __future__ import annotations

import math


def learning_rate(step: int, *, max_lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based).

    >>> [round(learning_rate(s, max_lr=1.0, min_lr=0.1, warmup_steps=2, total_steps=10), 3) for s in (0, 1, 2, 10, 50)]
    [0.5, 1.0, 1.0, 0.1, 0.1]
    """
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)
