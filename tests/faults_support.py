"""What the fault-injection tests share: ``mask`` as a real process, a real corpus, and no process left behind.

``tests/test_faults.py`` and ``tests/test_faults_lock.py`` start real runs and
act on them once their first shard is complete; both use these helpers and the
three fixtures below (imported by name into each module, as pytest finds them).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LICENSE_FILES

ROOT = Path(__file__).resolve().parents[1]
SHARD_SIZE = "24KB"


def goldfish(*args: object, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "goldfish_prep_cli", *(str(a) for a in args)], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def start(*args: object, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``mask`` in a process group of its own (as a batch job's step is), output captured;
    ``env``: variables added to this process's environment for it (an object store's settings)."""
    return subprocess.Popen(
        [sys.executable, "-m", "goldfish_prep_cli", "mask", *(str(a) for a in args), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env} if env else None,
        start_new_session=True,
        preexec_fn=default_stop_signals,
    )


def default_stop_signals() -> None:
    """In the child: SIGINT, SIGHUP and SIGTERM as a terminal or a scheduler's job has them, even when the
    tests run under ``nohup`` (SIGHUP ignored) or as a background job of a non-interactive shell (SIGINT
    ignored): `mask` rightly keeps an ignored signal ignored, and the run would not stop."""
    for number in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(number, signal.SIG_DFL)


def wait_for_first_shard(folder: Path, run: subprocess.Popen[str]) -> None:
    """Until shard 0 is complete (its record written after the shard file); fails if the run ends first."""
    deadline = time.monotonic() + 120
    while not (folder / ".goldfish" / "shard-00000.json").exists():
        assert run.poll() is None, f"the run ended before its first shard: {run.communicate()}"
        assert time.monotonic() < deadline, "no shard after 120 s"
        time.sleep(0.005)


def write_corpus(path: Path, megabytes: float) -> None:
    """Real licence texts as JSON lines, each document made distinct by a number."""
    texts = [Path(p).read_text(encoding="utf-8", errors="replace") for p in LICENSE_FILES]
    if not texts:
        pytest.skip("needs /usr/share/common-licenses")
    with path.open("w", encoding="utf-8") as out:
        number = 0
        while out.tell() < megabytes * 1e6:
            out.write(json.dumps({"text": f"document {number}\n{texts[number % len(texts)]}"}) + "\n")
            number += 1


def write_paragraphs(path: Path, files: int) -> None:
    """Each paragraph of the first ``files`` licence texts as one JSON line (8 files: about 200 KB)."""
    with path.open("w", encoding="utf-8") as out:
        for licence in LICENSE_FILES[:files]:
            for paragraph in Path(licence).read_text(encoding="utf-8", errors="replace").split("\n\n"):
                if paragraph.strip():
                    out.write(json.dumps({"text": paragraph}) + "\n")


def output_bytes(folder: Path) -> dict[str, bytes]:
    """What a consumer reads: the shards, the manifest and the datasets metadata."""
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


def alive(pid: int) -> bool:
    """Running or sleeping; an exited process left unreaped (a zombie: init may not reap here) is not."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("faults") / "corpus.jsonl"
    write_corpus(path, 6)
    return path


@pytest.fixture(scope="module")
def reference(corpus: Path) -> dict[str, bytes]:
    """The bytes of an uninterrupted run."""
    folder = corpus.parent / "reference"
    run = goldfish("mask", corpus, "-o", folder, "--shard-size", SHARD_SIZE, "-q")
    assert run.returncode == 0, run.stderr
    return output_bytes(folder)


@pytest.fixture()
def killer() -> Iterator[list[int]]:
    """Pids to SIGKILL after the test whatever happened (a failed test leaves no process behind): a run's whole
    process group (``start`` makes one per run; a stopped process dies of it too), else the process alone (a worker)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:  # not a group leader
                os.kill(pid, signal.SIGKILL)
