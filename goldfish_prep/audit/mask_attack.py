"""The mask-aware attacker: the goldfish rule is public, so score only what the loss saw.

A goldfish model never learned its dropped positions, so they look like unseen
text and dilute a membership score computed over every position. But the rule
that drops them is published (docs/mask-spec.md) and the manifest records its
settings (strategy, k, context width, seed). An attacker who knows them
recomputes the mask of any candidate document from its ids alone, with the
library's own masking functions, and scores only the kept positions: the ones a
training document was fitted on.

The seed is the only part of the rule that can stay private: ``goldfish`` and
``robust`` derive their hash constants from it, and a wrong seed gives an
independent mask, about as useful to the attacker as no mask at all
(``hash-table`` has no seed; ``static``'s seed is only a start offset). So the
audit measures the attacker twice: with the manifest's seed, and with another.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from goldfish_prep.config import MaskConfig
from goldfish_prep.mask import mask_documents
from goldfish_prep.strategies.robust import TOKEN_BYTES, TokenBytes

Bools = npt.NDArray[np.bool_]


def wrong_seed(config: MaskConfig) -> MaskConfig:
    """The same rule under the next seed (what an attacker who guesses the seed wrong computes).

    >>> wrong_seed(MaskConfig(seed=7)).seed, wrong_seed(MaskConfig(seed=2**64 - 1)).seed
    (8, 0)
    """
    return dataclasses.replace(config, seed=(config.seed + 1) % 2**64)


def recompute_drops(ids: npt.NDArray[np.integer], config: MaskConfig, token_bytes: TokenBytes | None = None) -> Bools:
    """The drop decisions of one whole document under ``config`` (True: left out of the loss), as ``mask`` wrote them."""
    values = np.asarray(ids, dtype=np.int64)
    if values.size == 0:
        return np.zeros(0, dtype=np.bool_)
    extras = {TOKEN_BYTES: [token_bytes]} if token_bytes is not None else None
    return mask_documents(values, np.zeros(1, dtype=np.int64), config, extras)


def kept_in_window(drops: Bools, window_length: int) -> Bools:
    """For the document's last ``window_length`` ids, whether each predicted position (1..) was kept in the loss.

    Aligned with ``TokenStats``: entry ``j`` is the id at window position ``j + 1``.

    >>> kept_in_window(np.array([False, False, True, False, True]), 3).tolist()  # window = ids 2..4
    [True, False]
    """
    window = drops[len(drops) - window_length :]
    return ~window[1:]


def attacker_keeps(
    documents: Sequence[npt.NDArray[np.integer]], window_lengths: Sequence[int], config: MaskConfig, token_bytes: TokenBytes | None
) -> list[Bools]:
    """Kept positions of each document's scored window, under the attacker's ``config``."""
    return [kept_in_window(recompute_drops(ids, config, token_bytes), n) for ids, n in zip(documents, window_lengths)]


def seed_matters(config: MaskConfig, token_bytes: TokenBytes | None = None) -> bool:
    """Whether another seed changes this rule's masks (False for ``hash-table``, whose table is fixed), on a probe text.

    >>> seed_matters(MaskConfig(strategy="goldfish", k=4)), seed_matters(MaskConfig(strategy="hash-table", k=4))
    (True, False)
    """
    probe = np.random.default_rng(0).integers(0, 256, 4096)  # ids below 256 exist in every tokenizer the audit reads
    return bool((recompute_drops(probe, config, token_bytes) != recompute_drops(probe, wrong_seed(config), token_bytes)).any())
