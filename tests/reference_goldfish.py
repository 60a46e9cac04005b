"""The goldfish spec v1 and v2 (docs/mask-spec.md) in plain Python: slow, obvious, independent of numpy.

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


def partial_constant(seed: int) -> int:
    """D of spec v2: what each id missing from a partial window adds to w."""
    return xxhash.xxh64_intdigest(b"goldfish-prep/v1/partial", seed=seed)


def window_hash(window: list[int], seed: int, missing: int = 0) -> int:
    """H of the window ids[t-h+1..t] (oldest first); ``missing``: h minus its length (spec v2's partial windows)."""
    a, b, m = constants(seed)
    w = 0
    for i, token in enumerate(reversed(window)):  # i = distance from the token itself
        w = (w + (token + a) * pow(b, i, MOD)) % MOD
    w = (w + missing * partial_constant(seed)) % MOD
    return ((w ^ (w >> 32)) * m) % MOD


def dropped(ids: list[int], k: int, context_width: int, seed: int = 0, spec_version: int = 1) -> list[bool]:
    """Spec v1: positions t >= h only. Spec v2: every position, t < h with the window ids[0..t]."""
    threshold = MOD // k
    out = []
    for t in range(len(ids)):
        if t >= context_width:
            out.append(window_hash(ids[t - context_width + 1 : t + 1], seed) < threshold)
        elif spec_version >= 2:
            out.append(window_hash(ids[: t + 1], seed, missing=context_width - (t + 1)) < threshold)
        else:
            out.append(False)
    return out
