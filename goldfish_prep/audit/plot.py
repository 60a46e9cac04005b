"""The audit's picture: Rouge-L histograms of targets against controls (the paper's figure) and the attacks' ROC curves.

Needs matplotlib (the ``plot`` extra); ``require_matplotlib`` says so in one
line before any model is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from goldfish_prep.audit.report import AuditReport, metric_values
from goldfish_prep.audit.roc import roc_curve
from goldfish_prep.errors import ConfigError

_VARIANT_STYLE = {"plain": "-", "mask_aware": "--", "mask_aware_wrong_seed": ":"}


def require_matplotlib() -> None:
    """Raise a one-line error naming the extra when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ConfigError("--plot needs matplotlib, which is not installed; pip install 'goldfish-prep[plot]'") from exc


def draw_audit(report: AuditReport, path: Path) -> None:
    """Write ``audit_figure`` to ``path`` (the format follows the suffix: .png, .pdf, .svg)."""
    import matplotlib.pyplot as plt

    figure = audit_figure(report)
    try:
        figure.savefig(path, dpi=120)
    finally:
        plt.close(figure)


def audit_figure(report: AuditReport) -> Any:
    """The picture as a Matplotlib figure with two panels, for callers (and tests) that look into it before saving.

    Left: Rouge-L (ids) of the greedy continuations, targets against controls. Right: ROC curves of every
    attack, one line per attack and attacker (plain, mask-aware with the manifest's seed, with a wrong seed).
    The caller closes it (``matplotlib.pyplot.close``)."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if report.controls is None:
        raise ConfigError("--plot needs --controls: the picture compares targets with controls")
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    bins = np.linspace(0.0, 1.0, 21)
    left.hist(
        metric_values(report.targets, "rouge_l"), bins=bins, alpha=0.6, color="#c44e52", label=f"targets ({len(report.targets.documents)})"
    )
    left.hist(
        metric_values(report.controls, "rouge_l"),
        bins=bins,
        alpha=0.6,
        color="#4c72b0",
        label=f"controls ({len(report.controls.documents)})",
    )
    left.set(xlabel="Rouge-L of the greedy continuation (ids)", ylabel="documents", title="Rouge-L, targets vs controls")
    left.legend()
    _draw_roc(right, report)
    model = report.targets.model
    # folder names, not whole paths: a long path runs off the figure
    name = Path(str(model.get("path", model.get("kind", "model")))).name
    figure.suptitle(f"{name}: {Path(report.targets.data).name} vs {Path(report.controls.data).name}")
    return figure


def _draw_roc(ax: Any, report: AuditReport) -> None:
    right_seed = report.attacker.get("config", {}).get("seed")
    labels = {
        "plain": "",
        "mask_aware": f", mask-aware (seed {right_seed})",
        "mask_aware_wrong_seed": f", mask-aware (seed {report.attacker.get('wrong_seed')})",
    }
    colors = dict(zip(("loss", "zlib", "min_k", "min_k_plus_plus", "reference"), ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3")))
    for variant, attacks in report.attack_gaps().items():
        for attack, found in attacks.items():
            if found is None:
                continue
            targets = np.array([d[variant][attack] for d in report.membership_targets], dtype=np.float64)
            controls = np.array([d[variant][attack] for d in report.membership_controls], dtype=np.float64)
            fpr, tpr = roc_curve(targets[np.isfinite(targets)], controls[np.isfinite(controls)])
            ax.plot(
                fpr, tpr, linestyle=_VARIANT_STYLE[variant], color=colors[attack], label=f"{attack}{labels[variant]} (AUC {found.auc:.2f})"
            )
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
    ax.set(xlabel="false positive rate (controls flagged)", ylabel="true positive rate (targets flagged)", title="Membership inference ROC")
    ax.legend(fontsize=7, loc="lower right")
