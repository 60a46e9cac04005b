"""Targets against controls: how far the documents a model saw stand from those it did not.

For one per-document metric, oriented so that higher means "more like a
training document" (Rouge-L, exact match, a membership score; a loss is
negated by its producer), the gap is read three ways:

- the two medians, side by side;
- the share of targets above the controls' 95th percentile: what an auditor who
  calibrates a threshold on unseen text (5% of it flagged) would catch. Near 5%
  means the model treats its training documents like any other text;
- the AUC (``roc``).

The 95th percentile is numpy's default (linear interpolation between order
statistics); "above" is strict, so a metric that ties everywhere (all zeros)
gives 0%.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import numpy.typing as npt

from goldfish_prep.audit.roc import roc_auc, tpr_at_fpr


@dataclasses.dataclass(frozen=True)
class Gap:
    targets: int
    controls: int
    median_targets: float
    median_controls: float
    #: share of targets strictly above the controls' ``percentile``-th percentile
    above_control_percentile: float
    auc: float
    tpr_at_1pct_fpr: float
    percentile: float = 95.0


def gap(targets: npt.ArrayLike, controls: npt.ArrayLike, percentile: float = 95.0) -> Gap | None:
    """The gap between finite target and control values (non-finite ones are left out); None when a side is empty.

    >>> g = gap([0.9, 0.8, 0.1], [0.1, 0.2, 0.3, 0.2])
    >>> g.median_targets, g.median_controls, round(g.above_control_percentile, 3), g.auc == 8.5 / 12
    (0.8, 0.2, 0.667, True)
    """
    t = np.asarray(targets, dtype=np.float64)
    c = np.asarray(controls, dtype=np.float64)
    t, c = t[np.isfinite(t)], c[np.isfinite(c)]
    if t.size == 0 or c.size == 0:
        return None
    cut = float(np.percentile(c, percentile))
    return Gap(
        targets=int(t.size),
        controls=int(c.size),
        median_targets=float(np.median(t)),
        median_controls=float(np.median(c)),
        above_control_percentile=float((t > cut).mean()),
        auc=roc_auc(t, c),
        tpr_at_1pct_fpr=tpr_at_fpr(t, c, 0.01),
        percentile=percentile,
    )


def finite_share(values: npt.ArrayLike) -> float:
    """The share of finite values (documents an attack could score).

    >>> finite_share([1.0, float("nan")])
    0.5
    """
    array = np.asarray(values, dtype=np.float64)
    return float(np.isfinite(array).mean()) if array.size else math.nan
