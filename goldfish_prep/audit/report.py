"""What an audit found: the memorisation reports of targets and controls, the attack scores, and their summary.

Everything a reviewer needs is in ``to_dict`` (``--json``): the settings, every
per-document figure, and the summary the table prints. The summary is computed
from the per-document figures here, so the JSON and the table cannot disagree.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from goldfish_prep.audit.diversity import diversity
from goldfish_prep.audit.gap import Gap, gap
from goldfish_prep.audit.membership import ATTACKS
from goldfish_prep.audit.sampling import SampledDocument, SamplingConfig
from goldfish_prep.train.memorization import DocumentScore, MemorizationReport

#: the membership variants: every scored position, the attacker's recomputed kept positions, and the same under a wrong seed
VARIANTS: tuple[str, ...] = ("plain", "mask_aware", "mask_aware_wrong_seed")

#: per-document memorisation figures compared between targets and controls (higher: more like a training document)
MEMORIZATION_METRICS: tuple[str, ...] = ("exact_match", "token_match", "rouge_l", "text_rouge_l", "verbatim_run")

#: variant -> attack -> score, one per document
DocumentScores = dict[str, dict[str, float]]


def verbatim_run(document: DocumentScore) -> float:
    """Ids reproduced before the first wrong one (the whole suffix for an exact match)."""
    return float(len(document.suffix) if document.first_divergence is None else document.first_divergence)


def metric_values(report: MemorizationReport, metric: str) -> list[float]:
    """One per-document memorisation figure as floats (NaN where absent, as text Rouge-L without a tokenizer)."""
    if metric == "verbatim_run":
        return [verbatim_run(d) for d in report.documents]
    values = [getattr(d, metric) for d in report.documents]
    return [math.nan if v is None else float(v) for v in values]


@dataclasses.dataclass(frozen=True)
class AuditReport:
    targets: MemorizationReport
    controls: MemorizationReport | None
    #: per document of each side: variant -> attack -> score (empty without controls)
    membership_targets: list[DocumentScores]
    membership_controls: list[DocumentScores]
    #: the mask the mask-aware attacker recomputed (its config and the wrong seed), or why there is none
    attacker: dict[str, Any]
    reference: dict[str, Any] | None
    min_k: float
    sampling: SamplingConfig | None
    sampled_targets: list[SampledDocument]
    sampled_controls: list[SampledDocument]

    def attack_gaps(self) -> dict[str, dict[str, Gap | None]]:
        """variant -> attack -> the gap between target and control scores (None where nothing was scored)."""
        result: dict[str, dict[str, Gap | None]] = {}
        if self.controls is None:  # no controls, no membership scores to judge
            return result
        for variant in VARIANTS:
            if variant != "plain" and "config" not in self.attacker:
                continue
            result[variant] = {
                attack: gap([d[variant][attack] for d in self.membership_targets], [d[variant][attack] for d in self.membership_controls])
                for attack in ATTACKS
                if attack != "reference" or self.reference is not None
            }
        return result

    def memorization_gaps(self) -> dict[str, Gap | None]:
        """metric -> the gap between targets and controls of each memorisation figure (and sampling's best Rouge-L)."""
        if self.controls is None:
            return {}
        gaps = {metric: gap(metric_values(self.targets, metric), metric_values(self.controls, metric)) for metric in MEMORIZATION_METRICS}
        if self.sampled_targets and self.sampled_controls:
            gaps["sampled_best_rouge_l"] = gap(
                [s.best_rouge_l for s in self.sampled_targets], [s.best_rouge_l for s in self.sampled_controls]
            )
        return gaps

    def summary(self) -> dict[str, Any]:
        """The aggregate figures (what the table prints)."""
        summary: dict[str, Any] = {
            "targets": self.targets.summary(),
            "controls": self.controls.summary() if self.controls is not None else None,
            "gaps": {name: _as_dict(g) for name, g in self.memorization_gaps().items()},
            "attacks": {v: {a: _as_dict(g) for a, g in attacks.items()} for v, attacks in self.attack_gaps().items()},
            "attacker": self.attacker,
        }
        if self.sampling is not None:
            summary["sampling"] = {
                "targets": _sampled(self.sampled_targets),
                "controls": _sampled(self.sampled_controls) if self.controls else None,
            }
        if self.controls is not None:
            summary["diversity"] = {"greedy": diversity([d.generated for d in self.controls.documents])}
            if self.sampled_controls:
                summary["diversity"]["sampled"] = diversity([s for d in self.sampled_controls for s in d.samples])
        return summary

    def to_dict(self) -> dict[str, Any]:
        """Every setting, per-document figure and the summary; NaN (no score) becomes None, as JSON has no NaN."""
        result: dict[str, Any] = json_safe(
            {
                "targets": self.targets.to_dict(),
                "controls": self.controls.to_dict() if self.controls is not None else None,
                "reference_model": self.reference,
                "min_k": self.min_k,
                "sampling_config": dataclasses.asdict(self.sampling) if self.sampling is not None else None,
                "membership": {"targets": self.membership_targets, "controls": self.membership_controls},
                "sampling": {
                    "targets": [_sampled_document(s) for s in self.sampled_targets],
                    "controls": [_sampled_document(s) for s in self.sampled_controls],
                },
                "summary": self.summary(),
            }
        )
        return result


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (recursively through dicts and lists).

    >>> json_safe({"a": [1.0, float("nan")], "b": float("inf")})
    {'a': [1.0, None], 'b': None}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def _as_dict(value: Gap | None) -> dict[str, Any] | None:
    return dataclasses.asdict(value) if value is not None else None


def _sampled(documents: Sequence[SampledDocument]) -> dict[str, Any]:
    count = sum(d.extracted for d in documents)
    return {
        "documents": len(documents),
        "extracted": count,
        "extracted_rate": count / len(documents) if documents else None,
        "best_rouge_l": sum(d.best_rouge_l for d in documents) / len(documents) if documents else None,
    }


def _sampled_document(document: SampledDocument) -> dict[str, Any]:
    return {"extracted": document.extracted, "best_rouge_l": document.best_rouge_l, "samples": document.samples}
