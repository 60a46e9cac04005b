"""ROC statistics of a membership attack, computed exactly from the scores.

A membership attack gives each document a score, higher meaning "more likely
a training document" (a *member*). Against targets (members) and controls
(documents the model never saw) it is judged by:

- **AUC**: the probability that a random target scores above a random control,
  ties counting one half (the Mann-Whitney U statistic over ``n_t * n_c``).
  Computed from integer counts and one division, so it is exact up to the final
  rounding to a float: no trapezoids over a sampled curve.
- **TPR at a fixed FPR** (1% by default, Carlini et al. 2022): the attacker flags
  every document whose score reaches a threshold; among thresholds whose share
  of flagged controls is at most the FPR, the largest share of flagged targets.
  Tied scores are flagged together (a threshold cannot split them), so ties
  never give the attacker a free fraction. With fewer than ``1 / fpr`` controls,
  the only admissible thresholds flag no control at all.

Scores must be finite: a document without a score is left out by the caller,
which reports how many.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from goldfish_prep.errors import ConfigError

Floats = npt.NDArray[np.float64]


def _checked(scores: npt.ArrayLike, name: str) -> Floats:
    values = np.asarray(scores, dtype=np.float64).ravel()
    if values.size == 0:
        raise ConfigError(f"no {name} scores: an ROC needs at least one target and one control")
    if not np.isfinite(values).all():
        raise ConfigError(f"{name} scores must be finite (leave unscored documents out)")
    return values


def roc_auc(targets: npt.ArrayLike, controls: npt.ArrayLike) -> float:
    """P(target score > control score) + P(equal) / 2.

    >>> roc_auc([3, 4], [1, 2]), roc_auc([1, 2], [3, 4]), roc_auc([1, 3], [1, 2])
    (1.0, 0.0, 0.625)
    """
    t, c = _checked(targets, "target"), np.sort(_checked(controls, "control"))
    below = np.searchsorted(c, t, side="left")  # controls strictly below each target
    at_or_below = np.searchsorted(c, t, side="right")
    # twice the U statistic, an integer: 2 * below + ties
    twice_u = int((below + at_or_below).sum())
    return twice_u / (2 * t.size * c.size)


def roc_curve(targets: npt.ArrayLike, controls: npt.ArrayLike) -> tuple[Floats, Floats]:
    """(FPR, TPR) at every distinct threshold, from (0, 0) (flag nothing) to (1, 1) (flag everything).

    The attacker flags scores >= threshold; thresholds are the distinct scores, in decreasing order.

    >>> fpr, tpr = roc_curve([3, 2], [2, 1])
    >>> fpr.tolist(), tpr.tolist()
    ([0.0, 0.0, 0.5, 1.0], [0.0, 0.5, 1.0, 1.0])
    """
    t, c = np.sort(_checked(targets, "target")), np.sort(_checked(controls, "control"))
    thresholds = np.unique(np.concatenate([t, c]))[::-1]
    # flagged = scores >= threshold = size - (scores < threshold)
    tpr = (t.size - np.searchsorted(t, thresholds, side="left")) / t.size
    fpr = (c.size - np.searchsorted(c, thresholds, side="left")) / c.size
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr])


def tpr_at_fpr(targets: npt.ArrayLike, controls: npt.ArrayLike, fpr: float = 0.01) -> float:
    """The largest share of targets flagged by a threshold that flags at most ``fpr`` of the controls.

    >>> tpr_at_fpr([5, 4, 1], [3, 2, 1, 0])   # threshold 4: no control, 2 of 3 targets
    0.6666666666666666
    >>> tpr_at_fpr([3, 3], [3, 0], fpr=0.25)  # 3 flags half the controls; only a threshold above 3 is admissible
    0.0
    """
    if not 0.0 <= fpr <= 1.0:
        raise ConfigError(f"fpr must lie in [0, 1], got {fpr}")
    t, c = np.sort(_checked(targets, "target")), np.sort(_checked(controls, "control"))
    thresholds = np.unique(np.concatenate([t, c]))
    flagged_controls = c.size - np.searchsorted(c, thresholds, side="left")
    flagged_targets = t.size - np.searchsorted(t, thresholds, side="left")
    # integer comparison: flagged_controls / n_c <= fpr  <=>  flagged_controls <= floor(fpr * n_c) (up to float error in fpr * n_c)
    admissible = flagged_controls <= np.floor(fpr * c.size + 1e-9)
    best = int(flagged_targets[admissible].max()) if admissible.any() else 0
    return best / t.size
