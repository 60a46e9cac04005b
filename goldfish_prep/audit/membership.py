"""Membership-inference scores of one document, from its per-token log-probabilities.

Every score is oriented the same way: **higher means "more likely a training
document"**, so one ROC routine judges them all (``roc``). From the log-probability
``l_t = log p(x_t | x_<t)`` of each true id (nats), over the scored positions:

- ``loss``: minus the mean NLL, ``mean(l_t)`` (Yeom et al. 2018). Trained text is likely text.
- ``zlib``: minus the ratio of the NLL to the zlib-compressed size of the text in bytes
  (Carlini et al. 2021): text that is likely only because it is simple (repetitive,
  boilerplate) compresses well too, so the ratio discounts it.
- ``min_k``: the mean of the lowest ``k`` share of ``l_t`` (Min-K% Prob, Shi et al. 2024,
  k = 20%): an unseen text has a few very surprising tokens, a trained one has fewer.
- ``min_k_plus_plus``: the same over ``(l_t - mu_t) / sigma_t``, where ``mu_t`` and ``sigma_t``
  are the mean and standard deviation of ``log p(z)`` for ``z`` drawn from the model's own
  next-token distribution at that position (Min-K%++, Zhang et al. 2024): a trained token
  is a local maximum of the likelihood, more likely than the model's typical choice there.
  Positions where the distribution is a point mass (``sigma_t = 0``) score 0.
- ``reference``: minus the ratio of the NLL to a reference model's NLL on the same ids
  (Carlini et al. 2021): what the target model finds easier than a model that never
  saw the document is what it learned from it.

``keep`` restricts every score to some positions: the mask-aware attacker of
``mask_attack`` scores only the positions a goldfish mask kept in the loss.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import numpy.typing as npt

from goldfish_prep.errors import ConfigError

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

#: the attacks, in the order reports list them (``reference`` only with a reference model)
ATTACKS: tuple[str, ...] = ("loss", "zlib", "min_k", "min_k_plus_plus", "reference")


@dataclasses.dataclass(frozen=True)
class TokenStats:
    """What one forward pass over a document's window gives, one entry per predicted position (n,), float64."""

    #: log p(x_t | x_<t) of the true id
    logprob: Floats
    #: E[log p(z)] for z ~ p(. | x_<t): minus the entropy of the model's next-token distribution
    mean: Floats
    #: the standard deviation of log p(z) under the same distribution
    std: Floats

    def __post_init__(self) -> None:
        if not self.logprob.shape == self.mean.shape == self.std.shape or self.logprob.ndim != 1:
            raise ConfigError(
                f"token statistics must be three 1-D arrays of one length, got {self.logprob.shape}, {self.mean.shape}, {self.std.shape}"
            )


def lowest_mean(values: Floats, share: float) -> float:
    """The mean of the lowest ``share`` of ``values`` (at least one value; NaN when there are none).

    >>> lowest_mean(np.array([-5.0, -1.0, -0.5, -0.1, 0.0]), 0.4)  # the 2 lowest
    -3.0
    """
    if values.size == 0:
        return math.nan
    count = max(1, int(values.size * share))
    return float(np.partition(values, count - 1)[:count].mean())


def standardized(stats: TokenStats) -> Floats:
    """(l_t - mu_t) / sigma_t per position, 0 where sigma_t is 0 (a point mass: the true id was the only choice)."""
    out = np.zeros_like(stats.logprob)
    np.divide(stats.logprob - stats.mean, stats.std, out=out, where=stats.std > 0)
    return out


def membership_scores(
    stats: TokenStats,
    compressed_bytes: int,
    reference: Floats | None = None,
    keep: Bools | None = None,
    k: float = 0.2,
) -> dict[str, float]:
    """Every attack's score for one document (NaN where it cannot be computed: no kept position, no reference).

    ``compressed_bytes``: the zlib-compressed size of the document's scored text.
    ``reference``: a reference model's log p of the same ids, aligned with ``stats.logprob``.

    >>> stats = TokenStats(np.array([-1.0, -3.0]), np.array([-2.0, -2.0]), np.array([1.0, 1.0]))
    >>> scores = membership_scores(stats, 4, reference=np.array([-4.0, -4.0]), k=0.5)
    >>> scores["loss"], scores["zlib"], scores["min_k"], scores["min_k_plus_plus"], scores["reference"]
    (-2.0, -0.5, -3.0, -1.0, -0.5)
    """
    if not 0.0 < k <= 1.0:
        raise ConfigError(f"the min-k share must lie in (0, 1], got {k}")
    chosen = np.ones(stats.logprob.shape, np.bool_) if keep is None else keep
    if chosen.shape != stats.logprob.shape:
        raise ConfigError(f"keep has shape {chosen.shape}, the statistics {stats.logprob.shape}")
    logprob = stats.logprob[chosen]
    if logprob.size == 0:
        return {name: math.nan for name in ATTACKS}
    nll = -float(logprob.mean())
    scores = {
        "loss": -nll,
        "zlib": -nll / compressed_bytes if compressed_bytes > 0 else math.nan,
        "min_k": lowest_mean(logprob, k),
        "min_k_plus_plus": lowest_mean(standardized(stats)[chosen], k),
        "reference": math.nan,
    }
    if reference is not None:
        reference_nll = -float(reference[chosen].mean())
        scores["reference"] = -nll / reference_nll if reference_nll > 0 else math.nan
    return scores
