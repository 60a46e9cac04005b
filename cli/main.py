"""Entry point: maps command names to modules, loaded only when a command runs.

Lazy loading keeps ``goldfish-prep --help`` fast and keeps torch out of every
command but ``train`` and ``memorization``. The one error boundary is here:
a ``GoldfishError`` becomes a single ``Error:`` line and exit code 1, never a
traceback (pypa/build's ``_handle_build_error`` pattern). Ctrl-C, SIGTERM and
SIGHUP (a scheduler's preemption) end a command the same way: one line, exit
code 128 + the signal's number, completed shards kept for ``--resume``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import signal
import sys
import threading
from collections.abc import Iterator
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
            with _stop_signals_interrupt():
                return super().invoke(ctx)
        except GoldfishError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt as exc:
            signum = exc.signum if isinstance(exc, Stopped) else signal.SIGINT
            what = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
            after = AFTER_AN_INTERRUPT.get(ctx.invoked_subcommand or "")
            click.echo(f"Error: {what}" + (f"; {after}" if after else ""), err=True)
            sys.exit(128 + signum)


#: what is left after a stop, for the commands that leave something to continue; the others only read (or write
#: in one step at the end), so their line says what stopped them and no more (`memorization` once said
#: "completed shards are kept, rerun with --resume", an option it does not have)
AFTER_AN_INTERRUPT = {
    "mask": "completed shards are kept, rerun with --resume to continue",
    "train": "rerun with --resume to continue from the last checkpoint, if --checkpoint-interval saved one",
}


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a scheduler preempting the job, a closed terminal), raised as Ctrl-C is.

    A ``KeyboardInterrupt`` so that every clean-up that runs on Ctrl-C runs on these too:
    unfinished shards are removed, worker processes killed, completed shards kept.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


#: what a scheduler or a terminal sends to stop a process (SIGHUP does not exist on Windows)
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def _raise_stopped(signum: int, frame: object) -> None:
    for number in STOP_SIGNALS:  # a second signal must not break into the clean-up of the first
        signal.signal(number, signal.SIG_IGN)
    raise Stopped(signum)


@contextlib.contextmanager
def _stop_signals_interrupt() -> Iterator[None]:
    """While a command runs, SIGTERM and SIGHUP raise ``Stopped``; a signal already ignored (nohup) stays so."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    for number, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(number, _raise_stopped)
    try:
        yield
    finally:
        for number, handler in previous.items():
            if handler is not None:  # None: set outside Python, cannot be restored from here
                signal.signal(number, handler)


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
