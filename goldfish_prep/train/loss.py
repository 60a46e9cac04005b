"""The goldfish loss as the paper writes it: mean next-token cross-entropy over *supervised* targets.

``L = -(1/|G|) * sum_i G_i * log P(x_i | x_<i)``. Dropped targets carry the ignore
index (-100) and contribute nothing, to the sum or to the count. With gradient
accumulation and several ranks, the count ``|G|`` is that of the whole optimizer
step, so each micro-batch returns its *sum* and the trainer divides by the step's
total: the gradient is then exactly that of the mean over the step's supervised
tokens, however the step is split.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from goldfish_prep.format.names import IGNORE_INDEX


def summed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum of cross-entropy over targets != -100. logits (B, T, V) any float dtype; targets (B, T) int64.

    Computed in fp32 whatever the autocast dtype, so bf16 logits do not round the loss.
    """
    return F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


def supervised_count(targets: torch.Tensor) -> int:
    """How many targets count in the loss (the paper's |G|)."""
    return int((targets != IGNORE_INDEX).sum().item())


def masked_mean_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over supervised targets; 0 (with a gradient path) when none is supervised.

    >>> logits = torch.zeros(1, 3, 4)
    >>> round(masked_mean_cross_entropy(logits, torch.tensor([[1, -100, 2]])).item(), 4)  # log 4
    1.3863
    """
    count = supervised_count(targets)
    return summed_cross_entropy(logits, targets) / max(count, 1)
