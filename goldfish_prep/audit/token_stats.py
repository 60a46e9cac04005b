"""Per-token statistics of a document under a model, from one forward pass (the membership scores' input).

The loss-based attacks need, at each position, the log-probability of the true
next id and, for Min-K%++, the mean and standard deviation of ``log p(z)`` under
the model's whole next-token distribution there. All come from the same
(T, V) log-probabilities: one forward pass per document, no generation.

The window is the last ``context_length`` ids of the document (the ids the
memorisation test reads: prefix and suffix), so a long document is judged on
the same text as its suffix, and its first id, having no context, is not scored.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from goldfish_prep.audit.membership import TokenStats
from goldfish_prep.train.causal_lm import CausalLM

#: positions per chunk of the float64 moments: bounds memory to CHUNK x V doubles for large vocabularies
CHUNK = 512


def scored_window(ids: Sequence[int], context_length: int) -> list[int]:
    """The last ``context_length`` ids (all of them when the document fits).

    >>> scored_window(list(range(10)), 4)
    [6, 7, 8, 9]
    """
    return [int(i) for i in ids[-context_length:]]


@torch.no_grad()
def token_stats(model: CausalLM, window: Sequence[int]) -> TokenStats:
    """Statistics of positions 1..len(window)-1 of ``window`` (each predicted from the ids before it)."""
    ids = torch.tensor([list(window)], dtype=torch.long, device=model.device)
    logprobs = model.all_logprobs(ids)[0, :-1]  # (T-1, V) fp32: the distribution after each position but the last
    targets = ids[0, 1:]
    true, means, stds = [], [], []
    for begin in range(0, logprobs.shape[0], CHUNK):
        piece = logprobs[begin : begin + CHUNK].double()  # (C, V); float64: the variance subtracts two close numbers
        probs = piece.exp()
        weighted = torch.where(probs > 0, probs * piece, torch.zeros_like(piece))  # 0 * -inf would be NaN
        mean = weighted.sum(dim=-1)
        second = torch.where(probs > 0, probs * piece.square(), torch.zeros_like(piece)).sum(dim=-1)
        true.append(piece.gather(-1, targets[begin : begin + CHUNK, None])[:, 0])
        means.append(mean)
        stds.append((second - mean.square()).clamp_min(0.0).sqrt())
    as_numpy = [torch.cat(part).cpu().numpy() if part else np.zeros(0) for part in (true, means, stds)]
    return TokenStats(*as_numpy)


def reference_logprobs(model: CausalLM, window: Sequence[int]) -> np.ndarray:
    """log p of each true id of ``window`` (positions 1..) under a reference model, float64 (n,)."""
    ids = torch.tensor([list(window)], dtype=torch.long, device=model.device)
    with torch.no_grad():
        logprobs = model.all_logprobs(ids)[0, :-1]
    result: np.ndarray = logprobs.gather(-1, ids[0, 1:, None])[:, 0].double().cpu().numpy()
    return result
