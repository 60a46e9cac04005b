"""Run an audit: memorisation on targets and controls, membership scores, sampling; one ``AuditReport``.

The cost per document: the paper's greedy (or beam) continuation of the suffix,
one forward pass for the membership scores (two with a reference model), and,
with sampling, ``samples`` continuations drawn as one batch. Every document is
read through ``memorization.select_documents``, so targets and controls are cut
and filtered exactly as the memorisation protocol cuts them.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from goldfish_prep.audit.mask_attack import attacker_keeps, seed_matters, wrong_seed
from goldfish_prep.audit.membership import membership_scores
from goldfish_prep.audit.report import AuditReport, DocumentScores
from goldfish_prep.audit.sampling import SampledDocument, SamplingConfig, sample_document
from goldfish_prep.audit.token_stats import reference_logprobs, scored_window, token_stats
from goldfish_prep.config import MaskConfig
from goldfish_prep.errors import ConfigError, InputError
from goldfish_prep.format.manifest import Manifest, load_manifest
from goldfish_prep.tokenizers.token_bytes import recorded_table
from goldfish_prep.train.causal_lm import CausalLM
from goldfish_prep.train.data import Document
from goldfish_prep.train.memorization import Decoder, MemorizationConfig, measure_documents, prefix_and_suffix, select_documents

#: (stage, documents done, documents in the stage)
Progress = Callable[[str, int, int], None]


@dataclasses.dataclass(frozen=True)
class AuditConfig:
    memorization: MemorizationConfig = MemorizationConfig()
    #: the share of lowest-scoring positions Min-K% and Min-K%++ average
    min_k: float = 0.2
    #: the sampling attack, or None for greedy/beam only
    sampling: SamplingConfig | None = None

    def __post_init__(self) -> None:
        if not 0 < self.min_k <= 1:
            raise ConfigError(f"--min-k must lie in (0, 1], got {self.min_k}")


def run_audit(
    model: CausalLM,
    data_dir: str | Path,
    controls_dir: str | Path | None,
    config: AuditConfig = AuditConfig(),
    decode: Decoder | None = None,
    reference: CausalLM | None = None,
    progress: Progress | None = None,
) -> AuditReport:
    """Audit ``model`` on the target documents of ``data_dir`` against the controls of ``controls_dir``."""
    manifest = load_manifest(data_dir)
    if controls_dir is None and reference is not None:
        raise ConfigError("--reference-model needs --controls: a membership score is judged against documents the model never saw")
    targets, skipped = select_documents(model, data_dir, config.memorization)
    report = measure_documents(model, targets, skipped, str(data_dir), config.memorization, decode, _stage(progress, "targets"))
    controls: list[Document] = []
    control_report = None
    if controls_dir is not None:
        _check_same_tokenizer(manifest, load_manifest(controls_dir))
        controls, skipped = select_documents(model, controls_dir, config.memorization)
        control_report = measure_documents(
            model, controls, skipped, str(controls_dir), config.memorization, decode, _stage(progress, "controls")
        )
    attacker, attack_config = attacker_view(manifest)
    scorer = _MembershipScorer(model, reference, attack_config, config.min_k, decode)
    scored = (
        (scorer.score(targets, _stage(progress, "scores, targets")), scorer.score(controls, _stage(progress, "scores, controls")))
        if controls_dir
        else ([], [])
    )
    sampled: tuple[list[SampledDocument], list[SampledDocument]] = ([], [])
    if config.sampling is not None:
        sampled = (
            _sample(model, targets, config, _stage(progress, "samples, targets")),
            _sample(model, controls, config, _stage(progress, "samples, controls")),
        )
    return AuditReport(
        targets=report,
        controls=control_report,
        membership_targets=scored[0],
        membership_controls=scored[1],
        attacker=attacker,
        reference=reference.description if reference is not None else None,
        min_k=config.min_k,
        sampling=config.sampling,
        sampled_targets=sampled[0],
        sampled_controls=sampled[1],
    )


def resample(
    model: CausalLM,
    report: AuditReport,
    data_dir: str | Path,
    controls_dir: str | Path | None,
    sampling: SamplingConfig,
    memorization: MemorizationConfig | None = None,
) -> AuditReport:
    """``report`` with its sampling attack drawn again under ``sampling`` (another temperature, say).

    Greedy continuations and membership scores do not depend on the sampling settings, so an audit
    at several temperatures computes them once and only samples again: the result equals
    ``run_audit`` with ``sampling`` (same documents, same per-document generators) at the cost of
    the samples alone. ``memorization`` must be the settings ``report`` was made with (default: the defaults).
    """
    memorization = memorization or MemorizationConfig()
    config = AuditConfig(memorization=memorization, min_k=report.min_k, sampling=sampling)
    targets, _ = select_documents(model, data_dir, memorization)
    controls = select_documents(model, controls_dir, memorization)[0] if controls_dir is not None else []
    return dataclasses.replace(
        report,
        sampling=sampling,
        sampled_targets=_sample(model, targets, config, None),
        sampled_controls=_sample(model, controls, config, None),
    )


def _stage(progress: Progress | None, name: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(name, done, total)


def _check_same_tokenizer(data: Manifest, controls: Manifest) -> None:
    ours, theirs = data.tokenizer.get("fingerprint"), controls.tokenizer.get("fingerprint")
    if ours and theirs and ours != theirs:
        raise InputError(
            str(controls.folder),
            f"the controls were tokenized with {controls.tokenizer.get('spec')!r}, the targets with {data.tokenizer.get('spec')!r}",
            "Mask the control documents with the targets' tokenizer",
            "tokenizer-mismatch",
        )


def attacker_view(manifest: Manifest) -> tuple[dict[str, Any], tuple[MaskConfig, MaskConfig, Any] | None]:
    """What the mask-aware attacker knows: the targets' recorded mask rule (and a wrong seed), or why it has nothing."""
    config = manifest.mask
    if manifest.is_chat:
        return {"skipped": "chat outputs: the attacker would need each conversation's answer spans; not measured"}, None
    if config.strategy_object.expected_rate(config) == 0:
        return {"skipped": f"the targets' shards are masked with strategy {config.strategy!r}: no goldfish rule to exploit"}, None
    table = recorded_table(config, manifest.tokenizer)
    wrong = wrong_seed(config)
    view: dict[str, Any] = {"config": config.to_dict(), "wrong_seed": wrong.seed}
    if not seed_matters(config, table):
        view["seed_note"] = f"strategy {config.strategy!r} gives the same mask under every seed: a secret seed hides nothing"
    return view, (config, wrong, table)


class _MembershipScorer:
    """Per-document scores under every variant: one forward pass of the model (and of the reference) per document."""

    def __init__(
        self,
        model: CausalLM,
        reference: CausalLM | None,
        attack: tuple[MaskConfig, MaskConfig, Any] | None,
        k: float,
        decode: Decoder | None,
    ) -> None:
        self.model, self.reference, self.attack, self.k, self.decode = model, reference, attack, k, decode
        self.window = min(model.context_length, reference.context_length) if reference is not None else model.context_length

    def score(self, documents: Sequence[Document], progress: Callable[[int, int], None] | None) -> list[DocumentScores]:
        windows = [scored_window(d.ids.tolist(), self.window) for d in documents]
        keeps: dict[str, list[Any]] = {}
        if self.attack is not None:
            right, wrong, table = self.attack
            lengths = [len(w) for w in windows]
            keeps["mask_aware"] = attacker_keeps([d.ids for d in documents], lengths, right, table)
            keeps["mask_aware_wrong_seed"] = attacker_keeps([d.ids for d in documents], lengths, wrong, table)
        results = []
        for index, window in enumerate(windows):
            stats = token_stats(self.model, window)
            ref = reference_logprobs(self.reference, window) if self.reference is not None else None
            size = self._compressed_size(window)
            scores = {"plain": membership_scores(stats, size, ref, None, self.k)}
            for variant, keep in keeps.items():
                scores[variant] = membership_scores(stats, size, ref, keep[index], self.k)
            results.append(scores)
            if progress is not None:
                progress(index + 1, len(windows))
        return results

    def _compressed_size(self, window: list[int]) -> int:
        """zlib size of the scored text in bytes: the decoded text, or the ids as uint32 when no tokenizer is at hand."""
        raw = self.decode(window).encode("utf-8") if self.decode is not None else np.asarray(window, dtype="<u4").tobytes()
        return len(zlib.compress(raw))


def _sample(
    model: CausalLM, documents: Sequence[Document], config: AuditConfig, progress: Callable[[int, int], None] | None
) -> list[SampledDocument]:
    assert config.sampling is not None
    results = []
    for index, document in enumerate(documents):
        prefix, suffix = prefix_and_suffix(document, config.memorization, model.context_length)
        results.append(sample_document(model, prefix, suffix, config.sampling, index))
        if progress is not None:
            progress(index + 1, len(documents))
    return results
