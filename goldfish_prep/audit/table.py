"""The audit as a terminal table: targets and controls side by side, the gaps, the attacks, sampling, diversity.

Rendering only: every number comes from ``AuditReport.summary()``, so the table
and ``--json`` agree. Columns stay within about 100 characters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from goldfish_prep.audit.report import AuditReport

_METRIC_NAMES = {
    "exact_match": "exact match",
    "token_match": "token match",
    "rouge_l": "Rouge-L, ids",
    "text_rouge_l": "Rouge-L, text",
    "verbatim_run": "verbatim run (ids)",
    "sampled_best_rouge_l": "best sampled Rouge-L",
}
_ATTACK_NAMES = {
    "loss": "loss",
    "zlib": "zlib ratio",
    "min_k": "min-k% prob",
    "min_k_plus_plus": "min-k%++",
    "reference": "reference ratio",
}


def number(value: float | None, percent: bool = False) -> str:
    """A figure, '-' when absent.

    >>> number(0.5), number(0.5, True), number(None), number(float("nan"))
    ('0.500', '50.0%', '-', '-')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.1%}" if percent else f"{value:.3f}"


def _rows(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]]


def render_audit(report: AuditReport) -> str:
    """The whole audit table."""
    summary = report.summary()
    config = report.targets.config
    decoding = "greedy" if config.num_beams == 1 else f"beam search, {config.num_beams} beams"
    lines = [f"Audit ({decoding}, {config.suffix_length}-id suffix)"]
    lines += _side_by_side(summary)
    if summary["gaps"]:
        lines += ["", "Gap per document (targets > controls' p95: 5% = chance; AUC: 0.5 = chance)"]
        lines += _gap_rows(summary["gaps"], _METRIC_NAMES)
    if summary["attacks"]:
        lines += ["", *_attack_rows(report, summary)]
    if "sampling" in summary:
        lines += ["", *_sampling_rows(report, summary["sampling"])]
    if "diversity" in summary:
        lines += ["", *_diversity_rows(summary["diversity"])]
    return "\n".join(lines)


def _side_by_side(summary: dict[str, Any]) -> list[str]:
    sides = [("targets", summary["targets"])] + ([("controls", summary["controls"])] if summary["controls"] else [])

    def cells(key: str, percent: bool = False) -> tuple[str, ...]:
        return tuple(number(s[key], percent) for _, s in sides)

    rows = [
        ("documents", *(f"{s['documents']:,} ({s['skipped_short']:,} short)" for _, s in sides)),
        ("exact match", *(f"{number(s['exact_match_rate'], True)} ({s['exact_matches']:,})" for _, s in sides)),
        ("token match", *cells("token_match", True)),
        ("Rouge-L, ids", *cells("rouge_l")),
        ("Rouge-L, text", *cells("text_rouge_l")),
        ("verbatim run (ids)", *(f"{s['verbatim_run']:.1f}" if s["verbatim_run"] is not None else "-" for _, s in sides)),
    ]
    return _rows(("", *(name for name, _ in sides)), rows)


def _gap_rows(gaps: dict[str, Any], names: dict[str, str]) -> list[str]:
    rows = []
    for key, value in gaps.items():
        if value is None:
            rows.append((names.get(key, key), "-", "-", "-", "-", "-"))
            continue
        rows.append(
            (
                names.get(key, key),
                number(value["median_targets"]),
                number(value["median_controls"]),
                number(value["above_control_percentile"], True),
                number(value["auc"]),
                number(value["tpr_at_1pct_fpr"], True),
            )
        )
    return _rows(("metric", "median targets", "median controls", "> controls' p95", "AUC", "TPR@1%FPR"), rows)


def _attack_rows(report: AuditReport, summary: dict[str, Any]) -> list[str]:
    attacks = summary["attacks"]
    attacker = summary["attacker"]
    heads = {"plain": "every position"}
    if "config" in attacker:
        heads["mask_aware"] = f"mask-aware, seed {attacker['config']['seed']}"
        heads["mask_aware_wrong_seed"] = f"mask-aware, seed {attacker['wrong_seed']}"
    variants = [v for v in heads if v in attacks]
    rows = []
    for attack in attacks["plain"]:
        name = _ATTACK_NAMES[attack] + (f" (k={report.min_k:.0%})" if attack.startswith("min_k") else "")
        cells = []
        for variant in variants:
            gap = attacks[variant][attack]
            cells.append("-" if gap is None else f"{number(gap['auc'])} / {number(gap['tpr_at_1pct_fpr'], True)}")
        rows.append((name, *cells))
    controls = report.controls.summary()["documents"] if report.controls is not None else 0
    lines = [
        f"Membership inference: AUC / TPR at 1% FPR (chance: 0.500 / 1%; {controls} controls"
        + (", so 1% FPR allows no false positive)" if controls < 100 else ")")
    ]
    lines += _rows(("attack", *(heads[v] for v in variants)), rows)
    if "skipped" in attacker:
        lines.append(f"  mask-aware attacker: not measured ({attacker['skipped']})")
    if "seed_note" in attacker:
        lines.append(f"  note: {attacker['seed_note']}")
    return lines


def _sampling_rows(report: AuditReport, sampling: dict[str, Any]) -> list[str]:
    config = report.sampling
    assert config is not None
    truncation = f", top-k {config.top_k}" if config.top_k else (f", top-p {config.top_p}" if config.top_p else "")
    sides = [("targets", sampling["targets"])] + ([("controls", sampling["controls"])] if sampling["controls"] else [])
    rows = [
        (">= 1 verbatim suffix", *(f"{number(s['extracted_rate'], True)} ({s['extracted']:,})" for _, s in sides)),
        ("best Rouge-L, mean", *(number(s["best_rouge_l"]) for _, s in sides)),
    ]
    head = (
        f"Sampling extraction ({config.samples} samples per document, temperature {config.temperature:g}{truncation}, seed {config.seed})"
    )
    return [head, *_rows(("", *(name for name, _ in sides)), rows)]


def _diversity_rows(diversity: dict[str, Any]) -> list[str]:
    kinds = list(diversity)
    rows = [
        ("distinct-2", *(number(diversity[k]["distinct_2"]) for k in kinds)),
        ("distinct-3", *(number(diversity[k]["distinct_3"]) for k in kinds)),
        ("repetition rate (seq-rep-4)", *(number(diversity[k]["repetition_rate"]) for k in kinds)),
    ]
    return ["Diversity of continuations of the controls' prefixes", *_rows(("", *kinds), rows)]
