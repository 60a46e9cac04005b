"""``goldfish-prep verify``: run ``goldfish_prep.inspect.verify.verify_folder`` and turn its report into an exit code."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from tqdm import tqdm

from goldfish_prep.errors import VerifyError
from goldfish_prep.inspect.shard_check import ShardCheck
from goldfish_prep.inspect.verify import VerifyReport, verify_folder

from .options import DataFolder, storage_options  # relative: mypy checks this folder as the package `cli`

#: problems printed before the Error line (the count covers all of them)
LISTED = 20


@click.command(context_settings={"max_content_width": 100})
@click.argument("folder", type=DataFolder())
@click.option("--num-proc", type=click.IntRange(min=1), default=1, show_default=True, help="Worker processes (one shard each at a time).")
@click.option(
    "--retokenize",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    help="Also re-encode a sample of N documents from the recorded inputs (if unchanged) with the tokenizer's reference engine and compare the ids.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar; print only problems, or one line when all holds.")
@click.option(
    "--tokenizer",
    metavar="SPEC",
    default=None,
    help="Chat outputs: the tokenizer whose special tokens are never dropped, if the one in the manifest moved.",
)
@storage_options
def verify(folder: Path | str, num_proc: int, quiet: bool, retokenize: int, tokenizer: str | None) -> None:
    """Prove that FOLDER is intact and its masks are the ones its config makes.

    Recomputes every mask from input_ids with the config recorded in the
    manifest and compares it with labels (a label is -100 where the token is
    dropped and equals the input id everywhere else), checks each shard's
    checksums (sha256, and xxh3-128 where the manifest records it), row and
    token counts against the manifest, and that the manifest's
    counts add up (documents read = written + skipped). Exit code 0 when all
    holds; otherwise 1, with the shard, row and position of the first
    mismatches. In chat outputs a label must be -100 off the assistant's
    tokens (assistant_masks 0) and the answer-local mask is recomputed answer
    by answer.

    \b
    Examples:
      goldfish-prep verify shards/
      goldfish-prep verify shards/ --num-proc 8
      goldfish-prep verify shards/ -q && echo intact
      goldfish-prep verify shards/ --retokenize 100   # ids re-encoded from the sources too
    """
    with tqdm(unit="tok", unit_scale=True, disable=quiet or not sys.stderr.isatty(), file=sys.stderr, desc="verify") as bar:

        def advance(check: ShardCheck) -> None:
            bar.update(check.tokens)

        report = verify_folder(folder, num_proc=num_proc, on_shard=advance, tokenizer=tokenizer)
    if report.ok:
        click.echo(summary(report))
        if retokenize:
            check_retokenized(folder, retokenize)
        return
    for problem in report.problems[:LISTED]:
        click.echo(f"  {problem}")
    if len(report.problems) > LISTED:
        click.echo(f"  ... and {len(report.problems) - LISTED} more")
    located = [problem for problem in report.problems if " row " in problem.where]
    raise VerifyError(
        f"{folder} failed verification: {len(report.problems)} problem(s), first: {(located or list(report.problems))[0]}. "
        "Recreate it: rerun the `goldfish-prep mask` command that made it with --resume (it redoes every shard "
        "whose checksum fails) or with --overwrite"
    )


def check_retokenized(folder: Path | str, n: int) -> None:
    """Print the ``--retokenize`` result; differences (or nothing comparable) are a ``VerifyError``."""
    from goldfish_prep.inspect.retokenize import retokenize_sample

    result = retokenize_sample(folder, n)
    if result.unavailable is not None:
        raise VerifyError(
            f"{folder}: --retokenize could not compare: {result.unavailable}. Fix: run it where the recorded inputs and tokenizer are"
        )
    for difference in result.differences[:LISTED]:
        click.echo(f"  {difference}")
    if result.differences or result.not_found:
        missing = (
            f"; {len(result.not_found)} sampled document(s) not found in the inputs (first {result.not_found[0]})"
            if result.not_found
            else ""
        )
        raise VerifyError(
            f"{folder}: {len(result.differences)} of {result.compared} re-encoded documents have other ids than the "
            f"{result.engine} reference{missing}. Fix: recreate the output with `goldfish-prep mask --tokenizer-backend hf`"
        )
    extra = f", {result.pretokenized} pre-tokenized skipped" if result.pretokenized else ""
    click.echo(
        f"Retokenized {result.compared} of {result.sampled} sampled documents from the inputs with {result.engine}: identical ids{extra}."
    )


def summary(report: VerifyReport) -> str:
    config = report.config
    layout = "packed rows" if report.packed else "documents"
    if report.chat:
        return (
            f"OK: {report.folder}: {len(report.shards)} shard(s), {report.total('documents'):,} conversations in "
            f"{report.total('rows'):,} rows ({layout}), {report.total('tokens'):,} tokens, {report.total('assistant'):,} the assistant's, "
            f"{report.total('dropped'):,} dropped.\nChecksums, counts and every label match assistant_masks and the answer-local "
            f"masks (k={config.k}{', or each row k' if report.k_field else ''}, context width {config.context_width}, seed {config.seed}) recomputed from input_ids."
        )
    return (
        f"OK: {report.folder}: {len(report.shards)} shard(s), {report.total('documents'):,} documents in "
        f"{report.total('rows'):,} rows ({layout}), {report.total('tokens'):,} tokens, {report.total('dropped'):,} dropped.\n"
        f"Checksums, counts and every label match the {config.strategy} masks "
        f"(k={config.k}, context width {config.context_width}, seed {config.seed}) recomputed from input_ids."
    )
