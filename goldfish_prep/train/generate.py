"""Decoding for the memorisation test: greedy, beam search (the paper's extraction attack) and sampling.

Both work on any ``CausalLM`` (the bundled model or a Hugging Face one) through
one call, ``next_token_logprobs(ids) -> (B, V)``, and always produce exactly
``length`` tokens: end-of-text is an ordinary token here, since the true suffix
may contain it and stopping early would only shorten the comparison.
"""

from __future__ import annotations

import torch

from goldfish_prep.errors import ConfigError
from goldfish_prep.train.causal_lm import CausalLM


def _check_room(model: CausalLM, prefix: list[int], length: int) -> None:
    if not prefix:
        raise ConfigError("an empty prefix: decoding needs at least one id to start from")
    if len(prefix) + length - 1 > model.context_length:
        raise ConfigError(f"a prefix of {len(prefix)} ids and {length} new ones exceed the model's context of {model.context_length}")


@torch.no_grad()
def greedy(model: CausalLM, prefix: list[int], length: int) -> list[int]:
    """``length`` ids, each the argmax continuation (ties: the lowest id, as torch.argmax)."""
    return _argmax_walk(model, prefix, length, None)


@torch.no_grad()
def teacher_forced(model: CausalLM, prefix: list[int], suffix: list[int]) -> list[int]:
    """The argmax id at each position of ``suffix`` given the *true* ids before it (prefix and suffix).

    Where ``greedy`` feeds the model its own guesses, this feeds it the text: the
    prediction at a position depends on nothing the model generated, so it shows
    what the model learned about that position alone.
    """
    return _argmax_walk(model, prefix, len(suffix), suffix)


def _argmax_walk(model: CausalLM, prefix: list[int], length: int, feed: list[int] | None) -> list[int]:
    """``length`` argmax predictions, each step continued with ``feed``'s id (or with the prediction)."""
    _check_room(model, prefix, length)
    cache, logprobs = model.prefill(torch.tensor([prefix], dtype=torch.long, device=model.device))
    rows = torch.zeros(1, dtype=torch.long, device=model.device)
    predicted: list[int] = []
    while True:
        token = logprobs.argmax(dim=-1)
        predicted.append(int(token.item()))
        if len(predicted) == length:
            return predicted
        if feed is not None:
            token = torch.tensor([feed[len(predicted) - 1]], dtype=torch.long, device=model.device)
        cache, logprobs = model.extend(cache, rows, token)


@torch.no_grad()
def beam_search(model: CausalLM, prefix: list[int], length: int, num_beams: int) -> list[int]:
    """The most likely ``length``-id continuation found with ``num_beams`` beams (sum of log-probabilities).

    Each step extends every beam by every token and keeps the ``num_beams`` best
    sequences overall; with one beam it is greedy decoding.
    """
    _check_room(model, prefix, length)
    cache, logprobs = model.prefill(torch.tensor([prefix], dtype=torch.long, device=model.device))
    scores = torch.zeros(1, dtype=torch.float64, device=model.device)
    sequences = torch.zeros(1, 0, dtype=torch.long, device=model.device)
    for position in range(length):
        candidates = (scores[:, None] + logprobs.double()).reshape(-1)
        scores, flat = candidates.topk(min(num_beams, candidates.numel()))
        beams, tokens = flat // logprobs.shape[-1], flat % logprobs.shape[-1]
        sequences = torch.cat([sequences[beams], tokens[:, None]], dim=1)
        if position + 1 < length:
            cache, logprobs = model.extend(cache, beams, tokens)
    return [int(t) for t in sequences[0].tolist()]  # topk sorts: row 0 scores best


@torch.no_grad()
def sample(
    model: CausalLM,
    prefix: list[int],
    length: int,
    num_samples: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> list[list[int]]:
    """``num_samples`` continuations of ``length`` ids drawn from the model at ``temperature``, as one batch.

    The prefix is read once; its cache row is duplicated into ``num_samples`` rows
    at the first new id, then every row grows by one id per step. ``top_k`` keeps
    the k most likely ids, ``top_p`` the smallest set of most likely ids whose
    probability reaches p (nucleus sampling); at most one of them.
    """
    _check_room(model, prefix, length)
    cache, logprobs = model.prefill(torch.tensor([prefix], dtype=torch.long, device=model.device))
    logprobs = logprobs.expand(num_samples, -1)  # (N, V): every sample starts from the prefix's distribution
    rows = torch.zeros(num_samples, dtype=torch.long, device=model.device)  # first step: N copies of row 0
    drawn: list[torch.Tensor] = []
    for position in range(length):
        tokens = draw(logprobs, temperature, top_k, top_p, generator)
        drawn.append(tokens)
        if position + 1 < length:
            cache, logprobs = model.extend(cache, rows, tokens)
            rows = torch.arange(num_samples, device=model.device)
    return [[int(t) for t in row] for row in torch.stack(drawn, dim=1).tolist()]


def draw(
    logprobs: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None, generator: torch.Generator | None
) -> torch.Tensor:
    """One id per row of ``logprobs`` (N, V), from the tempered and truncated distribution; (N,) int64."""
    scaled = logprobs.float() / temperature
    if top_k is not None and top_k < scaled.shape[-1]:
        kth = scaled.topk(top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        ordered, order = scaled.sort(dim=-1, descending=True)
        probs = ordered.softmax(dim=-1)
        # drop an id when the more likely ids before it already reach p (the most likely is always kept)
        outside = (probs.cumsum(dim=-1) - probs) >= top_p
        scaled = scaled.scatter(-1, order, ordered.masked_fill(outside, float("-inf")))
    return torch.multinomial(scaled.softmax(dim=-1), 1, generator=generator)[:, 0]
