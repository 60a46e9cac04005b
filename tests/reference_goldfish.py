"""The goldfish spec v1 (docs/mask-spec.md) in plain Python: slow, obvious, independent of numpy.

The vectorised implementation must equal this on every input; this file is
what another implementation (a trainer, another language) should read.
"""

from __future__ import annotations

import xxhash

MOD = 1 << 64


def constants(seed: int) -> tuple[int, int, int]:
    a = xxhash.xxh64_intdigest(b"goldfish-prep/v1/offset", seed=seed)
    b = xxhash.xxh64_intdigest(b"goldfish-prep/v1/base", seed=seed) | 1
    m = xxhash.xxh64_intdigest(b"goldfish-prep/v1/mix", seed=seed) | 1
    return a, b, m


def window_hash(window: list[int], seed: int) -> int:
    """H of the window ids[t-h+1..t] (oldest first)."""
    a, b, m = constants(seed)
    w = 0
    for i, token in enumerate(reversed(window)):  # i = distance from the token itself
        w = (w + (token + a) * pow(b, i, MOD)) % MOD
    return ((w ^ (w >> 32)) * m) % MOD


def dropped(ids: list[int], k: int, context_width: int, seed: int = 0) -> list[bool]:
    threshold = MOD // k
    return [t >= context_width and window_hash(ids[t - context_width + 1 : t + 1], seed) < threshold for t in range(len(ids))]
