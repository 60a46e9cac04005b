"""Where the trainers' virtual environments are, and what a test does when one is missing.

``tests/trainers/setup.sh`` makes one venv per trainer (their pins conflict) under
``$GOLDFISH_TRAINERS_DIR`` (default ``.trainers/`` in the repository root). A
test that needs one skips, with the command that makes it, when it is absent on
a developer's machine; in CI (``GOLDFISH_TRAINERS_REQUIRED=1``, set by .ci/run)
it fails instead, so a broken install can never pass as a skip.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def venv_root() -> Path:
    return Path(os.environ.get("GOLDFISH_TRAINERS_DIR", REPO / ".trainers"))


def ci_trainers() -> list[str]:
    """The venvs setup.sh makes by default, which CI must have (tests/trainers/ci-trainers.txt, with their install times)."""
    lines = (HERE / "ci-trainers.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def trainer_python(name: str) -> Path:
    """The python of trainer ``name``'s venv; skips when it is not there, except in CI for the trainers CI installs."""
    python = venv_root() / name / "bin" / "python"
    if python.is_file():
        return python
    message = f"no {name} venv at {python.parent.parent}: run `bash tests/trainers/setup.sh {name}`"
    if name not in ci_trainers():
        pytest.skip(message + f" ({name} is not installed in CI: see tests/trainers/ci-trainers.txt)")
    if os.environ.get("GOLDFISH_TRAINERS_REQUIRED") == "1":
        pytest.fail(message + " (GOLDFISH_TRAINERS_REQUIRED=1: CI must run every trainer)")
    pytest.skip(message)


def run_in(name: str, *args: str | Path, timeout: int = 600, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run ``python ARGS`` in trainer ``name``'s venv, offline, on one thread; its output, or a failure that shows it."""
    python = trainer_python(name)
    environment = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "WANDB_DISABLED": "true",
        "DO_NOT_TRACK": "1",  # axolotl sends telemetry otherwise, and waits on its retries with no network
        "AXOLOTL_DO_NOT_TRACK": "1",
        "WANDB_MODE": "disabled",
        "DISABLE_VERSION_CHECK": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONPATH": str(HERE),
        **(env or {}),
    }
    environment.pop("VIRTUAL_ENV", None)
    done = subprocess.run(
        [str(python), *map(str, args)], cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{name} exited {done.returncode}:\n{output[-6000:]}"
    return output
