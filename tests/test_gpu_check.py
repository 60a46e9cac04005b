"""bench/gpu_check.sh runs as a lent GPU session would start it, so it cannot rot between GPU sessions.

The script is what a session runs in the few minutes a GPU is lent; a step that breaks there costs the
whole window. Its CPU rehearsal (``GPU_CHECK_CPU=1``) runs the same steps on the same default text (the
interpreter's standard library) with a tiny model; here it runs as a real process, and every step must
exit 0 and carry the figures it read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.sh"

#: each step, in order, with the figures its results.jsonl line must carry
FIGURES = {
    "environment": ("python", "torch", "device", "tokenizer_engine"),
    "mask-goldfish": ("documents_written", "documents_skipped", "tokens", "drop_rate"),
    "mask-none": ("documents_written", "documents_skipped", "tokens", "drop_rate"),
    "train-gf4": ("steps", "train_loss", "tokens_per_s", "num_parameters"),
    "train-std": ("steps", "train_loss", "tokens_per_s", "num_parameters"),
    "train-killed": ("last_logged_step", "killed"),
    "train-resumed": ("first_step_after_resume", "steps", "train_loss"),
    "memorization-greedy": ("num_beams", "documents", "exact_matches", "rouge_l"),
    "memorization-beam": ("num_beams", "documents", "exact_matches", "rouge_l"),
}


def _run(tmp_path: Path, extra_env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], list[dict[str, object]]]:
    out = tmp_path / "out"
    # what a GPU session sets ($OUT) plus the rehearsal switch; PYTHON: the interpreter with torch
    env = {**os.environ, "OUT": str(out), "GPU_CHECK_CPU": "1", "PYTHON": sys.executable, "GPU_CHECK_WORK": str(tmp_path / "work")}
    env.update(extra_env or {})
    env.pop("GPU_CHECK_TEXT", None)
    done = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    return done, [json.loads(line) for line in lines]


@pytest.mark.slow
def test_cpu_rehearsal_runs_every_step_with_its_figures(tmp_path: Path) -> None:
    done, results = _run(tmp_path)
    assert [row["step"] for row in results] == list(FIGURES), done.stdout + done.stderr
    for row in results:
        assert row["rc"] == 0 and row["ok"] is True, row
        missing = [key for key in FIGURES[str(row["step"])] if key not in row]
        assert not missing, (row, missing)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "gpu_check: 9 steps; 9 ok"
    by_step = {row["step"]: row for row in results}
    # the default text: the standard library's *.py files, every one read as UTF-8 text
    assert by_step["mask-goldfish"]["documents_written"] == by_step["mask-none"]["documents_written"]
    assert int(str(by_step["mask-goldfish"]["documents_written"])) > 20
    assert by_step["mask-none"]["drop_rate"] == 0.0
    # the resumed run continued after the killed run's checkpoint, to the planned end
    killed, resumed = by_step["train-killed"], by_step["train-resumed"]
    assert int(str(resumed["first_step_after_resume"])) > 0 and resumed["steps"] == 16, (killed, resumed)
    assert by_step["memorization-beam"]["num_beams"] > 1
    kept = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert len(kept) <= 8, kept  # a device call returns at most 8 files from $OUT


def test_one_failure_is_reported_once(tmp_path: Path) -> None:
    """Without torch the environment step fails with its error; every later step says what it lacked."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ModuleNotFoundError(\"No module named 'torch'\")\n"
        "sys.meta_path.insert(0, _Hide())\n",
        encoding="utf-8",
    )
    done, results = _run(tmp_path, {"PYTHONPATH": str(shim)})
    assert done.returncode == 1
    first, *later = results
    assert first["step"] == "environment" and first["ok"] is False
    assert first["error"] == "ModuleNotFoundError: No module named 'torch'"
    assert [row["step"] for row in later] == list(FIGURES)[1:]
    assert all("skipped" in row and "error" not in row for row in later), later
    summary = done.stdout.strip().splitlines()[-1]
    assert summary.startswith("gpu_check: 9 steps; 0 ok; failed: environment (ModuleNotFoundError: No module named 'torch'); 8 skipped")
