"""``goldfish-prep stats``: render ``goldfish_prep.inspect.stats.compute_stats`` as text, JSON or a plot."""

from __future__ import annotations

import errno
import io
import json
import os
from pathlib import Path
from typing import Any

import click
import numpy as np
import numpy.typing as npt

from goldfish_prep.errors import ConfigError
from goldfish_prep.format.commit import cannot_write, write_bytes_atomic
from goldfish_prep.inspect.binomial import band_limits
from goldfish_prep.inspect.stats import MaskStats, compute_stats
from goldfish_prep.tokenizers.optional import import_for

from .options import DataFolder, storage_options  # relative: mypy checks this folder as the package `cli`

#: flagged documents listed in the text report (--json lists all)
LISTED = 15


@click.command(context_settings={"max_content_width": 100})
@click.argument("folder", type=DataFolder())
@click.option(
    "--json", "as_json", is_flag=True, help="Print everything as JSON, with one entry per document (id, tokens, eligible, dropped, rate)."
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE.png",
    help="Also draw the rates into an image (needs Matplotlib: pip install 'goldfish-prep[plot]').",
)
@click.option(
    "--band",
    type=click.FloatRange(0.5, 0.999999),
    default=0.999,
    show_default=True,
    help="Level of the binomial band that flags documents.",
)
@click.option("--bins", type=click.IntRange(2, 200), default=20, show_default=True, help="Histogram bars.")
@click.option(
    "--tokenizer",
    metavar="SPEC",
    default=None,
    help="Chat outputs: the tokenizer whose special tokens are never dropped, if the one in the manifest moved.",
)
@storage_options
def stats(folder: Path | str, as_json: bool, plot: Path | None, band: float, bins: int, tokenizer: str | None) -> None:
    """Overall and per-document mask rates of a masked output FOLDER.

    A rate is dropped / eligible tokens, where eligible positions are those the
    strategy could drop (goldfish, hash-table: every position from the
    context width on). Each document's dropped count is compared with the
    binomial band expected for its number of eligible positions; documents
    outside it are listed by id (repeated text inside a document is the usual
    cause). Packed outputs (--pack) have no documents: figures are per row.
    Chat outputs are rated over the assistant's tokens (the prompt is -100 but
    not dropped), per k when rows carry their own (--k-field), and answers of
    2 to 12 tokens get a line of their own.

    \b
    Examples:
      goldfish-prep stats shards/
      goldfish-prep stats shards/ --json > stats.json
      goldfish-prep stats shards/ --plot rates.png
      goldfish-prep stats s3://bucket/shards/       # AWS_* credentials, or --storage-options
    """
    if plot is not None:
        import_for("matplotlib", "plot", "--plot")  # before the shards are read, not after
        if not plot.parent.is_dir():  # nor is a mistyped folder found only after them
            raise cannot_write("the plot", plot, FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT)))
    result = compute_stats(folder, band, tokenizer)
    if plot is not None and not len(result.rates):
        click.echo(f"Note: no plot written: no {result.unit} has an eligible position", err=True)
        plot = None
    if plot is not None:
        draw(result, plot)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    click.echo(render(result))
    if plot is not None:
        click.echo(f"\nPlot written to {plot}")


def render(result: MaskStats) -> str:
    """The text report: summary, percentiles, histogram, flagged units."""
    config, unit = result.config, result.unit
    counts = result.manifest.counts
    low, high = result.overall_band()
    lines = [
        f"{result.folder}: strategy {config.strategy}, k={config.k}, context width {config.context_width}, seed {config.seed}",
    ]
    if result.packed:
        lines.append(f"packed output (rows of {result.manifest.pack} ids): figures below are per packed row, not per document")
    lines += [
        f"  documents  {counts.get('documents_written', 0):>14,}   ({counts.get('documents_read', 0):,} read, {counts.get('documents_skipped', 0):,} skipped)",
        f"  tokens     {int(result.tokens.sum()):>14,}",
        f"  eligible   {int(result.eligible.sum()):>14,}   {_share(result.eligible.sum(), result.tokens.sum())} of all tokens: {_eligible_rule(result)}",
        f"  dropped    {int(result.dropped.sum()):>14,}   {_share(result.dropped.sum(), result.tokens.sum())} of all tokens",
        f"  drop rate  {result.overall_rate:>14.2%}   of eligible; expected {result.expected_rate:.2%}, "
        f"{result.band_level:.1%} band {low:.2%} to {high:.2%}: {'inside' if low <= result.overall_rate <= high else 'OUTSIDE'}",
    ]
    if not low <= result.overall_rate <= high and result.config.strategy_object.random_draws:
        lines.append("             (the band assumes independent decisions: duplicated text repeats its decisions,")
        lines.append("             so a corpus with much of it strays further; see `goldfish-prep repeats`)")
    warning = result.coverage.warning(config)
    if warning:
        lines.append(f"  {warning}")
    lines += _chat_lines(result)
    if result.column_disagreements:
        lines.append(
            f"  warning: {result.column_disagreements} rows' num_tokens/num_dropped columns disagree with their lists; run `goldfish-prep verify`"
        )
    rated = len(result.rates)
    if not rated:
        lines.append(f"\nNo {unit} has an eligible position: nothing to rate.")
        return "\n".join(lines)
    lines.append(f"\nPer-{unit} drop rate ({rated:,} {unit}s with eligible positions):")
    lines.append("  " + "  ".join(f"{name} {value:.2%}" for name, value in result.percentiles().items()))
    lines += _histogram(result)
    lines += _flagged(result)
    return "\n".join(lines)


def _chat_lines(result: MaskStats) -> list[str]:
    """Chat outputs: the assistant share, the rate per k (a --k-field run) and the short answers' rate."""
    if result.chat is None:
        return []
    assistant = int(result.chat.assistant.sum())
    lines = [
        f"  assistant  {assistant:>14,}   {_share(assistant, result.tokens.sum())} of all tokens; the rest (prompt, markup) is -100 and not rated"
    ]
    for group in result.chat.by_k(result.eligible, result.dropped, result.band_level):
        label = f"k={group['k']}" if group["k"] else "k=0 (standard loss)"
        if result.chat.per_row_k:
            rate = "-" if group["rate"] is None else f"{group['rate']:.2%}"
            band = "" if group["rate_band"] is None else f", band {group['rate_band'][0]:.2%} to {group['rate_band'][1]:.2%}"
            lines.append(
                f"  {label:<20} {group['units']:>7,} {result.unit}s  {group['dropped']:>10,} of {group['eligible']:>10,} eligible: {rate} (expected {group['expected_rate']:.2%}{band})"
            )
        short = group.get("short_answers")
        if short:
            lines.append(
                f"  short answers ({short['lengths'][0]}-{short['lengths'][1]} tokens{', ' + label if result.chat.per_row_k else ''}): "
                f"{short['answers']:,} answers, {short['dropped']:,} of {short['eligible']:,} eligible dropped: {short['rate']:.2%} "
                f"(band {short['rate_band'][0]:.2%} to {short['rate_band'][1]:.2%})"
            )
    return lines


def _eligible_rule(result: MaskStats) -> str:
    if result.chat is not None:
        return "assistant tokens, less special tokens and --keep-ids"
    return result.config.strategy_object.eligible_rule(result.config)


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.2%}" if whole else "0%"


def _histogram(result: MaskStats, width: int = 40) -> list[str]:
    rates = result.rates
    if rates.min() == rates.max():
        return [f"  every {result.unit} has the same rate, {rates[0]:.2%}"]
    edges, counts, below, above = result.histogram()
    peak = max(int(counts.max(initial=0)), 1)
    lines = [""]
    if below:
        lines.append(f"  {'< ' + format(edges[0], '.1%'):>13}  {below}")
    for i, count in enumerate(counts.tolist()):
        bar = "█" * round(width * count / peak) or ("▏" if count else "")
        marker = (
            "  ◀ expected"
            if edges[i] <= result.expected_rate < edges[i + 1] or (i == len(counts) - 1 and result.expected_rate == edges[-1])
            else ""
        )
        lines.append(f"  {edges[i]:6.1%}-{edges[i + 1]:6.1%}  {bar} {count}{marker}")
    if above:
        lines.append(f"  {'> ' + format(edges[-1], '.1%'):>13}  {above}")
    return lines


def _flagged(result: MaskStats) -> list[str]:
    unit, flagged = result.unit, result.flagged
    level = f"{result.band_level:.1%}"
    if not len(flagged):
        return [f"\nAll {unit}s lie inside the {level} binomial band for their eligible positions."]
    chance = (1 - result.band_level) * len(result.rates)
    lines = [
        f"\n{len(flagged)} {unit}(s) outside the {level} binomial band for their eligible positions (about {chance:.1f} expected by chance):"
    ]
    low, high = band_limits(result.eligible[flagged[:LISTED]], result.expected_rate, result.band_level)
    width = min(max(len(result.names[i]) for i in flagged[:LISTED]), 60)
    lines.append(f"  {'id':<{width}}  {'eligible':>9}  {'dropped':>8}  {'rate':>7}  band")
    for index, lo, hi in zip(flagged[:LISTED].tolist(), low.tolist(), high.tolist()):
        name = result.names[index]
        name = name if len(name) <= width else "..." + name[-width + 3 :]
        rate = result.dropped[index] / result.eligible[index] if result.eligible[index] else float("nan")
        lines.append(f"  {name:<{width}}  {result.eligible[index]:>9,}  {result.dropped[index]:>8,}  {rate:>7.2%}  {lo}-{hi}")
    if len(flagged) > LISTED:
        lines.append(f"  ... and {len(flagged) - LISTED} more (all are in --json under 'flagged')")
    return lines


def draw(result: MaskStats, path: Path) -> None:
    """Two panels: the distribution of rates, and rate against eligible positions with the band."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import PercentFormatter
    except ImportError as exc:
        raise ConfigError(
            "--plot needs the Python package 'matplotlib', which is not installed. Fix: pip install 'goldfish-prep[plot]'"
        ) from exc
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    has = result.eligible > 0
    rates, eligible = result.dropped[has] / np.maximum(result.eligible[has], 1), result.eligible[has]
    left.hist(rates, bins=40, color="#4c72b0")
    left.axvline(result.expected_rate, color="#c44e52", linestyle="--", label=f"expected {result.expected_rate:.1%}")
    left.axvline(result.overall_rate, color="black", linewidth=1, label=f"overall {result.overall_rate:.2%}")
    left.set(xlabel=f"drop rate (dropped / eligible) per {result.unit}", ylabel=f"{result.unit}s", title="Distribution of mask rates")
    left.xaxis.set_major_formatter(PercentFormatter(1.0))
    left.legend()
    _draw_band(right, result, rates, eligible)
    figure.suptitle(f"{result.folder}: {result.config.strategy}, k={result.config.k}, context width {result.config.context_width}")
    image = io.BytesIO()  # drawn in memory, then committed whole: a full disk leaves no truncated image
    figure.savefig(image, dpi=120, format=path.suffix.lstrip(".").lower() or "png")
    plt.close(figure)
    try:
        write_bytes_atomic(path, image.getvalue(), unique=False)
    except OSError as exc:
        raise cannot_write("the plot", path, exc) from exc


def _draw_band(ax: Any, result: MaskStats, rates: npt.NDArray[np.float64], eligible: npt.NDArray[np.int64]) -> None:
    from matplotlib.ticker import PercentFormatter

    inside = ~np.isin(np.flatnonzero(result.eligible > 0), result.flagged)
    ax.scatter(eligible[inside], rates[inside], s=8, alpha=0.5, color="#4c72b0", label=f"{result.unit}s")
    ax.scatter(eligible[~inside], rates[~inside], s=18, color="#c44e52", label=f"outside the band ({int((~inside).sum())})")
    if len(eligible):
        grid = np.unique(np.geomspace(max(int(eligible.min()) // 2, 1), max(int(eligible.max()) * 2, 2), 120).astype(np.int64))
        band_low, band_high = band_limits(grid, result.expected_rate, result.band_level)
        ax.fill_between(
            grid, band_low / grid, band_high / grid, color="#dd8452", alpha=0.25, label=f"{result.band_level:.1%} binomial band"
        )
    ax.axhline(result.expected_rate, color="#c44e52", linestyle="--", linewidth=1)
    low, high = min(float(rates.min(initial=1.0)), result.expected_rate), max(float(rates.max(initial=0.0)), result.expected_rate)
    pad = max(high - low, 0.02) * 0.1
    ax.set(
        xscale="log",
        ylim=(low - pad, high + pad),
        xlabel=f"eligible positions per {result.unit}",
        ylabel="drop rate",
        title="Rate against length",
    )
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.legend(loc="best")
