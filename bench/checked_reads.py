"""What checking shards costs the commands that read an output: the same commands, several installs, in turns.

Every reader checks each shard's checksum as it reads it (docs/performance.md,
"Readers check what they read"); the goal is under 5% of each command's time.
This script times whole processes of two or more installs of goldfish-prep
(non-editable, so imports cost what they cost users) on one output folder, in
rounds: each round runs every install once, in turn, so the ratios are taken
pair by pair within a round and a machine whose speed drifts (other jobs) moves
both sides alike. CPU is user + system seconds of the finished child
(``os.wait4``), wall a monotonic clock around it; medians are printed.

    python bench/checked_reads.py out --install branch=venv-branch/bin/goldfish-prep \\
        --install main=venv-main/bin/goldfish-prep --runs 15 --repeats-runs 5

The first install is the one measured; each other is a baseline. Prints one
Markdown row per command and baseline: median CPU of both, and the medians of
the paired CPU and wall ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def timed(command: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one run of ``command``, its output discarded; a failed run raises."""
    start = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {process.returncode}")
    return usage.ru_utime + usage.ru_stime, wall


def commands(executable: str, output: str, scratch: Path, name: str) -> dict[str, list[str]]:
    """The measured commands of one install (each writes into its own scratch place)."""
    return {
        "export (nanogpt)": [executable, "export", output, "-o", str(scratch / f"y-{name}"), "--overwrite"],
        "stats": [executable, "stats", output],
        "repeats": [executable, "repeats", output],
    }


def measure(installs: dict[str, str], output: str, runs: dict[str, int]) -> list[str]:
    """Markdown rows: for each command and each baseline, medians of CPU and of the paired ratios."""
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        per_install = {name: commands(exe, output, Path(scratch), name) for name, exe in installs.items()}
        first, *baselines = installs
        for label in per_install[first]:
            for name in installs:  # one warm-up each: page cache, .pyc files
                timed(per_install[name][label])
            times: dict[str, list[tuple[float, float]]] = {name: [] for name in installs}
            for _ in range(runs.get(label, runs["default"])):
                for name in installs:
                    times[name].append(timed(per_install[name][label]))
            for base in baselines:
                cpu_ratio = statistics.median(a[0] / b[0] for a, b in zip(times[first], times[base]))
                wall_ratio = statistics.median(a[1] / b[1] for a, b in zip(times[first], times[base]))
                cpu_first = statistics.median(t[0] for t in times[first])
                cpu_base = statistics.median(t[0] for t in times[base])
                rows.append(
                    f"| `{label}` | {first} vs {base} | {len(times[first])} | {cpu_base:.3f} s | {cpu_first:.3f} s "
                    f"| {cpu_ratio:.3f} | {wall_ratio:.3f} |"
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="an output folder of `goldfish-prep mask`")
    parser.add_argument("--install", action="append", required=True, help="NAME=PATH of a goldfish-prep executable (first: measured)")
    parser.add_argument("--runs", type=int, default=15, help="rounds for export and stats")
    parser.add_argument("--repeats-runs", type=int, default=5, help="rounds for repeats (seconds a run)")
    args = parser.parse_args()
    installs = dict(item.split("=", 1) for item in args.install)
    if len(installs) < 2:
        parser.error("give at least two --install NAME=PATH")
    print("| command | installs | runs | CPU, baseline | CPU, measured | CPU ratio (median of pairs) | wall ratio |")
    print("|---|---|---|---|---|---|---|")
    for row in measure(installs, args.output, {"default": args.runs, "repeats": args.repeats_runs}):
        print(row, flush=True)


if __name__ == "__main__":
    main()
