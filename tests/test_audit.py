"""The privacy audit: its statistics on hand-computed cases, and real tiny models trained on repeated targets."""

from __future__ import annotations

import itertools
import json
import math
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from goldfish_prep.audit.diversity import distinct_n, diversity, repetition_rate
from goldfish_prep.audit.gap import gap
from goldfish_prep.audit.mask_attack import kept_in_window, recompute_drops, wrong_seed
from goldfish_prep.audit.membership import TokenStats, lowest_mean, membership_scores
from goldfish_prep.audit.roc import roc_auc, roc_curve, tpr_at_fpr
from goldfish_prep.audit.run import AuditConfig, attacker_view, resample, run_audit
from goldfish_prep.audit.sampling import SamplingConfig, sample_document
from goldfish_prep.audit.token_stats import token_stats
from goldfish_prep.errors import ConfigError
from goldfish_prep.format.manifest import load_manifest
from goldfish_prep.tokenizers.token_bytes import recorded_table
from goldfish_prep.train.causal_lm import BundledLM, load_causal_lm
from goldfish_prep.train.config import TrainConfig
from goldfish_prep.train.data import load_documents
from goldfish_prep.train.generate import draw, greedy, sample
from goldfish_prep.train.model import GPT, preset_config
from goldfish_prep.train.runtime import select_runtime
from goldfish_prep.train.trainer import train
from goldfish_prep_cli.main import cli
from tests.shards import mask_texts, one_thread, train_bpe  # noqa: F401  (one_thread: an autouse fixture, registered by import)
from tests.test_memorization import paragraphs

# --- ROC statistics, exact on hand cases ------------------------------------------------------


def brute_auc(targets: list[int], controls: list[int]) -> Fraction:
    """Every (target, control) pair: 1 when the target scores above, 1/2 on a tie."""
    wins = sum(Fraction(1) if t > c else Fraction(1, 2) if t == c else Fraction(0) for t, c in itertools.product(targets, controls))
    return wins / (len(targets) * len(controls))


def brute_tpr(targets: list[int], controls: list[int], fpr: Fraction) -> Fraction:
    """The best TPR over every threshold (each score, and one above them all) flagging at most ``fpr`` of the controls."""
    best = Fraction(0)
    for threshold in set(targets) | set(controls) | {max(targets + controls) + 1}:
        if Fraction(sum(c >= threshold for c in controls), len(controls)) <= fpr:
            best = max(best, Fraction(sum(t >= threshold for t in targets), len(targets)))
    return best


def test_auc_counts_ties_as_one_half() -> None:
    assert roc_auc([3, 4], [1, 2]) == 1.0 and roc_auc([1, 2], [3, 4]) == 0.0
    assert roc_auc([1, 3], [1, 2]) == 0.625  # pairs: tie (1/2), loss, win, win
    assert roc_auc([5, 5, 5], [5, 5]) == 0.5
    assert roc_auc([2], [1, 2, 3]) == 0.5  # one below, one tie, one above


def test_auc_and_tpr_equal_brute_force_on_tied_integer_scores() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        targets = rng.integers(0, 6, rng.integers(1, 12)).tolist()
        controls = rng.integers(0, 6, rng.integers(1, 12)).tolist()
        assert roc_auc(targets, controls) == float(brute_auc(targets, controls))
        for fpr in (Fraction(0), Fraction(1, 100), Fraction(1, 4), Fraction(1, 2)):
            assert tpr_at_fpr(targets, controls, float(fpr)) == float(brute_tpr(targets, controls, fpr))


def test_tpr_at_one_percent_fpr_by_hand() -> None:
    assert tpr_at_fpr([5, 4, 1], [3, 2, 1, 0]) == 2 / 3  # threshold 4: no control, two targets
    # 200 controls 0..199: 1% FPR allows two of them (198, 199), so the threshold may go down to 197.5 but not to 197
    assert tpr_at_fpr([198.5, 197.5, 150.0], list(range(200))) == 2 / 3
    # a tie between a target and a control cannot be split: flagging the target flags the control
    assert tpr_at_fpr([3, 3], [3, 0], fpr=0.5) == 1.0
    assert tpr_at_fpr([3, 3], [3, 0], fpr=0.25) == 0.0


def test_roc_curve_runs_from_nothing_to_everything_and_its_area_is_the_auc() -> None:
    targets, controls = [0.9, 0.7, 0.7, 0.2], [0.7, 0.3, 0.1]
    fpr, tpr = roc_curve(targets, controls)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids: a tie is a diagonal, worth one half
    assert area == pytest.approx(roc_auc(targets, controls)) and roc_auc(targets, controls) == float(brute_auc([9, 7, 7, 2], [7, 3, 1]))


def test_roc_refuses_missing_scores() -> None:
    with pytest.raises(ConfigError, match="finite"):
        roc_auc([1.0, math.nan], [0.0])
    with pytest.raises(ConfigError, match="at least one target"):
        tpr_at_fpr([], [0.0])


def test_gap_medians_and_share_above_the_controls_95th_percentile() -> None:
    # controls 0..99: the 95th percentile (linear interpolation) is 94.05; targets above it: 95 and 99
    result = gap([99, 95, 50, 10], list(range(100)))
    assert result is not None
    assert (result.median_targets, result.median_controls, result.above_control_percentile) == (72.5, 49.5, 0.5)
    assert gap([math.nan], [1.0]) is None


# --- membership scores by hand -------------------------------------------------------------


def test_membership_scores_by_hand() -> None:
    stats = TokenStats(np.array([-1.0, -3.0, -0.5, -2.0]), np.array([-2.0, -2.0, -1.0, -2.0]), np.array([1.0, 2.0, 0.5, 0.0]))
    scores = membership_scores(stats, 10, reference=np.array([-2.0, -4.0, -1.0, -3.0]), k=0.5)
    assert scores["loss"] == -1.625  # mean NLL (1 + 3 + 0.5 + 2) / 4
    assert scores["zlib"] == -0.1625  # NLL / 10 compressed bytes
    assert scores["min_k"] == -2.5  # the two lowest: -3, -2
    # standardised: (−1+2)/1 = 1, (−3+2)/2 = −0.5, (−0.5+1)/0.5 = 1, sigma 0 -> 0; the two lowest: −0.5, 0
    assert scores["min_k_plus_plus"] == -0.25
    assert scores["reference"] == -1.625 / 2.5
    kept = membership_scores(stats, 10, keep=np.array([True, False, True, False]), k=0.5)
    assert kept["loss"] == -0.75 and kept["min_k"] == -1.0 and math.isnan(kept["reference"])
    assert all(math.isnan(v) for v in membership_scores(stats, 10, keep=np.zeros(4, np.bool_)).values())
    assert lowest_mean(np.array([-4.0, 0.0, -1.0]), 0.2) == -4.0  # at least one value


def test_token_statistics_equal_the_model_distribution_computed_by_hand() -> None:
    torch.manual_seed(0)
    lm = BundledLM(GPT(preset_config("tiny", 61, block_size=32, n_layer=1, n_embd=32, n_head=2)), select_runtime("cpu"), {})
    window = [5, 17, 3, 3, 42, 8, 60, 1]
    stats = token_stats(lm, window)
    with torch.no_grad():
        logprobs = lm.model(torch.tensor([window]))[0, :-1].double().log_softmax(dim=-1)
    assert stats.logprob == pytest.approx([float(logprobs[t, window[t + 1]]) for t in range(len(window) - 1)], abs=1e-5)
    probs = logprobs.exp()
    mean = (probs * logprobs).sum(-1)
    std = ((probs * (logprobs - mean[:, None]) ** 2).sum(-1)).sqrt()
    assert stats.mean == pytest.approx(mean.tolist(), abs=1e-5)
    assert stats.std == pytest.approx(std.tolist(), abs=1e-5)


# --- diversity ------------------------------------------------------------------------------------


def test_distinct_n_and_repetition_by_hand() -> None:
    assert distinct_n([[1, 2, 3, 1, 2, 3]], 2) == 3 / 5  # (1,2) (2,3) (3,1) (1,2) (2,3)
    assert distinct_n([[1, 2, 3], [1, 2, 3]], 3) == 0.5  # the same continuation after two prompts
    assert repetition_rate([[9, 9, 9, 9, 9, 9]]) == pytest.approx(2 / 3)  # three 4-grams, all (9,9,9,9)
    assert repetition_rate([list(range(10))]) == 0.0
    assert math.isnan(distinct_n([[1]], 2)) and diversity([[1, 2, 3, 4]])["distinct_3"] == 1.0


# --- sampling -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_lm() -> BundledLM:
    torch.manual_seed(1)
    return BundledLM(GPT(preset_config("tiny", 53, block_size=48, n_layer=1, n_embd=32, n_head=2)), select_runtime("cpu"), {})


def test_sampling_is_reproducible_per_document_and_top_k_1_is_greedy(random_lm: BundledLM) -> None:
    prefix, suffix = [4, 8, 15, 16], [23, 42, 1, 2, 3, 4]
    config = SamplingConfig(samples=6, temperature=1.3, seed=5)
    first, again = sample_document(random_lm, prefix, suffix, config, 3), sample_document(random_lm, prefix, suffix, config, 3)
    assert first.samples == again.samples and len(first.samples) == 6 and all(len(s) == 6 for s in first.samples)
    assert sample_document(random_lm, prefix, suffix, config, 4).samples != first.samples
    greedy_ids = greedy(random_lm, prefix, 6)
    assert sample(random_lm, prefix, 6, 3, top_k=1) == [greedy_ids] * 3
    reached = sample_document(random_lm, prefix, greedy_ids, SamplingConfig(samples=2, top_k=1), 0)
    assert reached.extracted and reached.best_rouge_l == 1.0


def test_top_p_keeps_the_smallest_set_that_reaches_p() -> None:
    logprobs = torch.tensor([[0.5, 0.3, 0.2]]).log().expand(4000, -1)
    generator = torch.Generator().manual_seed(0)
    drawn = draw(logprobs, 1.0, None, 0.6, generator)  # 0.5 < 0.6, so the second id is needed too; the third never
    counts = torch.bincount(drawn, minlength=3).tolist()
    assert counts[2] == 0 and 0.55 < counts[0] / 4000 < 0.70  # 0.5 / 0.8 = 0.625
    assert set(draw(logprobs, 1.0, None, 0.5, generator).tolist()) == {0}


def test_sampling_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="pass one of them"):
        SamplingConfig(top_k=5, top_p=0.9)
    with pytest.raises(ConfigError, match="temperature"):
        SamplingConfig(temperature=0.0)


# --- the attacker's mask is the shards' mask -------------------------------------------------------


@pytest.mark.parametrize(
    "options", [("--k", "3"), ("--k", "2", "--seed", "11"), ("--strategy", "robust", "--k", "4", "--context-width", "5")]
)
def test_the_attacker_recomputes_the_training_mask_from_ids_and_manifest(tmp_path: Path, options: tuple[str, ...]) -> None:
    tokenizer = train_bpe(tmp_path)
    shards = mask_texts(tmp_path, "gf", paragraphs(4), "--tokenizer", str(tokenizer), *options)
    manifest = load_manifest(shards)
    table = recorded_table(manifest.mask, manifest.tokenizer)
    for document in load_documents(shards):
        drops = recompute_drops(document.ids, manifest.mask, table)
        assert drops.tolist() == (document.labels == -100).tolist()
        assert drops.tolist() != recompute_drops(document.ids, wrong_seed(manifest.mask), table).tolist()
        assert kept_in_window(drops, 30).tolist() == (document.labels[-29:] != -100).tolist()


def test_the_attacker_view_says_when_a_strategy_ignores_the_seed(tmp_path: Path) -> None:
    tokenizer = train_bpe(tmp_path)
    seeded = attacker_view(load_manifest(mask_texts(tmp_path, "gf", paragraphs(1), "--tokenizer", str(tokenizer), "--seed", "9")))[0]
    assert seeded["config"]["seed"] == 9 and seeded["wrong_seed"] == 10 and "seed_note" not in seeded
    fixed = attacker_view(
        load_manifest(mask_texts(tmp_path, "ht", paragraphs(1), "--tokenizer", str(tokenizer), "--strategy", "hash-table"))
    )[0]
    assert fixed["seed_note"].startswith("strategy 'hash-table' gives the same mask under every seed")
    plain = attacker_view(load_manifest(mask_texts(tmp_path, "none", paragraphs(1), "--tokenizer", str(tokenizer), "--strategy", "none")))[
        0
    ]
    assert "skipped" in plain and "config" not in plain


# --- real tiny models: a standard one that saw its targets 100 times, a goldfish one, a fresh one ---------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Seven target paragraphs (standard and goldfish k=2 shards), seven control paragraphs of the same licence the
    models never saw, a 2-layer 64-wide model trained on each target set, and an untrained reference."""
    folder = tmp_path_factory.mktemp("audit")
    tokenizer = train_bpe(folder)
    texts = paragraphs(14, 200, 700)
    paths = {
        "standard": mask_texts(folder, "standard", texts[::2], "--tokenizer", str(tokenizer), "--strategy", "none"),
        "goldfish": mask_texts(folder, "goldfish", texts[::2], "--tokenizer", str(tokenizer), "--k", "2"),
        "controls": mask_texts(folder, "controls", texts[1::2], "--tokenizer", str(tokenizer), "--strategy", "none"),
    }
    small = dict(block_size=128, batch_size=4, n_layer=2, n_embd=64, n_head=2, warmup_steps=5, device="cpu", learning_rate=1e-2)
    for name, steps in (("standard", 200), ("goldfish", 120)):
        train(TrainConfig(data=paths[name], run_dir=folder / f"run-{name}", max_steps=steps, **small))  # type: ignore[arg-type]
        paths[f"run-{name}"] = folder / f"run-{name}"
    train(TrainConfig(data=paths["controls"], run_dir=folder / "reference", max_steps=1, **small))  # type: ignore[arg-type]
    paths["reference"] = folder / "reference"
    return paths


def test_the_standard_models_targets_stand_apart_from_the_controls(trained: dict[str, Path]) -> None:
    config = AuditConfig(sampling=SamplingConfig(samples=3, seed=1))
    report = run_audit(load_causal_lm(trained["run-standard"], "cpu"), trained["standard"], trained["controls"], config)
    assert len(report.targets.documents) == len(report.controls.documents) == 7  # type: ignore[union-attr]
    attacks = report.attack_gaps()
    assert set(attacks) == {"plain"}  # standard shards: no goldfish rule for a mask-aware attacker
    for attack in ("loss", "zlib", "min_k", "min_k_plus_plus"):
        found = attacks["plain"][attack]
        assert found is not None and found.auc >= 0.9, (attack, found)
    rouge = report.memorization_gaps()["rouge_l"]
    assert rouge is not None and rouge.median_targets > rouge.median_controls
    assert report.summary()["sampling"]["targets"]["documents"] == 7
    assert len(report.sampled_controls) == 7 and all(len(d.samples) == 3 for d in report.sampled_controls)


def test_resampling_at_another_temperature_equals_a_whole_audit_at_it(trained: dict[str, Path]) -> None:
    model = load_causal_lm(trained["run-goldfish"], "cpu")
    hot, cold = SamplingConfig(samples=3, temperature=1.0), SamplingConfig(samples=3, temperature=0.3)
    first = run_audit(model, trained["goldfish"], trained["controls"], AuditConfig(sampling=hot))
    again = resample(model, first, trained["goldfish"], trained["controls"], cold)
    whole = run_audit(model, trained["goldfish"], trained["controls"], AuditConfig(sampling=cold))
    assert again.to_dict() == whole.to_dict()
    assert [d.samples for d in again.sampled_targets] != [d.samples for d in first.sampled_targets]  # it did sample again


def test_the_experiments_audit_an_arm_at_both_temperatures_and_tabulate_it(trained: dict[str, Path], tmp_path: Path) -> None:
    """experiments/_audit_common.py, which the memorisation and pretraining experiments share: one audit per
    arm, samples drawn again per temperature, and the tables of docs/audit.md printed from its result."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "experiments"))
    try:
        from _audit_common import AUDIT_SAMPLES, AUDIT_TEMPERATURES, audit_arm, audit_tables, spec_version
    finally:
        sys.path.pop(0)
    torch.set_num_threads(2)  # the one_thread fixture sets 1 again afterwards
    audit = audit_arm(trained["run-goldfish"], trained["goldfish"], trained["controls"], "cpu", tmp_path / "audit-goldfish")
    assert list(audit["sampling"]) == [f"{t:g}" for t in AUDIT_TEMPERATURES] == ["0.7", "1"]
    assert torch.get_num_threads() == 2  # it audits on one thread, then restores the count it found
    report = json.loads((tmp_path / "audit-goldfish.json").read_text())
    assert report["sampling_config"]["temperature"] == AUDIT_TEMPERATURES[-1] and report["sampling_config"]["samples"] == AUDIT_SAMPLES
    assert (tmp_path / "audit-goldfish.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert audit["attacks"]["mask_aware"]["loss"]["auc"] == report["summary"]["attacks"]["mask_aware"]["loss"]["auc"]
    tables = audit_tables([{"arm": "goldfish k=2", "spec_version": spec_version(trained["goldfish"]), "audit": audit}])
    rows = [line for line in tables.splitlines() if line.startswith("| goldfish k=2 |")]
    assert [r.split(" | ")[1] for r in rows] == [
        "2",
        "plain",
        "mask-aware, right seed (0)",
        "mask-aware, wrong seed (1)",
        "greedy",
        "0.7",
        "1",
    ]


def test_cli_audit_prints_json_and_draws_the_plot(trained: dict[str, Path], tmp_path: Path) -> None:
    plot = tmp_path / "audit.png"
    arguments = ["memorization", str(trained["run-goldfish"]), str(trained["goldfish"]), "--controls", str(trained["controls"])]
    extra = ["--reference-model", str(trained["reference"]), "--samples", "2", "--top-k", "20", "--plot", str(plot), "--json"]
    result = CliRunner().invoke(cli, arguments + extra)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output, parse_constant=pytest.fail)  # NaN is not JSON: unscored values must be null
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = report["summary"]
    assert summary["attacker"]["config"]["k"] == 2 and summary["attacker"]["wrong_seed"] == 1
    assert set(summary["attacks"]) == {"plain", "mask_aware", "mask_aware_wrong_seed"}
    assert all(0.0 <= summary["attacks"][v]["reference"]["auc"] <= 1.0 for v in summary["attacks"])
    assert report["sampling_config"] == {"samples": 2, "temperature": 1.0, "top_k": 20, "top_p": None, "seed": 0}
    assert set(summary["diversity"]) == {"greedy", "sampled"}
    table = CliRunner().invoke(cli, arguments + ["-q"])
    assert table.exit_code == 0, table.output
    assert "Membership inference: AUC / TPR at 1% FPR" in table.output and "mask-aware, seed 1" in table.output


def test_the_plot_has_the_rouge_l_histograms_and_one_roc_curve_per_attack_and_attacker(trained: dict[str, Path], tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    from goldfish_prep.audit.plot import audit_figure, draw_audit

    report = run_audit(load_causal_lm(trained["run-goldfish"], "cpu"), trained["goldfish"], trained["controls"])
    figure = audit_figure(report)
    try:
        histograms, roc = figure.axes
        assert histograms.get_title() == "Rouge-L, targets vs controls" and roc.get_title() == "Membership inference ROC"
        assert [len(c) for c in histograms.containers] == [20, 20]  # two histograms of 20 bins each
        assert [t.get_text().split(" (")[0] for t in histograms.get_legend().get_texts()] == ["targets", "controls"]
        curves = [line.get_label() for line in roc.get_lines()][:-1]  # the last line is the chance diagonal
        assert len(curves) == 3 * 4  # loss, zlib, min-k%, min-k%++; plain, mask-aware with seed 0 and with seed 1
        assert {c.split(",")[0].split(" (")[0] for c in curves} == {"loss", "zlib", "min_k", "min_k_plus_plus"}
        assert sum("mask-aware (seed 0)" in c for c in curves) == sum("mask-aware (seed 1)" in c for c in curves) == 4
        fpr, tpr = roc.get_lines()[0].get_data()
        assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    finally:
        plt.close(figure)
    draw_audit(report, tmp_path / "audit.png")
    assert (tmp_path / "audit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.get_fignums()  # draw_audit closed its figure


def test_sampling_alone_needs_no_controls(trained: dict[str, Path]) -> None:
    arguments = [str(trained["run-standard"]), str(trained["standard"]), "--samples", "2", "--top-p", "0.9", "--max-documents", "3", "-q"]
    result = CliRunner().invoke(cli, ["memorization", *arguments])
    assert result.exit_code == 0, result.output
    assert "Sampling extraction (2 samples per document, temperature 1, top-p 0.9, seed 0)" in result.output
    assert "controls" not in result.output and "Membership inference" not in result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--plot", "x.png"], "Error: --plot needs --controls: the picture compares targets with controls"),
        (
            ["--samples", "0", "--top-p", "0.9", "--controls", "{controls}"],
            "Error: --top-k and --top-p apply to sampling: pass --samples N",
        ),
        (["--reference-model", "{reference}"], "Error: --reference-model needs --controls"),
    ],
)
def test_cli_audit_errors_are_one_line(trained: dict[str, Path], extra: list[str], message: str) -> None:
    arguments = [a.format(controls=trained["controls"], reference=trained["reference"]) for a in extra]
    result = CliRunner().invoke(cli, ["memorization", str(trained["run-standard"]), str(trained["standard"]), "-q", *arguments])
    assert result.exit_code == 1 and result.output.startswith(message), result.output
    assert "Traceback" not in result.output


def test_plot_without_matplotlib_names_the_extra(trained: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    arguments = [str(trained["run-standard"]), str(trained["standard"]), "--controls", str(trained["controls"]), "--plot", "x.png"]
    result = CliRunner().invoke(cli, ["memorization", *arguments])
    assert result.exit_code == 1
    assert result.output == "Error: --plot needs matplotlib, which is not installed; pip install 'goldfish-prep[plot]'\n"


def test_controls_with_another_tokenizer_are_refused(trained: dict[str, Path], tmp_path: Path) -> None:
    other = mask_texts(tmp_path, "other", paragraphs(2))  # the default tokenizer, cl100k_base
    result = CliRunner().invoke(
        cli, ["memorization", str(trained["run-standard"]), str(trained["standard"]), "--controls", str(other), "-q"]
    )
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {other}: the controls were tokenized with"), result.output
