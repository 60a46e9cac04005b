"""``mask`` over s3:// inputs against the same files on local disk: speed ratio and memory as the corpus grows.

Goals (issue 26): ``mask`` with its inputs on an S3 server within 1.3x of the
same run on local disk at ``--num-proc 2``, and memory flat as the corpus grows
10x. The server is moto's (``tests/s3_server.py``), in its own process on this
machine, reached only through ``AWS_ENDPOINT_URL`` and the credentials variables,
as a user reaches an S3-compatible store; it shares the cores with the run, so
the ratio includes the cost of serving the bytes. The corpus is ``peers.py``'s
(Debian copyright files and licences, 8 JSON lines files, about 18 MB at x1),
uploaded as ``s3://bench/corpus-xN/``. Each round runs local then s3 (the order
alternating between rounds), each a separate ``goldfish-prep mask`` process on
``--cores`` CPUs, measured by ``measure.py`` (wall and CPU time; peak summed PSS
of the mask process tree and the largest single-process peak RSS; the server is
not in that tree: its CPU time during each s3 run is reported apart). The shards of both runs are checked equal, paths aside.

    python bench/remote_inputs.py                       # x1 and x10, 1 round
    python bench/remote_inputs.py --scales 1,10 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from measure import Measured, measure  # noqa: E402
from peers import WORK, build_corpus  # noqa: E402

from tests.s3_server import S3Server  # noqa: E402

BUCKET = "bench"


def mask_command(spec: str, out: Path, num_proc: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "goldfish_prep_cli",
        "mask",
        spec,
        "-o",
        str(out),
        "-q",
        "--num-proc",
        str(num_proc),
        "--shard-size",
        "16MB",
    ]


def rows(folder: Path, prefix: str) -> list[pa.Table]:
    """Shard tables with ``prefix`` taken off ``id`` and ``source`` (the only places the input path shows)."""
    tables = []
    for shard in sorted(folder.glob("data-*.arrow")):
        with pa.memory_map(str(shard)) as source:
            table = pa.ipc.open_stream(source).read_all()
        for name in ("id", "source"):
            values = [value.removeprefix(prefix) for value in table.column(name).to_pylist()]
            table = table.set_column(table.column_names.index(name), name, pa.array(values, table.column(name).type))
        tables.append(table)
    return tables


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(name: str, spec: str, args: argparse.Namespace, env: dict[str, str], server: S3Server) -> tuple[Measured, Path, float]:
    """One mask run; also the CPU seconds the S3 server spent meanwhile (on the same cores)."""
    out = args.work / f"remote-{name}"
    shutil.rmtree(out, ignore_errors=True)
    before = cpu_seconds(server.pid)
    measured = measure(mask_command(spec, out, args.num_proc), args.cores, args.work / f"remote-{name}.log", env)
    served = cpu_seconds(server.pid) - before
    if measured.returncode != 0:
        raise SystemExit(f"mask failed on {spec} (exit {measured.returncode}); see {args.work / f'remote-{name}.log'}")
    print(
        f"  {name:<10} {measured.seconds:6.1f} s, CPU {measured.cpu_seconds:5.1f} s (server {served:4.1f} s), "
        f"peak tree PSS {measured.peak_tree_pss_mb:6.0f} MB, max RSS {measured.max_rss_mb:6.0f} MB",
        flush=True,
    )
    return measured, out, served


def run_scale(scale: int, server: S3Server, args: argparse.Namespace) -> dict[str, Any]:
    corpus = build_corpus(args.work, scale)
    server.upload(BUCKET, corpus, f"{corpus.name}/")
    size_mb = sum(p.stat().st_size for p in corpus.glob("*.jsonl")) / 1e6
    env = {**os.environ, **server.env()}
    # the same spec shape on both sides: the local run reads the folder from its parent
    local_spec, url = str(corpus) + "/", f"s3://{BUCKET}/{corpus.name}/"
    runs: dict[str, list[Measured]] = {"local": [], "s3": []}
    outputs: dict[str, Path] = {}
    served: list[float] = []
    for round_index in range(args.rounds):
        order = [("local", local_spec), ("s3", url)]
        for kind, spec in order if round_index % 2 == 0 else order[::-1]:
            measured, outputs[kind], cpu = one_run(f"{kind}-x{scale}", spec, args, env, server)
            runs[kind].append(measured)
            if kind == "s3":
                served.append(cpu)
    if rows(outputs["s3"], url) != rows(outputs["local"], local_spec):
        raise SystemExit(f"x{scale}: the s3 run's shards differ from the local run's")
    ratios = [s3.seconds / local.seconds for local, s3 in zip(runs["local"], runs["s3"])]
    return {
        "scale": scale,
        "mb": size_mb,
        "local_s": statistics.median(m.seconds for m in runs["local"]),
        "s3_s": statistics.median(m.seconds for m in runs["s3"]),
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "local_cpu": statistics.median(m.cpu_seconds for m in runs["local"]),
        "s3_cpu": statistics.median(m.cpu_seconds for m in runs["s3"]),
        "server_cpu": statistics.median(served),
        "local_pss": max(m.peak_tree_pss_mb for m in runs["local"]),
        "s3_pss": max(m.peak_tree_pss_mb for m in runs["s3"]),
        "local_rss": max(m.max_rss_mb for m in runs["local"]),
        "s3_rss": max(m.max_rss_mb for m in runs["s3"]),
    }


def report(results: list[dict[str, Any]], num_proc: int) -> str:
    lines = [
        f"| corpus | MB | local wall s | s3 wall s | s3 / local (median; per round) | CPU s local / s3 (+ server) | local peak PSS / max RSS MB | s3 peak PSS / max RSS MB |  (--num-proc {num_proc})",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        per_round = ", ".join(f"{x:.2f}" for x in r["ratios"])
        lines.append(
            f"| x{r['scale']} | {r['mb']:.0f} | {r['local_s']:.1f} | {r['s3_s']:.1f} | {r['ratio']:.2f}x ({per_round}) | "
            f"{r['local_cpu']:.1f} / {r['s3_cpu']:.1f} (+ {r['server_cpu']:.1f}) | "
            f"{r['local_pss']:.0f} / {r['local_rss']:.0f} | {r['s3_pss']:.0f} / {r['s3_rss']:.0f} |"
        )
    if len(results) >= 2:
        small, large = results[0], results[-1]
        lines.append(
            f"\ns3 inputs, x{large['scale']} vs x{small['scale']}: peak tree PSS {large['s3_pss'] / small['s3_pss'] - 1:+.0%}, "
            f"max RSS {large['s3_rss'] / small['s3_rss'] - 1:+.0%} (local: {large['local_pss'] / small['local_pss'] - 1:+.0%}, "
            f"{large['local_rss'] / small['local_rss'] - 1:+.0%})"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="1,10", help="corpus sizes as copies of the base corpus")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--work", type=Path, default=WORK)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    server = S3Server()
    try:
        results = [run_scale(int(scale), server, args) for scale in args.scales.split(",")]
    finally:
        server.stop()
    print(report(results, args.num_proc))


if __name__ == "__main__":
    main()
