"""``goldfish-prep show``: render ``goldfish_prep.inspect.document.load_document`` for a terminal, a pipe or a browser."""

from __future__ import annotations

import html
import sys
from pathlib import Path

import click

from goldfish_prep.format.commit import cannot_write, write_bytes_atomic
from goldfish_prep.inspect.document import DocumentView, load_document

from .options import DataFolder, storage_options  # relative: mypy checks this folder as the package `cli`

OPEN, CLOSE = "\u27e6", "\u27e7"  # ⟦ ⟧: cannot be mistaken for text in most corpora
BOUNDARY = "\u2016"  # ‖ where a packed document begins
PROMPT_OPEN, PROMPT_CLOSE = "\u27ea", "\u27eb"  # ⟪ ⟫ around prompt runs of chat outputs (not the assistant's: -100, not dropped)
_VISIBLE = str.maketrans({" ": "\u00b7", "\n": "\u21b5", "\t": "\u2192", "\r": ""})  # dropped whitespace made visible


@click.command(context_settings={"max_content_width": 100})
@click.argument("folder", type=DataFolder())
@click.option("--id", "doc_id", default=None, help="The document's id (the `id` column).")
@click.option("--row", type=click.IntRange(min=0), default=None, help="The row number, from 0 across all shards in order.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Also write the document as a web page with dropped tokens highlighted.",
)
@click.option(
    "--color/--no-color",
    default=None,
    help="Colour dropped tokens (default: when printing to a terminal; otherwise they are marked \u27e6like this\u27e7).",
)
@click.option(
    "--tokenizer",
    metavar="SPEC",
    default=None,
    help="Tokenizer to show the text with, if the one recorded in the manifest cannot be loaded here.",
)
@storage_options
def show(
    folder: Path | str, doc_id: str | None, row: int | None, html_path: Path | None, color: bool | None, tokenizer: str | None
) -> None:
    """Show one document of FOLDER with its dropped tokens highlighted.

    Dropped tokens (label -100: left out of the loss) are coloured on a
    terminal and marked \u27e6like this\u27e7 when the output is piped; dropped
    whitespace is made visible (\u00b7 space, \u21b5 newline). In packed outputs
    pick a row; \u2016 marks where a document begins. In chat outputs the
    prompt (system, user and tool turns, template markup), which is -100 but
    not dropped, is dimmed on a terminal and marked \u27easo\u27eb otherwise.

    \b
    Examples:
      goldfish-prep show shards/ --row 0
      goldfish-prep show shards/ --id 'corpus/a.jsonl line 17'
      goldfish-prep show shards/ --row 3 --html doc.html
    """
    if (doc_id is None) == (row is None):
        raise click.UsageError("name one document: --id ID or --row N")
    view = load_document(folder, doc_id=doc_id, row=row, tokenizer=tokenizer)
    use_color = sys.stdout.isatty() if color is None else color
    if view.note:
        click.echo(f"Note: {view.note}", err=True)
    style = "coloured" if use_color else f"marked {OPEN}like this{CLOSE}"
    if view.assistant is not None:
        style += "; prompt tokens (not the assistant's) " + ("dimmed" if use_color else f"marked {PROMPT_OPEN}like this{PROMPT_CLOSE}")
    click.echo(header(view, style))
    click.echo(body(view, use_color), color=use_color)
    if html_path is not None:
        try:
            write_bytes_atomic(html_path, page(view).encode("utf-8"), unique=False)
        except OSError as exc:
            raise cannot_write("the web page", html_path, exc) from exc
        click.echo(f"\nWeb page written to {html_path}")


def header(view: DocumentView, style: str) -> str:
    """Where the document is and what its mask did, in two lines."""
    place = view.shard if view.name == f"row {view.row}" else f"row {view.row} in {view.shard}"
    place += f", source {view.source}" if view.source else ""
    if view.is_packed:
        counts = f"{view.num_tokens:,} tokens, {view.num_dropped:,} dropped, {view.padding:,} padding; {len(view.doc_starts)} document(s) begin here ({BOUNDARY})"
    else:
        rate = f" ({view.num_dropped / view.eligible:.2%} of {view.eligible:,} eligible)" if view.eligible else ""
        counts = f"{view.num_tokens:,} tokens, {view.num_dropped:,} dropped{rate}"
    if view.assistant is not None:
        counts += f"; {view.num_tokens - view.num_prompt:,} assistant tokens, {view.num_prompt:,} prompt"
    config = view.config
    return (
        f"{view.name}  [{place}]\n{counts}; {config.strategy} k={config.k} context width {config.context_width}; dropped tokens {style}\n"
    )


def _texts(view: DocumentView) -> list[str]:
    if view.pieces is not None:
        return view.pieces
    return [f"{token} " for token in view.ids.tolist()]


def _visible(text: str) -> tuple[str, str]:
    """A dropped token as shown, and the line breaks to print after its marker (so lines stay lines)."""
    core = text.rstrip("\r\n")
    breaks = text[len(core) :].count("\n")
    return (core if core.strip() else core.translate(_VISIBLE)) + "\u21b5" * breaks, "\n" * breaks


def _prompt_flags(view: DocumentView) -> list[bool]:
    return [False] * view.num_tokens if view.assistant is None else (~view.assistant).tolist()


def body(view: DocumentView, color: bool) -> str:
    """The tokens in order, dropped ones coloured or marked, prompt runs dimmed or bracketed."""
    starts = set(view.doc_starts.tolist()) if view.is_packed else set()
    out: list[str] = []
    in_prompt = False
    for position, (text, dropped, prompt) in enumerate(zip(_texts(view), view.dropped.tolist(), _prompt_flags(view))):
        if position in starts:
            out.append(click.style(BOUNDARY, fg="cyan", bold=True) if color else BOUNDARY)
        if prompt != in_prompt and not color:
            out.append(PROMPT_OPEN if prompt else PROMPT_CLOSE)
        in_prompt = prompt
        if dropped:
            visible, after = _visible(text)
            out.append((click.style(visible, fg="white", bg="red") if color else f"{OPEN}{visible}{CLOSE}") + after)
        else:
            out.append(click.style(text, dim=True) if color and prompt else text)
    if in_prompt and not color:
        out.append(PROMPT_CLOSE)
    return "".join(out)


def page(view: DocumentView) -> str:
    """A self-contained web page; hovering a dropped token shows its position and id."""
    starts = set(view.doc_starts.tolist()) if view.is_packed else set()
    spans: list[str] = []
    for position, (text, token, dropped, prompt) in enumerate(
        zip(_texts(view), view.ids.tolist(), view.dropped.tolist(), _prompt_flags(view))
    ):
        if position in starts:
            spans.append(f'<span class="b" title="a document begins at {position}">{BOUNDARY}</span>')
        if dropped:
            visible, after = _visible(text)
            spans.append(f'<mark title="position {position}, id {token}">{html.escape(visible)}</mark>{after}')
        elif prompt:
            spans.append(f'<span class="p">{html.escape(text)}</span>')
        else:
            spans.append(html.escape(text))
    title = html.escape(f"{view.name}: goldfish mask")
    summary = html.escape(header(view, "highlighted").strip()).replace("\n", "<br>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 60em; }}
pre {{ white-space: pre-wrap; font-size: 0.95em; line-height: 1.5; }}
mark {{ background: #f4a3a3; color: #600; border-radius: 2px; }}
.b {{ color: #08c; font-weight: bold; }}
.p {{ color: #888; }}
</style></head><body>
<p>{summary}</p>
<pre>{"".join(spans)}</pre>
</body></html>
"""
