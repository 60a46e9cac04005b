"""Two shell-free commands timed as whole processes, in turn, A B A B ...: medians and paired ratios.

Pairing is what makes a ratio mean something on a shared machine: whatever else
runs slows the two commands of a pair alike, so the ratio taken pair by pair
moves far less than either time. CPU is user + system seconds of the finished
process and the children it waited for (``os.wait4``), wall a monotonic clock.
One warm-up pair runs first and is not counted (page cache, ``.pyc`` files).

    python bench/paired.py -n 9 \\
        --baseline "goldfish-prep mask FILES -q -o out-g --overwrite --strategy goldfish" \\
        -- goldfish-prep mask FILES -q -o out-r --overwrite --strategy robust

prints the medians of each command's CPU and wall seconds and of the pairs'
speed ratios (baseline seconds / measured seconds: above 1 the measured command
is faster). Commands are split as a shell splits words, but no shell runs them.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from checked_reads import timed  # noqa: E402  (bench/ is a folder of scripts, not a package)


def measure(measured: list[str], baseline: list[str], runs: int) -> dict[str, float]:
    """Medians over ``runs`` counted pairs (after one warm-up pair) of times and speed ratios."""
    timed(baseline), timed(measured)
    pairs = []
    for _ in range(runs):
        base = timed(baseline)
        this = timed(measured)
        pairs.append((this, base))
    return {
        "measured_cpu_s": statistics.median(this[0] for this, _ in pairs),
        "baseline_cpu_s": statistics.median(base[0] for _, base in pairs),
        "measured_wall_s": statistics.median(this[1] for this, _ in pairs),
        "baseline_wall_s": statistics.median(base[1] for _, base in pairs),
        "speed_ratio_cpu": statistics.median(base[0] / this[0] for this, base in pairs),
        "speed_ratio_wall": statistics.median(base[1] / this[1] for this, base in pairs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=9, help="counted pairs (default 9)")
    parser.add_argument("--baseline", required=True, help="the command to compare against, as one string")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the measured command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the measured command after --")
    figures = measure(command, shlex.split(args.baseline), args.runs)
    for name, value in figures.items():
        print(f"{name:18} {value:.3f}")


if __name__ == "__main__":
    main()
