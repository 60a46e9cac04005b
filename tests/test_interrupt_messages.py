"""A stopped command says what is left to continue only where something is: `mask` and `train` have
``--resume``; the commands that read shards do not, and their line must not send the user to it.

The README walk-through stopped a long `memorization` run with SIGTERM and was told "completed shards
are kept, rerun with --resume to continue": the message of `mask`, for a command with no such option.
Here a real `show` process is stopped by a real signal while it is certainly running: its output is
larger than a pipe holds and nothing reads it, so it blocks in its write until the signal comes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from goldfish_prep_cli.main import AFTER_AN_INTERRUPT, COMMANDS, cli
from tests.faults_support import default_stop_signals


def test_a_stopped_read_only_command_names_the_signal_and_no_resume(tmp_path: Path) -> None:
    words = " ".join(f"word{i % 997}" for i in range(60_000))  # about 150,000 tokens: far more output than a pipe holds
    (tmp_path / "big.jsonl").write_text(json.dumps({"id": "big", "text": words}) + "\n")
    masked = CliRunner().invoke(cli, ["mask", str(tmp_path / "big.jsonl"), "-o", str(tmp_path / "shards"), "-q"])
    assert masked.exit_code == 0, masked.output
    show = subprocess.Popen(
        [sys.executable, "-m", "goldfish_prep_cli", "show", str(tmp_path / "shards"), "--row", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=default_stop_signals,
    )
    try:
        assert show.stdout is not None
        assert show.stdout.read(1), "show printed nothing"  # it is writing; the rest fills the pipe and blocks it
        show.send_signal(signal.SIGTERM)
        rest, stderr = show.communicate(timeout=120)
    finally:
        if show.poll() is None:
            show.kill()
            show.communicate()
    assert len(rest) < 2 * len(words), "show wrote everything before the signal: the test proves nothing"
    assert stderr.decode().strip().splitlines() == ["Error: stopped by SIGTERM"]
    assert show.returncode == 128 + signal.SIGTERM


def test_only_commands_with_resume_get_a_resume_hint() -> None:
    context = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(context, name)
        assert command is not None, name
        options = {option for param in command.params for option in param.opts}
        assert ("--resume" in options) == (name in AFTER_AN_INTERRUPT), name
        if name in AFTER_AN_INTERRUPT:
            assert "--resume" in AFTER_AN_INTERRUPT[name]
