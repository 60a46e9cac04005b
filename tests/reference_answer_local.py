"""The answer-local v1 rule (docs/mask-spec.md) in plain Python: slow, obvious, independent of numpy.

One answer at a time: ``answer`` is the list of its ids, ``eligible`` which of
them may be dropped (False for special tokens and --keep-ids).
"""

from __future__ import annotations

import xxhash

from tests.reference_goldfish import MOD, constants


def partial_constant(seed: int) -> int:
    return xxhash.xxh64_intdigest(b"goldfish-prep/v1/partial", seed=seed)


def answer_hash(answer: list[int], t: int, context_width: int, seed: int) -> int:
    """H_t: the window of the answer's own ids ending at t, at most context_width long."""
    a, b, m = constants(seed)
    low = max(0, t - context_width + 1)
    w = 0
    for i, token in enumerate(reversed(answer[low : t + 1])):
        w = (w + (token + a) * pow(b, i, MOD)) % MOD
    w = (w + (context_width - (t - low + 1)) * partial_constant(seed)) % MOD
    return ((w ^ (w >> 32)) * m) % MOD


def answer_dropped(answer: list[int], eligible: list[bool], k: int, context_width: int, seed: int = 0) -> list[bool]:
    if k == 0:
        return [False] * len(answer)
    threshold = MOD // k
    return [eligible[t] and answer_hash(answer, t, context_width, seed) < threshold for t in range(len(answer))]
