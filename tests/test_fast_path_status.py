"""The one-line status while a tokenizer's fast path is worked out for the first time: on a terminal only,
only when the work outlasts the delay, and never again once the answer is cached.

The end-to-end tests run ``mask`` with its stderr on a real pseudo-terminal (``pty``) or on a pipe. The
delay is set to 0 and the analysis is held for a second, so whether the line shows never depends on how
fast the machine is; nothing here asserts a duration.
"""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from goldfish_prep.tokenizers.status import fast_path_status_line, first_build_status
from tests.conftest import LICENSE_FILES


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def wait_for_text(stream: io.StringIO) -> None:
    shown = threading.Event()
    for _ in range(1000):  # up to 10 s for the timer thread to write (it does so at once)
        if stream.getvalue():
            shown.set()
            break
        shown.wait(0.01)
    assert shown.is_set()


def test_the_line_shows_on_a_terminal_and_ends_with_the_time_taken(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GOLDFISH_PREP_CACHE", str(tmp_path / "cache"))
    stream = Terminal()
    with first_build_status("llama3/tokenizer.json", stream, delay_s=0):
        wait_for_text(stream)
    expected = f"Checking tokenizer 'llama3/tokenizer.json' for an exact fast path (first use of these files; the result is cached in {tmp_path / 'cache'}) ..."
    assert re.fullmatch(re.escape(expected) + r" done in \d+\.\d s\n", stream.getvalue())


def test_nothing_is_written_off_a_terminal_or_for_quick_work() -> None:
    pipe = io.StringIO()
    with first_build_status("tok.json", pipe, delay_s=0):
        threading.Event().wait(0.2)
    quick = Terminal()
    with first_build_status("tok.json", quick, delay_s=60):
        pass
    assert pipe.getvalue() == "" and quick.getvalue() == ""


def test_a_failure_ends_the_line_so_the_error_gets_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOLDFISH_PREP_CACHE", "off")
    stream = Terminal()
    with pytest.raises(ValueError), first_build_status("tok.json", stream, delay_s=0):
        wait_for_text(stream)
        raise ValueError("broken")
    assert stream.getvalue() == fast_path_status_line("tok.json") + " ... stopped\n"
    assert "GOLDFISH_PREP_CACHE=off: not cached, every run checks again" in stream.getvalue()


def test_an_inner_build_adds_no_second_line() -> None:
    stream = Terminal()
    with first_build_status("outer.json", stream, delay_s=0):
        with first_build_status("inner.json", stream, delay_s=0):
            wait_for_text(stream)
    assert stream.getvalue().count("Checking tokenizer") == 1 and "inner.json" not in stream.getvalue()


# ---------------------------------------------------------------- end to end: `mask` on a pty and on a pipe

RUN = """
import sys, time
import goldfish_prep.tokenizers.fast_hf as fast_hf
import goldfish_prep.tokenizers.status as status
status.DELAY_S = 0
analyse = fast_hf._analyse
def held(*args):
    time.sleep(1)  # the line is due at once: this only keeps the outcome off the machine's speed
    return analyse(*args)
fast_hf._analyse = held
from goldfish_prep_cli.main import cli
cli(sys.argv[1:], prog_name="goldfish-prep")
"""


@pytest.fixture()
def tokenizer_json(tmp_path: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    texts = [Path(path).read_text(encoding="utf-8") for path in LICENSE_FILES[:3]] or ["some text " * 100]
    tokenizer.train_from_iterator(
        texts, trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    )
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "docs.jsonl").write_text(json.dumps({"text": texts[0][:2000]}) + "\n")
    return tmp_path / "tokenizer.json"


def mask_with_stderr_on(terminal: bool, folder: Path, output: str) -> tuple[int, str]:
    """Run ``mask --tokenizer tokenizer.json`` with stderr on a pty (``terminal``) or a pipe; its stderr."""
    args = [sys.executable, "-c", RUN, "mask", "docs.jsonl", "-o", output, "--tokenizer", "tokenizer.json", "-q"]
    env = {**os.environ, "GOLDFISH_PREP_CACHE": str(folder / "cache"), "HF_HUB_OFFLINE": "1"}
    if not terminal:
        done = subprocess.run(args, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
        return done.returncode, done.stderr
    leader, follower = pty.openpty()
    process = subprocess.Popen(args, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return process.wait(timeout=300), b"".join(chunks).decode().replace("\r\n", "\n")


def test_mask_on_a_terminal_says_once_that_it_builds_the_fast_path(tokenizer_json: Path) -> None:
    folder = tokenizer_json.parent
    code, first = mask_with_stderr_on(True, folder, "first")
    assert code == 0, first
    line = f"Checking tokenizer 'tokenizer.json' for an exact fast path (first use of these files; the result is cached in {folder / 'cache'}) ..."
    assert re.fullmatch(re.escape(line) + r" done in \d+\.\d s\n", first), first
    code, second = mask_with_stderr_on(True, folder, "second")  # the answer is cached now: silent
    assert (code, second) == (0, "")


def test_mask_on_a_pipe_stays_silent(tokenizer_json: Path) -> None:
    code, stderr = mask_with_stderr_on(False, tokenizer_json.parent, "piped")
    assert (code, stderr) == (0, "")
    assert any((tokenizer_json.parent / "cache").iterdir())  # the build did run (and filled the cache)
