"""Entry point: maps command names to modules, loaded only when a command runs.

Lazy loading keeps ``goldfish-prep --help`` fast and keeps torch out of every
command but ``train`` and ``memorization``. The one error boundary is here:
a ``GoldfishError`` becomes a single ``Error:`` line and exit code 1, never a
traceback (pypa/build's ``_handle_build_error`` pattern).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

import click

from goldfish_prep import __version__
from goldfish_prep.errors import GoldfishError

# name -> (module under goldfish_prep_cli, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "mask": ("mask", "mask", "Tokenize a corpus and write goldfish label masks into sharded Arrow datasets."),
    "finalize": ("finalize", "finalize", "Join the shards of --num-tasks runs into one dataset and manifest."),
    "stats": ("stats", "stats", "Overall and per-document mask rates of masked shards."),
    "show": ("show", "show", "Show a document with its dropped tokens highlighted."),
    "verify": ("verify", "verify", "Recompute every mask and check shards against the manifest."),
    "repeats": ("repeats", "repeats", "Find repeated passages and confirm they carry identical masks."),
    "train": ("train", "train", "Train a small decoder-only transformer on masked shards (needs PyTorch)."),
    "memorization": ("memorization", "memorization", "Measure verbatim memorisation of documents, as the paper does."),
    "export": ("export", "export", "Export shards and their masks for nanoGPT, OLMo-core, Megatron or Parquet."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if _available(name)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS or not _available(name):
            return None
        module_name, attribute, _ = COMMANDS[name]
        command = getattr(importlib.import_module(f"goldfish_prep_cli.{module_name}"), attribute)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if not rows:
            return
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GoldfishError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("Error: interrupted; completed shards are kept, rerun with --resume to continue", err=True)
            sys.exit(130)


def _available(name: str) -> bool:
    """A command is listed once its module exists (commands land issue by issue)."""
    return importlib.util.find_spec(f"goldfish_prep_cli.{COMMANDS[name][0]}") is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="goldfish-prep")
def cli() -> None:
    """goldfish-prep: pre-computed goldfish loss masks for LLM training data.

    The goldfish loss (Hans et al. 2024) leaves about 1 in k tokens out of the
    next-token loss, chosen by hashing the tokens around each position, so a
    passage repeated anywhere in a corpus can never be learned verbatim.

    \b
    Start here:
      goldfish-prep mask corpus/ -o shards/          # default tokenizer, k=4, context width 13
      goldfish-prep stats shards/                    # per-document mask rates
      python -c "import datasets; print(datasets.load_from_disk('shards'))"
    """


def main() -> None:
    cli()
