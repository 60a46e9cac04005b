"""``goldfish-prep memorization``: parse options, run ``measure_memorization``, print a table or JSON."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from goldfish_prep.train import require_torch

from .options import DataFolder, storage_options  # relative: mypy checks this folder as the package `cli`


@click.command(context_settings={"max_content_width": 100})
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("data_dir", type=DataFolder(exists=True))
@click.option(
    "--suffix-length",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Ids at the end of each document the model must reproduce.",
)
@click.option(
    "--num-beams",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="1: greedy decoding; more: beam-search extraction attack (the paper used 30).",
)
@click.option("--max-documents", type=click.IntRange(min=1), default=None, help="Measure only the first N documents.")
@click.option(
    "--whole-answer",
    is_flag=True,
    help="Chat outputs: the suffix is the whole final answer, the prefix the conversation before it (reproduce each answer from its prompt).",
)
@click.option(
    "--tokenizer", metavar="SPEC", default=None, help="Tokenizer for text-level Rouge-L.  [default: the one in DATA_DIR's manifest]"
)
@click.option(
    "--controls",
    "controls_dir",
    type=DataFolder(exists=True),
    default=None,
    help="Audit: shards of documents of the same source the model never saw. Adds every metric for them, the gap, and the membership-inference attacks.",
)
@click.option(
    "--reference-model",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Audit: a model with the same tokenizer that never saw the targets, for the reference-ratio attack.",
)
@click.option(
    "--min-k",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.2,
    show_default=True,
    help="Share of lowest-scoring tokens Min-K% and Min-K%++ average.",
)
@click.option(
    "--samples",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Sampling extraction: continuations drawn per document (0: none).",
)
@click.option("--temperature", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True, help="Sampling temperature.")
@click.option("--top-k", type=click.IntRange(min=1), default=None, help="Sample from the K most likely ids only.")
@click.option(
    "--top-p",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Sample from the smallest set of ids of probability P (nucleus).",
)
@click.option(
    "--sample-seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the sampling (reproducible per document)."
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Audit: draw Rouge-L histograms of targets vs controls and the attacks' ROC curves into this image (needs matplotlib).",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--json", "as_json", is_flag=True, help="Print the full report (every document) as JSON.")
@click.option("--per-document", is_flag=True, help="Add a line per document to the table.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@storage_options
def memorization(model_dir: Path, data_dir: Path | str, as_json: bool, per_document: bool, quiet: bool, **options: Any) -> None:
    """Measure verbatim memorisation of the documents in DATA_DIR, as the paper does.

    MODEL_DIR is a `goldfish-prep train` run folder or a local Hugging Face
    causal-LM folder (config.json + weights). For each document the last
    --suffix-length ids are the suffix; the model continues the ids before it
    (cut to fit its context) and the continuation is compared with the suffix:
    exact match (all ids), token match (share of positions), Rouge-L over ids
    and over the decoded words. In chat outputs the suffix is the end of each
    conversation's final assistant answer and the prefix everything before it.

    Measured on the shards the model was trained on (their labels hold the
    goldfish mask), the table also says how often the continuation's first
    wrong id falls on a dropped position: the paper's sign that the mask is
    what stops verbatim reproduction. --per-document marks such ids with *.
    It also reads the suffixes with the true ids fed in: a model trained with
    the mask predicts kept ids of its training text far better than dropped
    ones; equal rates mean the trainer ignored the labels.

    Audit (docs/audit.md): --controls adds documents of the same source the
    model never saw, every figure for both, the gap, and membership-inference
    attacks (loss, zlib, Min-K%, Min-K%++, --reference-model ratio; AUC and TPR
    at 1% FPR), also scored only where the goldfish rule kept the loss, with the
    manifest's seed and a wrong one. --samples adds the sampling extraction
    attack; --plot draws Rouge-L histograms and ROC curves.

    \b
    Examples:
      goldfish-prep memorization runs/gf4 shards/
      goldfish-prep memorization runs/std control/ --num-beams 30 --json > std.json
      goldfish-prep memorization ./my-hf-model shards/ --max-documents 100
      goldfish-prep memorization runs/gf4 shards/ --controls heldout/ --samples 20 --plot audit.png
    """
    require_torch("memorization")
    from goldfish_prep.train.causal_lm import load_causal_lm
    from goldfish_prep.train.memorization import MemorizationConfig, measure_memorization, text_decoder

    config = MemorizationConfig(options["suffix_length"], options["num_beams"], options["max_documents"], options["whole_answer"])
    audit = options["controls_dir"] or options["reference_model"] or options["samples"] or options["plot"]
    if audit:
        audit_command(model_dir, data_dir, config, as_json, quiet, options)
        return
    decode, note = text_decoder(data_dir, options["tokenizer"])
    model = load_causal_lm(model_dir, options["device"])
    bar = tqdm(unit=" docs", disable=quiet or as_json, file=sys.stderr, desc="memorization")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        report = measure_memorization(model, data_dir, config, decode, progress)
    finally:
        bar.close()
    if as_json:
        _print_json(json.dumps({**report.to_dict(), "note": note}, indent=2))
        return
    click.echo(render_table(report.summary(), config.num_beams, 0 if config.whole_answer else config.suffix_length))
    if per_document:
        for doc in report.documents:
            text = f"{doc.text_rouge_l:.3f}" if doc.text_rouge_l is not None else "-"
            where = "-" if doc.first_divergence is None else f"{doc.first_divergence}{'*' if doc.first_divergence in doc.dropped else ''}"
            click.echo(
                f"  {'EXACT' if doc.exact_match else '     '} token {doc.token_match:.2f} rouge-L {doc.rouge_l:.3f} text {text}"
                f" leaves at {where:<4} {doc.doc_id}"
            )
    if note:
        click.echo(f"Note: text-level Rouge-L left out: {note}", err=True)


def audit_command(model_dir: Path, data_dir: Path | str, memorization: Any, as_json: bool, quiet: bool, options: dict[str, Any]) -> None:
    """Controls, membership inference, sampling, plot: ``run_audit``, then its table, JSON and picture."""
    from goldfish_prep.audit.plot import draw_audit, require_matplotlib
    from goldfish_prep.audit.run import AuditConfig, run_audit
    from goldfish_prep.audit.sampling import SamplingConfig
    from goldfish_prep.audit.table import render_audit
    from goldfish_prep.errors import ConfigError
    from goldfish_prep.train.causal_lm import load_causal_lm
    from goldfish_prep.train.memorization import text_decoder

    if options["plot"] is not None:
        require_matplotlib()
        if options["controls_dir"] is None:
            raise ConfigError("--plot needs --controls: the picture compares targets with controls")
    if options["samples"] == 0 and (options["top_k"] is not None or options["top_p"] is not None):
        raise ConfigError("--top-k and --top-p apply to sampling: pass --samples N")
    sampling = None
    if options["samples"]:
        sampling = SamplingConfig(options["samples"], options["temperature"], options["top_k"], options["top_p"], options["sample_seed"])
    config = AuditConfig(memorization, options["min_k"], sampling)
    decode, note = text_decoder(data_dir, options["tokenizer"])
    model = load_causal_lm(model_dir, options["device"])
    reference = load_causal_lm(options["reference_model"], options["device"]) if options["reference_model"] else None
    bar = tqdm(unit=" docs", disable=quiet or as_json, file=sys.stderr, desc="audit")

    current = [""]

    def progress(stage: str, done: int, total: int) -> None:
        if current[0] != stage:  # one bar, restarted at each stage (targets, controls, scores, samples)
            current[0] = stage
            bar.reset(total)
            bar.set_description(stage)
        bar.update(done - bar.n)

    try:
        report = run_audit(model, data_dir, options["controls_dir"], config, decode, reference, progress)
    finally:
        bar.close()
    if options["plot"] is not None:
        draw_audit(report, options["plot"])
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "note": note}, indent=2))
    else:
        click.echo(render_audit(report))
    if note:
        click.echo(f"Note: text-level Rouge-L left out: {note}", err=True)


def render_table(summary: dict[str, Any], num_beams: int, suffix_length: int) -> str:
    """The aggregate figures as a small aligned table."""
    decoding = "greedy" if num_beams == 1 else f"beam search, {num_beams} beams"
    if not summary["documents"]:
        return f"No document (or final answer) of {suffix_length} ids or more: nothing to measure ({summary['skipped_short']} too short)"

    def cell(value: float | None, percent: bool = False) -> str:
        return "-" if value is None else (f"{value:.1%}" if percent else f"{value:.3f}")

    rows = [
        ("documents", f"{summary['documents']:,} ({summary['skipped_short']:,} too short, skipped)"),
        (
            f"exact match ({suffix_length}-id suffix)" if suffix_length else "exact match (whole final answer)",
            f"{cell(summary['exact_match_rate'], True)} ({summary['exact_matches']:,})",
        ),
        ("token match", cell(summary["token_match"], True)),
        ("Rouge-L, ids", cell(summary["rouge_l"])),
        ("Rouge-L, text", cell(summary["text_rouge_l"])),
        ("verbatim run", f"{summary['verbatim_run']:.1f} ids on average (before the first wrong id)"),
    ]
    if summary["diverged_on_mask"]:
        rows.append(
            (
                "first wrong id: dropped",
                f"{cell(summary['divergence_at_drop'], True)} of {summary['diverged_on_mask']:,} "
                f"(chance: {cell(summary['divergence_at_drop_chance'], True)}, the share of dropped positions)",
            )
        )
    if summary["forced_accuracy_dropped"] is not None:
        rows.append(
            (
                "teacher-forced accuracy",
                f"dropped {cell(summary['forced_accuracy_dropped'], True)}, kept {cell(summary['forced_accuracy_kept'], True)} "
                "(argmax = true id, given the true ids before it)",
            )
        )
    width = max(len(name) for name, _ in rows)
    return "\n".join([f"Memorisation ({decoding})"] + [f"  {name:<{width}}  {value}" for name, value in rows])


def _print_json(text: str) -> None:
    """The report on standard output, flushed here so that a full disk behind a redirection is one line, not a traceback
    (the file is the shell's: an incomplete one is not valid JSON, and the exit status says it failed)."""
    from goldfish_prep.format.commit import cannot_write

    try:
        click.echo(text)
        sys.stdout.flush()
    except OSError as exc:
        sys.stdout = io.StringIO()  # what could not be written is dropped, not retried (and reported again) at exit
        raise cannot_write("the JSON report to standard output,", "the file it is redirected to", exc) from exc
