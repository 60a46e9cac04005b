"""The pure masking core: token ids in, drop decisions out.

Nothing here reads files, imports torch, pyarrow or click, or keeps state
between calls, so a trainer or another tool can import it cheaply and a test
can hold that line. ``mask_documents`` works on a *flat batch* (many documents
concatenated, with their start offsets) because the vectorised hashes are only
fast on long arrays; ``goldfish_mask`` is the one-document convenience.

Masks are always per document: position ``t`` of a document counts from that
document's first id, so a passage gets the same mask wherever it appears.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from goldfish_prep.config import MaskConfig
from goldfish_prep.errors import ConfigError
from goldfish_prep.strategies import goldfish, hash_table, robust, static
from goldfish_prep.strategies.robust import TokenBytes


def goldfish_mask(
    token_ids: npt.ArrayLike,
    *,
    k: int = 4,
    context_width: int = 13,
    strategy: str = "goldfish",
    seed: int = 0,
    token_bytes: TokenBytes | None = None,
) -> npt.NDArray[np.bool_]:
    """Return a bool array, True where the token is dropped from the loss.

    ``strategy="robust"`` also needs ``token_bytes``, the bytes each id spells
    (``goldfish_prep.tokenizers.token_bytes.token_bytes(tokenizer)``).

    >>> mask = goldfish_mask(list(range(100)), k=4, context_width=13)
    >>> mask.shape, bool(mask[:13].any())
    ((100,), False)
    """
    config = MaskConfig(strategy=strategy, k=k, context_width=context_width, seed=seed)
    ids = as_token_array(token_ids)
    return mask_documents(ids, np.zeros(1, dtype=np.int64), config, token_bytes)


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
    token_bytes: TokenBytes | None = None,
) -> npt.NDArray[np.bool_]:
    """Drop decisions for a flat batch: ``ids`` of all documents end to end, ``starts[i]`` where document i begins.

    ``starts`` must begin with 0 and increase; the last document runs to the end.
    Ids must be non-negative (callers validate; see ``as_token_array``).

    >>> ids = np.array([5, 6, 7, 5, 6, 7])
    >>> mask_documents(ids, np.array([0, 3]), MaskConfig(k=2, context_width=1)).reshape(2, 3)[0].tolist() == \\
    ...     mask_documents(ids, np.array([0, 3]), MaskConfig(k=2, context_width=1)).reshape(2, 3)[1].tolist()
    True
    """
    n = len(ids)
    if config.strategy == "none" or n == 0:
        return np.zeros(n, dtype=np.bool_)
    if config.strategy == "robust":
        return robust_decisions(ids, starts, config, token_bytes)[0]
    if config.strategy == "static":
        return static.drop_local(local_positions(starts, n), config.k, config.seed % config.k)
    if config.strategy == "goldfish":
        drop = goldfish.drop_flat(ids, config.context_width, config.k, config.seed)
    else:
        drop = hash_table.drop_flat(ids, config.context_width, config.k)
    _clear_document_heads(drop, np.asarray(starts, dtype=np.int64), config.context_width)
    return drop


def robust_decisions(
    ids: npt.NDArray[np.integer], starts: npt.NDArray[np.integer], config: MaskConfig, token_bytes: TokenBytes | None
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(dropped, eligible) of the ``robust`` strategy: its eligible positions depend on the text, not only on lengths."""
    if token_bytes is None:
        raise ConfigError("the robust strategy needs the tokenizer's bytes per id (token_bytes=...) to read the text the ids spell")
    if len(ids) and int(np.max(ids)) >= token_bytes.vocab_size:
        raise ConfigError(f"token id {int(np.max(ids))} is outside the tokenizer's {token_bytes.vocab_size} ids; pass the tokenizer the ids were made with")
    return robust.decide(ids, starts, token_bytes, config.context_width, config.k, config.seed)


def local_positions(starts: npt.NDArray[np.integer], n: int) -> npt.NDArray[np.int64]:
    """Each position's index within its own document (int64, shape (n,))."""
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.diff(np.append(starts, n))
    return np.arange(n, dtype=np.int64) - np.repeat(starts, lengths)


def _clear_document_heads(drop: npt.NDArray[np.bool_], starts: npt.NDArray[np.int64], width: int) -> None:
    """Positions 0..width-1 of every document are never dropped (their window would leave the document)."""
    width = min(width, len(drop))  # a window wider than the batch: every position is a head
    heads = (starts[:, None] + np.arange(width, dtype=np.int64)[None, :]).ravel()
    drop[heads[heads < len(drop)]] = False


def eligible_counts(lengths: npt.ArrayLike, config: MaskConfig) -> npt.NDArray[np.int64]:
    """How many positions of each document the strategy *could* drop (the denominator of a mask rate).

    Hash strategies: positions ``t >= context_width``; static: positions
    ``t >= 1 + start``, of which it drops every k-th; none: 0. So the expected
    rate is 1/k for every strategy but ``none``.

    >>> eligible_counts([5, 20], MaskConfig(k=4, context_width=13)).tolist()
    [0, 7]
    """
    n = np.asarray(lengths, dtype=np.int64)
    if config.strategy == "robust":  # an internal misuse, not a user error
        raise ValueError("robust eligible positions depend on the text: use robust_decisions")
    if config.strategy == "none":
        return np.zeros_like(n)
    if config.strategy == "static":
        first = 1 + config.seed % config.k
        return np.maximum(n - first, 0)
    return np.maximum(n - config.context_width, 0)
