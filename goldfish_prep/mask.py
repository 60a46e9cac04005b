"""The pure masking core: token ids in, drop decisions out.

Nothing here reads files, imports torch, pyarrow or click, or keeps state
between calls, so a trainer or another tool can import it cheaply and a test
can hold that line. ``mask_documents`` works on a *flat batch* (many documents
concatenated, with their start offsets) because the vectorised hashes are only
fast on long arrays; ``goldfish_mask`` is the one-document convenience. What
each strategy decides lives in ``strategies/``; this module only validates and
dispatches.

Masks are always per document: position ``t`` of a document counts from that
document's first id, so a passage gets the same mask wherever it appears.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from goldfish_prep.config import MaskConfig
from goldfish_prep.errors import ConfigError
from goldfish_prep.strategies import Extras
from goldfish_prep.strategies.base import local_positions
from goldfish_prep.strategies.robust import TOKEN_BYTES, TokenBytes

__all__ = ["as_token_array", "eligible_counts", "goldfish_mask", "local_positions", "mask_and_eligible", "mask_documents"]


def goldfish_mask(
    token_ids: npt.ArrayLike,
    *,
    k: int = 4,
    context_width: int = 13,
    strategy: str = "goldfish",
    seed: int = 0,
    token_bytes: TokenBytes | None = None,
    spec_version: int | None = None,
) -> npt.NDArray[np.bool_]:
    """Return a bool array, True where the token is dropped from the loss.

    ``strategy="robust"`` also needs ``token_bytes``, the bytes each id spells
    (``goldfish_prep.tokenizers.token_bytes.token_bytes(tokenizer)``).
    ``spec_version``: the strategy's spec version (default: the newest;
    ``goldfish`` 1 never drops a document's first ``context_width`` tokens).

    >>> mask = goldfish_mask(list(range(100)), k=4, context_width=13)
    >>> mask.shape, bool(mask[:13].any()), bool(goldfish_mask(list(range(100)), spec_version=1)[:13].any())
    ((100,), True, False)
    """
    config = MaskConfig(strategy=strategy, k=k, context_width=context_width, seed=seed, spec_version=spec_version)
    ids = as_token_array(token_ids)
    extras = {TOKEN_BYTES: [token_bytes]} if token_bytes is not None else None
    return mask_documents(ids, np.zeros(1, dtype=np.int64), config, extras)


def as_token_array(token_ids: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Validate ids as a 1-D array of non-negative integers below 2**32."""
    try:
        ids = np.asarray(token_ids)
    except (ValueError, TypeError) as exc:  # ragged nested lists, objects numpy cannot hold
        raise ConfigError(f"token_ids must be a flat sequence of integers ({exc})") from exc
    if ids.ndim != 1:
        raise ConfigError(f"token_ids must be one-dimensional, got shape {ids.shape}")
    if ids.size == 0:
        return np.zeros(0, dtype=np.int64)
    if ids.dtype.kind not in "iu":
        raise ConfigError(f"token_ids must be integers, got dtype {ids.dtype}")
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= 2**32:
        raise ConfigError(f"token ids must lie in [0, 2**32), got values from {low} to {high}")
    return ids.astype(np.int64, copy=False)


def mask_documents(
    ids: npt.NDArray[np.integer],
    starts: npt.NDArray[np.integer],
    config: MaskConfig,
    extras: Extras | None = None,
) -> npt.NDArray[np.bool_]:
    """Drop decisions for a flat batch: ``ids`` of all documents end to end, ``starts[i]`` where document i begins.

    ``starts`` must begin with 0 and increase; the last document runs to the end.
    Ids must be non-negative (callers validate; see ``as_token_array``).
    ``extras``: per-document inputs for strategies that need more than ids
    (``Strategy.requires`` names them).

    >>> ids = np.array([5, 6, 7, 5, 6, 7])
    >>> mask_documents(ids, np.array([0, 3]), MaskConfig(k=2, context_width=1)).reshape(2, 3)[0].tolist() == \\
    ...     mask_documents(ids, np.array([0, 3]), MaskConfig(k=2, context_width=1)).reshape(2, 3)[1].tolist()
    True
    """
    if len(ids) == 0:
        return np.zeros(0, dtype=np.bool_)
    _check_extras(config, extras)
    return config.strategy_object.drop(ids, np.asarray(starts, dtype=np.int64), config, extras)


def mask_and_eligible(
    ids: npt.NDArray[np.integer], starts: npt.NDArray[np.integer], config: MaskConfig, extras: Extras | None = None
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """``mask_documents`` and the eligible positions of each document, from one pass (robust needs the tokens for both)."""
    offsets = np.asarray(starts, dtype=np.int64)
    if len(ids) == 0:
        return np.zeros(0, dtype=np.bool_), np.zeros(len(offsets), dtype=np.int64)
    _check_extras(config, extras)
    return config.strategy_object.drop_and_eligible(ids, offsets, config, extras)


def _check_extras(config: MaskConfig, extras: Extras | None) -> None:
    strategy = config.strategy_object
    missing = strategy.requires - set(extras or {})
    if missing:
        raise ConfigError(f"strategy {strategy.name!r} needs per-document {', '.join(sorted(missing))}, which the caller did not pass")


def eligible_counts(lengths: npt.ArrayLike, config: MaskConfig) -> npt.NDArray[np.int64]:
    """How many positions of each document the strategy *could* drop (the denominator of a mask rate).

    ``goldfish`` (spec v2): every position; spec v1 and ``hash-table``:
    positions ``t >= context_width``; static: positions ``t >= 1 + start``, of
    which it drops every k-th; none: 0. So the expected rate is 1/k for every
    strategy but ``none``.

    >>> eligible_counts([5, 20], MaskConfig(k=4, context_width=13, spec_version=1)).tolist()
    [0, 7]
    >>> eligible_counts([5, 20], MaskConfig(k=4, context_width=13)).tolist()
    [5, 20]
    """
    return config.strategy_object.eligible_counts(np.asarray(lengths, dtype=np.int64), config)


def expected_rate(config: MaskConfig) -> float:
    """The probability that one eligible position is dropped (1/k; 0 for ``none``)."""
    return config.strategy_object.expected_rate(config)
