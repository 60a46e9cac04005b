"""``goldfish-prep repeats``: render ``goldfish_prep.inspect.repeats.find_repeats`` as text or JSON."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from goldfish_prep.inspect.answers import AnswerAgreement, answer_agreement
from goldfish_prep.inspect.near_repeats import NearRepeatsReport, find_near_repeats
from goldfish_prep.inspect.repeats import RepeatedPassage, RepeatsReport, find_repeats
from goldfish_prep.tokenizers.token_bytes import needs_token_bytes

from .options import DataFolder, storage_options  # relative: mypy checks this folder as the package `cli`

#: occurrences named per passage in the text report
NAMED = 3


@click.command(context_settings={"max_content_width": 100})
@click.argument("folder", type=DataFolder())
@click.option(
    "--min-length", type=click.IntRange(min=2), default=50, show_default=True, metavar="N", help="Shortest passage reported, in tokens."
)
@click.option("--top", type=click.IntRange(min=0), default=20, show_default=True, help="How many of the most repeated passages to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (every listed occurrence, up to 20 per passage).")
@click.option(
    "--normalized",
    is_flag=True,
    help="Find passages repeated up to case, spacing, line wraps, quotes and dashes (the normalised text of the robust strategy) and compare their copies' masks.",
)
@click.option(
    "--min-chars",
    type=click.IntRange(min=2),
    default=200,
    show_default=True,
    metavar="N",
    help="With --normalized: shortest passage reported, in normalised characters.",
)
@storage_options
def repeats(folder: Path | str, min_length: int, top: int, as_json: bool, normalized: bool, min_chars: int) -> None:
    """Find passages repeated across FOLDER and show what their masks do to them.

    A passage (at least --min-length tokens) that occurs at several places is
    what a model memorises. The goldfish loss protects it only if every copy
    drops the same tokens: this command confirms that every occurrence carries
    the mask of the first from its context-width-th token on (earlier tokens
    see text before the passage), and counts the tokens dropped in every copy,
    which are never supervised in that context. With --strategy static the
    masks follow positions, not content, and the report says so. In chat
    outputs passages are searched in the assistant's answers only, and whole
    answers said more than once are checked to carry one mask from their
    first token on (the answer-local rule).

    Passages are found by hashing every window of N tokens and sorting the
    hashes (no pairwise comparison; memory grows with the number of windows,
    about 24 bytes each, more for repeated ones); equal hashes are confirmed
    token by token.

    \b
    Examples:
      goldfish-prep repeats shards/
      goldfish-prep repeats shards/ --min-length 100 --top 5
      goldfish-prep repeats shards/ --json > repeats.json
      goldfish-prep repeats shards/ --normalized --min-chars 300
    """
    if normalized:
        near = find_near_repeats(folder, min_chars=min_chars, top=top)
        click.echo(json.dumps(near.to_dict(), indent=2) if as_json else render_near(near))
        return
    report = find_repeats(folder, min_length=min_length, top=top)
    agreement = answer_agreement(folder)
    if as_json:
        result = report.to_dict()
        if agreement is not None:
            result["answers"] = dataclasses.asdict(agreement)
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(render(report) + ("" if agreement is None else "\n" + render_answers(agreement)))


def render_answers(agreement: AnswerAgreement) -> str:
    """The chat line: repeated answers and whether their copies carry one mask."""
    head = (
        f"Answers: {agreement.answers:,} in all, {agreement.distinct:,} distinct; {agreement.repeated:,} occur more than once "
        f"({agreement.copies:,} copies)"
    )
    if not agreement.repeated:
        return head
    if not agreement.differing:
        return f"{head}\n  every copy of every repeated answer carries the same mask, from its first token ({agreement.dropped_tokens:,} tokens dropped in all copies)"
    return f"{head}\n  {agreement.differing:,} repeated answers have copies whose masks differ (run `goldfish-prep verify`)"


def render(report: RepeatsReport) -> str:
    config = report.config
    lines = [
        f"{report.folder}: passages of {report.min_length}+ tokens found at two or more places "
        f"({config.strategy}, k={config.k}, context width {config.context_width})",
        f"  {report.passages:,} passages, {report.occurrences:,} occurrences; {report.covered_tokens:,} of "
        f"{report.total_tokens:,} tokens ({report.covered_tokens / max(report.total_tokens, 1):.2%}) lie in a repeated passage",
        "  " + _verdict(report),
    ]
    if report.answers is not None:
        lines += _answers(report)
    if report.collisions:
        lines.append("  (a hash collision was found and resolved by comparing tokens; the figures are exact)")
    if not report.top:
        return "\n".join(lines)
    lines.append("\nMost repeated (variants overlapping a listed passage are folded into it):")
    lines.append(f"  {'#':>3}  {'copies':>6}  {'tokens':>6}  {'dropped in all':>14}  {'supervised':>10}  masks")
    for rank, passage in enumerate(report.top, 1):
        lines += _passage(rank, passage, report.config.context_width)
    return "\n".join(lines)


def _answers(report: RepeatsReport) -> list[str]:
    return [f"  chat output: passages are searched in the {report.answers:,} answers only (the prompt is never supervised)"]


def _verdict(report: RepeatsReport) -> str:
    width = report.config.context_width
    strategy = report.config.strategy_object
    if strategy.expected_rate(report.config) == 0.0:
        return f"strategy {strategy.name}: no token is dropped, every repeated token is supervised in every copy"
    if not report.passages_differing:
        where = (
            f"once its window of {width} normalised units lies inside the passage"
            if needs_token_bytes(report.config)
            else f"after its first {width} tokens"
        )
        return f"every occurrence of every passage carries the same mask {where}: copies add no exposure"
    note = f" ({strategy.name} masks follow positions, not content)" if not strategy.content_addressed else " (run `goldfish-prep verify`)"
    return (
        f"{report.passages_differing:,} of {report.passages:,} passages have copies whose masks differ{note}:\n"
        "  together the copies supervise tokens that one copy drops"
    )


def _passage(rank: int, passage: RepeatedPassage, width: int) -> list[str]:
    masks = "same" if not passage.differing else f"{passage.differing} of {passage.count} differ"
    preview = passage.preview if len(passage.preview) <= 90 else passage.preview[:87] + "..."
    places = "; ".join(f"{o.document} @{o.position}" for o in passage.occurrences[:NAMED])
    more = f"; +{passage.count - NAMED} more" if passage.count > NAMED else ""
    return [
        f"  {rank:>3}  {passage.count:>6,}  {passage.length:>6,}  {passage.dropped_everywhere:>14,}  {passage.supervised:>10,}  {masks}",
        f'       "{preview}"',
        f"       at {places}{more}",
    ]


def render_near(report: NearRepeatsReport) -> str:
    config = report.config
    lines = [
        f"{report.folder}: passages of {report.min_chars}+ normalised characters found at two or more places "
        f"({config.strategy}, k={config.k}, context width {config.context_width})",
        f"  {report.passages:,} passages, {report.occurrences:,} occurrences; {report.passages_with_variants:,} passages "
        "have copies with other token ids (near, not exact, duplicates)",
        f"  {report.compared:,} token ends compared between copies; {report.passages_differing:,} passages have copies "
        f"whose masks differ; {report.leaked:,} tokens dropped in a first copy are supervised in another",
    ]
    if not report.top:
        return "\n".join(lines)
    lines.append("\nNear-duplicates first, then the most repeated:")
    lines.append(f"  {'#':>3}  {'copies':>6}  {'variants':>8}  {'chars':>6}  {'compared':>8}  {'leaked':>6}  masks")
    for rank, passage in enumerate(report.top, 1):
        masks = "same" if not passage.differing else f"{passage.differing} of {passage.count - 1} differ"
        preview = passage.preview if len(passage.preview) <= 90 else passage.preview[:87] + "..."
        lines += [
            f"  {rank:>3}  {passage.count:>6,}  {passage.variants:>8,}  {passage.length:>6,}  {passage.compared:>8,}  {passage.leaked:>6,}  {masks}",
            f'       "{preview}"',
            f"       in {'; '.join(passage.documents)}{'; ...' if passage.count > len(passage.documents) else ''}",
        ]
    return "\n".join(lines)
