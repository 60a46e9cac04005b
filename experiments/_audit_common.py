"""The privacy audit of an experiment's arms (issue 21), shared by the memorisation and pretraining experiments.

Each arm's model is audited as ``goldfish-prep memorization RUN TARGETS --controls CONTROLS
--samples 20 --temperature T`` would audit it, at T = 0.7 and 1.0: greedy memorisation of targets
and controls, every membership attack plain and mask-aware (the manifest's seed and a wrong one),
sampling extraction and distinct-n. The tables of docs/audit.md are printed from the rows this
returns, so a result file regenerates them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

#: the arms of the privacy audit: standard, goldfish and robust at k = 4, at the default spec version
AUDIT_ARMS = "standard,goldfish k=4,robust k=4"
#: sampling attacks of the audit: N samples per document at each temperature (no top-k / top-p)
AUDIT_SAMPLES = 20
AUDIT_TEMPERATURES = (0.7, 1.0)

#: the attacks of the audit table, in order, with their column names
AUDIT_ATTACKS = {"loss": "loss", "zlib": "zlib", "min_k": "min-k%", "min_k_plus_plus": "min-k%++"}
AUDIT_VARIANTS = {"plain": "plain", "mask_aware": "mask-aware, right seed", "mask_aware_wrong_seed": "mask-aware, wrong seed"}


def spec_version(shards: Path) -> Any:
    """The mask spec version the manifest records (None for strategies without one)."""
    mask = json.loads((shards / "goldfish_manifest.json").read_text())["mask"]
    return mask.get("spec_version")


def audit_arm(run_dir: Path, shards: Path, controls: Path, device: str, out: Path) -> dict[str, Any]:
    """The audit of ``memorization RUN SHARDS --controls CONTROLS --samples 20 --temperature T`` at each temperature.

    Greedy continuations and membership scores do not depend on the temperature: they are computed
    once, and only the samples are drawn again per temperature (``resample``). The last
    temperature's full report goes to ``out``.json and its picture to ``out``.png (what the
    command's --json and --plot write). ``shards`` must carry the arm's mask in its manifest: the
    mask-aware attacker reads the rule from it."""
    import torch

    # one thread: an audit is many small forward passes (one id at a time, batches of 20 samples), and on
    # a busy 2-core machine a second thread only waits: a 48-document audit at both temperatures took
    # 746 s on torch's default 2 threads, 93 s on one (load average about 7 both times)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _audit(run_dir, shards, controls, device, out)
    finally:
        torch.set_num_threads(threads)


def _audit(run_dir: Path, shards: Path, controls: Path, device: str, out: Path) -> dict[str, Any]:
    from goldfish_prep.audit.plot import draw_audit
    from goldfish_prep.audit.run import AuditConfig, resample, run_audit
    from goldfish_prep.audit.sampling import SamplingConfig
    from goldfish_prep.train.causal_lm import load_causal_lm
    from goldfish_prep.train.memorization import text_decoder

    decode, _ = text_decoder(shards)
    model = load_causal_lm(run_dir, device)
    started = time.perf_counter()
    configs = [SamplingConfig(samples=AUDIT_SAMPLES, temperature=t, seed=0) for t in AUDIT_TEMPERATURES]
    report = run_audit(model, shards, controls, AuditConfig(sampling=configs[0]), decode=decode)
    seconds = {"greedy, scores and first sampling": time.perf_counter() - started}
    sampling: dict[str, Any] = {}
    for index, config in enumerate(configs):
        if index:
            begun = time.perf_counter()
            report = resample(model, report, shards, controls, config)
            seconds[f"sampling at T = {config.temperature:g}"] = time.perf_counter() - begun
        summary = report.summary()
        sampling[f"{config.temperature:g}"] = {**summary["sampling"], "diversity": summary["diversity"]["sampled"]}
    out.with_suffix(".json").write_text(json.dumps(report.to_dict(), indent=1) + "\n", encoding="utf-8")
    draw_audit(report, out.with_suffix(".png"))
    return {
        "targets": summary["targets"],
        "controls": summary["controls"],
        "gaps": summary["gaps"],
        "attacks": summary["attacks"],
        "attacker": summary["attacker"],
        "greedy_diversity": summary["diversity"]["greedy"],
        "sampling": sampling,
        "seconds": time.perf_counter() - started,
        "stage_seconds": seconds,
    }


def audit_tables(rows: list[dict[str, Any]]) -> str:
    """The Markdown tables of docs/audit.md: memorisation against controls, every attack's AUC, sampling and diversity.

    ``rows``: one per arm, with ``arm``, ``spec_version`` (None for the standard arm) and ``audit`` (``audit_arm``'s result)."""
    lines = [
        "| arm | spec | exact match, targets | exact match, controls | Rouge-L ids, median targets / controls | Rouge-L AUC |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        audit = row["audit"]
        rouge = audit["gaps"]["rouge_l"]
        targets, controls = audit["targets"], audit["controls"]
        lines.append(
            f"| {row['arm']} | {row.get('spec_version') or '-'} | {targets['exact_match_rate']:.1%} ({targets['exact_matches']}/{targets['documents']}) | "
            f"{controls['exact_match_rate']:.1%} ({controls['exact_matches']}/{controls['documents']}) | "
            f"{rouge['median_targets']:.3f} / {rouge['median_controls']:.3f} | {rouge['auc']:.3f} |"
        )
    lines += [
        "",
        "| arm | attacker | " + " | ".join(f"{name} AUC / TPR@1%FPR" for name in AUDIT_ATTACKS.values()) + " |",
        "|---|---|" + "---|" * len(AUDIT_ATTACKS),
    ]
    for row in rows:
        for variant, label in AUDIT_VARIANTS.items():
            attacks = row["audit"]["attacks"].get(variant)
            if attacks is None:
                continue
            cells = [f"{attacks[a]['auc']:.3f} / {attacks[a]['tpr_at_1pct_fpr']:.1%}" if attacks.get(a) else "-" for a in AUDIT_ATTACKS]
            seed = (
                row["audit"]["attacker"].get("config", {}).get("seed")
                if variant == "mask_aware"
                else row["audit"]["attacker"].get("wrong_seed")
            )
            label = f"{label} ({seed})" if variant != "plain" else label
            lines.append(f"| {row['arm']} | {label} | " + " | ".join(cells) + " |")
    header = (
        f"| arm | T | >= 1 verbatim suffix in {AUDIT_SAMPLES}, targets | controls | best Rouge-L, targets / controls "
        "| distinct-2 / distinct-3 (controls' prefixes) |"
    )
    lines += ["", header, "|---|---|---|---|---|---|"]
    for row in rows:
        greedy = row["audit"]["greedy_diversity"]
        lines.append(f"| {row['arm']} | greedy | - | - | - | {greedy['distinct_2']:.3f} / {greedy['distinct_3']:.3f} |")
        for temperature, found in row["audit"]["sampling"].items():
            t, c, d = found["targets"], found["controls"], found["diversity"]
            lines.append(
                f"| {row['arm']} | {temperature} | {t['extracted_rate']:.1%} ({t['extracted']}/{t['documents']}) | "
                f"{c['extracted_rate']:.1%} ({c['extracted']}/{c['documents']}) | {t['best_rouge_l']:.3f} / {c['best_rouge_l']:.3f} | "
                f"{d['distinct_2']:.3f} / {d['distinct_3']:.3f} |"
            )
    return "\n".join(lines)
