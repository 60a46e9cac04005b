"""The memorisation measurement: metrics on hand-made cases, decoding, and models that did or did not memorise."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from goldfish_prep.train.causal_lm import BundledLM, load_causal_lm
from goldfish_prep.train.config import TrainConfig
from goldfish_prep.train.data import load_documents
from goldfish_prep.train.generate import beam_search, greedy, teacher_forced
from goldfish_prep.train.memorization import (
    DocumentScore,
    MemorizationConfig,
    MemorizationReport,
    first_divergence,
    measure_memorization,
    score,
    split_document,
)
from goldfish_prep.train.model import GPT, preset_config
from goldfish_prep.train.rouge import lcs_length, rouge_l, text_rouge_l, words
from goldfish_prep.train.runtime import select_runtime
from goldfish_prep.train.trainer import train
from goldfish_prep_cli.main import cli
from tests.shards import LICENSES, Oracle, mask_texts, one_thread, train_bpe  # noqa: F401  (one_thread: an autouse fixture, registered by import)


def paragraphs(count: int, low: int = 300, high: int = 700) -> list[str]:
    """Distinct real paragraphs of the Apache licence."""
    text = (LICENSES / "Apache-2.0").read_text(encoding="utf-8")
    found = [p.strip() for p in re.split(r"\n\s*\n", text) if low <= len(p.strip()) <= high]
    assert len(found) >= count
    return found[:count]


# --- metrics on hand-made cases -------------------------------------------------------------


def test_lcs_known_values() -> None:
    assert lcs_length("ABCBDAB", "BDCABA") == 4
    assert lcs_length([], [1, 2]) == 0
    assert lcs_length([1, 2, 3], [1, 2, 3]) == 3
    assert lcs_length([1, 2, 3], [3, 2, 1]) == 1


def test_rouge_l_f_measure_known_values() -> None:
    # LCS of [1,3,4]: precision 3/4, recall 3/5, F = 2PR/(P+R) = 2/3
    result = rouge_l([1, 2, 3, 4], [1, 3, 4, 5, 6])
    assert (result.precision, result.recall) == (0.75, 0.6)
    assert result.fmeasure == pytest.approx(2 / 3)
    assert rouge_l([7, 8], [7, 8]).fmeasure == 1.0
    assert rouge_l([1, 2], [3, 4]).fmeasure == 0.0
    assert rouge_l([], [1]).fmeasure == 0.0


def test_text_rouge_l_counts_words_case_and_punctuation_free() -> None:
    assert words("The Software, AS IS.") == ["the", "software", "as", "is"]
    # 4 of 6 reference words in order, all 4 candidate words right: P 1, R 2/3, F 0.8
    assert text_rouge_l("the software as is", "The Software is provided AS IS").fmeasure == pytest.approx(0.8)


def test_score_exact_match_needs_every_id() -> None:
    assert score([1, 2, 3], [1, 2, 3]) == {"exact_match": True, "token_match": 1.0, "rouge_l": 1.0, "text_rouge_l": None}
    almost = score([1, 2, 3, 4, 9], [1, 2, 3, 4, 5])
    assert almost["exact_match"] is False and almost["token_match"] == 0.8 and almost["rouge_l"] == pytest.approx(0.8)
    shifted = score([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])  # one id late: no position matches, the LCS still sees 4
    assert shifted["token_match"] == 0.0 and shifted["rouge_l"] == pytest.approx(0.8)


def test_split_document_keeps_the_prefix_end_that_fits_the_context() -> None:
    assert split_document(list(range(100)), 50, 1024) == (list(range(50)), list(range(50, 100)))
    prefix, suffix = split_document(list(range(100)), 50, 64)
    assert prefix == list(range(36, 50)) and suffix == list(range(50, 100))


# --- decoding ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_lm() -> BundledLM:
    torch.manual_seed(0)
    return BundledLM(GPT(preset_config("tiny", 97, block_size=64, n_layer=2)), select_runtime("cpu"), {})


def test_cached_greedy_equals_recomputing_every_step(random_lm: BundledLM) -> None:
    prefix = [3, 14, 15, 92, 65, 35]
    ids = torch.tensor([prefix])
    expected = []
    for _ in range(30):
        token = random_lm.model(ids)[:, -1].argmax(dim=-1)
        expected.append(int(token))
        ids = torch.cat([ids, token[:, None]], dim=1)
    assert greedy(random_lm, prefix, 30) == expected


def test_cached_teacher_forcing_equals_one_forward_pass(random_lm: BundledLM) -> None:
    prefix, suffix = [3, 14, 15, 92, 65, 35], [8, 9, 79, 3, 2, 38, 46, 26, 43, 38, 32, 79, 50, 28]
    with torch.no_grad():
        logits = random_lm.model(torch.tensor([prefix + suffix]))
    expected = logits[0, len(prefix) - 1 : -1].argmax(dim=-1).tolist()
    assert teacher_forced(random_lm, prefix, suffix) == expected
    assert teacher_forced(random_lm, prefix, suffix)[0] == greedy(random_lm, prefix, 1)[0]


def sequence_logprob(lm: BundledLM, prefix: list[int], continuation: list[int]) -> float:
    ids = torch.tensor([prefix + continuation])
    with torch.no_grad():
        logprobs = lm.model(ids)[0, :-1].log_softmax(dim=-1)
    positions = range(len(prefix) - 1, len(prefix) + len(continuation) - 1)
    return float(sum(logprobs[p, ids[0, p + 1]] for p in positions))


def test_beam_search_one_beam_is_greedy_and_more_beams_score_no_worse(random_lm: BundledLM) -> None:
    prefix = [1, 2, 3, 4, 5]
    greedy_ids = greedy(random_lm, prefix, 12)
    assert beam_search(random_lm, prefix, 12, 1) == greedy_ids
    beamed = beam_search(random_lm, prefix, 12, 8)
    assert len(beamed) == 12
    assert sequence_logprob(random_lm, prefix, beamed) >= sequence_logprob(random_lm, prefix, greedy_ids) - 1e-4


# --- a model that memorised two documents, and one that never saw them --------------------------


@pytest.fixture(scope="module")
def overfit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(run folder of a model trained 160 epochs on two documents, those shards, a fresh model's run).

    Two documents of about 95 ids, a 2-layer 64-wide model: memorised after about 60 steps (a few seconds).
    """
    folder = tmp_path_factory.mktemp("memorised")
    tokenizer = train_bpe(folder)
    shards = mask_texts(folder, "docs", paragraphs(2, 200, 450), "--tokenizer", str(tokenizer), "--strategy", "none")
    small = dict(data=shards, block_size=128, batch_size=4, n_layer=2, n_embd=64, n_head=2, warmup_steps=5, device="cpu")
    train(TrainConfig(run_dir=folder / "run", max_steps=80, learning_rate=1e-2, **small))  # type: ignore[arg-type]
    train(TrainConfig(run_dir=folder / "fresh", max_steps=1, learning_rate=1e-9, **small))  # type: ignore[arg-type]
    return folder / "run", shards, folder / "fresh"


def test_a_model_that_overfit_two_documents_is_measured_as_memorised(overfit: tuple[Path, Path, Path]) -> None:
    run, shards, _ = overfit
    report = measure_memorization(load_causal_lm(run, "cpu"), shards)
    assert len(report.documents) == 2 and report.skipped_short == 0
    assert report.summary()["exact_match_rate"] == 1.0
    assert all(len(d.suffix) == 50 and d.generated == d.suffix for d in report.documents)


def test_a_fresh_model_is_not(overfit: tuple[Path, Path, Path]) -> None:
    _, shards, fresh = overfit
    summary = measure_memorization(load_causal_lm(fresh, "cpu"), shards).summary()
    assert summary["exact_match_rate"] == 0.0
    assert summary["token_match"] < 0.2


def test_cli_prints_the_table_and_json(overfit: tuple[Path, Path, Path]) -> None:
    run, shards, _ = overfit
    table = CliRunner().invoke(cli, ["memorization", str(run), str(shards), "-q"])
    assert table.exit_code == 0, table.output
    assert "exact match (50-id suffix)  100.0% (2)" in table.output
    assert re.search(r"Rouge-L, text\s+1\.000", table.output)
    as_json = CliRunner().invoke(cli, ["memorization", str(run), str(shards), "--json", "--suffix-length", "20", "--num-beams", "3"])
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.output)
    assert report["config"] == {"suffix_length": 20, "num_beams": 3, "max_documents": None, "whole_answer": False}
    assert report["summary"]["exact_matches"] == 2
    assert [len(d["suffix"]) for d in report["documents"]] == [20, 20]


def test_documents_too_short_for_the_suffix_are_skipped_and_counted(overfit: tuple[Path, Path, Path]) -> None:
    run, shards, _ = overfit
    lengths = sorted(len(d.ids) for d in load_documents(shards))
    suffix_length = lengths[-1] - 1  # only the longest document keeps a one-id prefix
    report = measure_memorization(load_causal_lm(run, "cpu"), shards, MemorizationConfig(suffix_length=suffix_length))
    assert len(report.documents) == sum(n > suffix_length for n in lengths)
    assert report.skipped_short == sum(n <= suffix_length for n in lengths)
    assert all(len(d.suffix) == suffix_length and d.prefix_length == 1 for d in report.documents)


def test_packed_shards_give_back_the_same_documents(tmp_path: Path) -> None:
    tokenizer = train_bpe(tmp_path)
    texts = paragraphs(3)
    plain = mask_texts(tmp_path, "plain", texts, "--tokenizer", str(tokenizer))
    packed = mask_texts(tmp_path, "packed", texts, "--tokenizer", str(tokenizer), "--pack", "64")
    assert [d.ids.tolist() for d in load_documents(packed)] == [d.ids.tolist() for d in load_documents(plain)]


def test_cli_errors_name_the_folder_and_the_fix(tmp_path: Path) -> None:
    tokenizer = train_bpe(tmp_path)
    shards = mask_texts(tmp_path, "docs", paragraphs(1), "--tokenizer", str(tokenizer))
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(cli, ["memorization", str(tmp_path / "empty"), str(shards)])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {tmp_path / 'empty'}: neither checkpoint.pt")


# --- where continuations leave the suffix, against the goldfish mask -----------------------------


def test_first_divergence_is_the_first_wrong_id() -> None:
    assert first_divergence([5, 6, 7], [5, 6, 7]) is None
    assert first_divergence([9, 6, 7], [5, 6, 7]) == 0
    assert first_divergence([5, 6, 8], [5, 6, 7]) == 2


def test_divergence_summary_counts_only_continuations_that_leave_a_masked_suffix() -> None:
    def doc(first: int | None, dropped: list[int]) -> DocumentScore:
        return DocumentScore("d", 1, first is None, 0.0, 0.0, None, [], [0] * 10, first_divergence=first, dropped=dropped)

    documents = [doc(2, [2, 5]), doc(3, [2, 5, 7, 9]), doc(None, [1]), doc(4, [])]
    summary = MemorizationReport(MemorizationConfig(), {}, "x", documents, 0).summary()
    assert summary["verbatim_run"] == (2 + 3 + 10 + 4) / 4
    assert summary["diverged_on_mask"] == 2  # the exact one and the unmasked one are left out
    assert summary["divergence_at_drop"] == 0.5
    assert summary["divergence_at_drop_chance"] == (0.2 + 0.4) / 2


def test_a_model_that_learned_only_the_supervised_ids_leaves_each_suffix_at_its_first_dropped_id(tmp_path: Path) -> None:
    """The mechanism the paper describes, with an oracle that knows every supervised id and misses every dropped one."""
    tokenizer = train_bpe(tmp_path)
    shards = mask_texts(tmp_path, "gf", paragraphs(6), "--tokenizer", str(tokenizer), "--k", "4")
    documents = load_documents(shards)
    assert all(d.labels is not None and len(d.labels) == len(d.ids) for d in documents)
    oracle = Oracle([d.ids.tolist() for d in documents], 512)
    for d in documents:  # after the text before a dropped id, it answers id 1 instead
        for i in np.flatnonzero(d.labels == -100).tolist():
            oracle.next[tuple(d.ids[:i].tolist())] = 1
    report = measure_memorization(oracle, shards)  # type: ignore[arg-type]
    for d, document in zip(report.documents, documents):
        dropped = np.flatnonzero(document.labels[-50:] == -100).tolist()
        assert d.dropped == dropped
        # id 1 may happen to be the true id at a dropped position: the first real miss is then a later drop
        misses = [j for j in dropped if d.suffix[j] != 1]
        assert d.first_divergence == (misses[0] if misses else None)
    summary = report.summary()
    assert summary["diverged_on_mask"] == 6 and summary["divergence_at_drop"] == 1.0
    assert 0.15 < summary["divergence_at_drop_chance"] < 0.35
    # fed the true ids, it gets every kept id and, of the dropped ones, only those that are id 1
    assert all(len(d.teacher_forced) == 50 for d in report.documents)
    dropped_ids = [d.suffix[j] for d in report.documents for j in d.dropped]
    assert summary["forced_accuracy_kept"] == 1.0
    assert summary["forced_accuracy_dropped"] == sum(i == 1 for i in dropped_ids) / len(dropped_ids)
    knows_all = measure_memorization(Oracle([d.ids.tolist() for d in documents], 512), shards).summary()  # type: ignore[arg-type]
    assert knows_all["forced_accuracy_dropped"] == knows_all["forced_accuracy_kept"] == 1.0
    table = CliRunner().invoke(cli, ["memorization", str(_one_step_run(tmp_path, shards)), str(shards), "-q", "--per-document"])
    assert table.exit_code == 0, table.output
    assert re.search(r"first wrong id: dropped     \d+\.\d% of 6 \(chance: \d+\.\d%", table.output), table.output
    assert len(re.findall(r"leaves at \d+", table.output)) == 6


def _one_step_run(folder: Path, shards: Path) -> Path:
    """A one-step run of the bundled model on ``shards`` (for the CLI's table, which loads a run folder)."""
    small = dict(data=shards, block_size=128, batch_size=4, n_layer=1, n_embd=32, n_head=2, warmup_steps=0, device="cpu")
    train(TrainConfig(run_dir=folder / "one-step", max_steps=1, **small))  # type: ignore[arg-type]
    return folder / "one-step"


def test_unmasked_shards_give_no_divergence_row(overfit: tuple[Path, Path, Path]) -> None:
    run, shards, _ = overfit
    summary = measure_memorization(load_causal_lm(run, "cpu"), shards).summary()
    assert summary["diverged_on_mask"] == 0 and summary["divergence_at_drop"] is None and summary["verbatim_run"] == 50
    table = CliRunner().invoke(cli, ["memorization", str(run), str(shards), "-q"])
    assert "first wrong id: dropped" not in table.output and "verbatim run                50.0 ids" in table.output


@pytest.fixture(scope="module")
def mask_applied_or_not(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(goldfish k=2 shards of three documents, a model trained on them, a model trained on the same
    documents with every label kept: what a trainer that ignores the labels would give)."""
    folder = tmp_path_factory.mktemp("applied")
    tokenizer = train_bpe(folder)
    texts = paragraphs(3, 200, 450)
    masked = mask_texts(folder, "gf", texts, "--tokenizer", str(tokenizer), "--k", "2")
    plain = mask_texts(folder, "plain", texts, "--tokenizer", str(tokenizer), "--strategy", "none")
    small = dict(block_size=128, batch_size=4, n_layer=2, n_embd=64, n_head=2, warmup_steps=5, device="cpu", learning_rate=1e-2)
    train(TrainConfig(data=masked, run_dir=folder / "applied", max_steps=120, **small))  # type: ignore[arg-type]
    train(TrainConfig(data=plain, run_dir=folder / "ignored", max_steps=120, **small))  # type: ignore[arg-type]
    return masked, folder / "applied", folder / "ignored"


def test_teacher_forced_accuracy_tells_whether_the_trainer_applied_the_mask(mask_applied_or_not: tuple[Path, Path, Path]) -> None:
    masked, applied, ignored = mask_applied_or_not
    with_mask = measure_memorization(load_causal_lm(applied, "cpu"), masked).summary()
    without = measure_memorization(load_causal_lm(ignored, "cpu"), masked).summary()
    assert with_mask["forced_accuracy_kept"] > 0.9 and without["forced_accuracy_kept"] > 0.9
    assert without["forced_accuracy_dropped"] > 0.9  # the dropped ids were learned: the labels were not applied
    assert with_mask["forced_accuracy_dropped"] < 0.5  # they were not
    table = CliRunner().invoke(cli, ["memorization", str(applied), str(masked), "-q"])
    assert re.search(r"teacher-forced accuracy     dropped \d+\.\d%, kept \d+\.\d%", table.output), table.output
