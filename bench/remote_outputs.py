"""``mask -o s3://...`` against the same run into a local folder: speed ratio and memory as the corpus grows.

Goal (issue 26): ``mask`` with its inputs and output on an S3 server within
1.3x of the same run on local disk at ``--num-proc 2``, memory flat as the
corpus grows 10x. Three runs per round, each a separate ``goldfish-prep mask``
process on ``--cores`` CPUs measured by ``measure.py``: ``local`` (local
inputs, local folder), ``out-s3`` (local inputs, ``-o s3://``: the cost of the
output alone) and ``s3`` (inputs and output on the store). The server is
moto's (``tests/s3_server.py``) on the same cores, reached only through
``AWS_ENDPOINT_URL`` and the credentials variables; its CPU time is reported
apart. ``--server s3rver`` takes s3rver instead (``s3rver_server.py``): moto
reads a whole object to answer each ranged GET, so on large inputs the ``s3``
runs measure moto. ``out-s3``'s objects are checked byte-identical to ``local``'s files (the
lock files aside), ``s3``'s shards equal to ``local``'s with the input paths
taken off. The corpus is ``peers.py``'s, as in ``remote_inputs.py``.

    python bench/remote_outputs.py                       # x1 and x10, 1 round
    python bench/remote_outputs.py --scales 1,10 --rounds 2
    python bench/remote_outputs.py --scales 10 --rounds 4 --store-apart
    python bench/remote_outputs.py --scales 10 --rounds 4 --python-b OTHER/.venv/bin/python
    python bench/remote_outputs.py --scales 10 --rounds 4 --store-apart --shard-size 256MB
    python bench/remote_outputs.py --scales 10 --rounds 2 --store-apart --shard-size 256MB --latency-ms 50
    python bench/remote_outputs.py --scales 10,100 --rounds 2 --store-apart --shard-size 256MB --server s3rver

``--python-b`` adds ``out-s3@b`` and ``s3@b``: the same runs by another
interpreter (another checkout's venv: the code before a change), in the same
rounds against the same server and local run, so the two codes are compared
under the same load. Their objects are not compared (the codes may differ in
their records).

``--store-apart`` pins the server to the last CPU and every run (the local one
too) to the others: a store whose CPU is not the client's, as a real one's is
not. On a 2-core machine the runs then have one core, still at ``--num-proc``.
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
from remote_inputs import cpu_seconds, mask_command, rows  # noqa: E402
from s3rver_server import S3rver  # noqa: E402

from tests.s3_server import FaultyProxy, S3Server  # noqa: E402

BUCKET = "bench-out"
KINDS = ("local", "out-s3", "s3")
B_KINDS = ("out-s3@b", "s3@b")


def objects(server: S3Server, prefix: str) -> dict[str, bytes]:
    s3 = server.client()
    found: dict[str, bytes] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
        for entry in page.get("Contents", []):
            found[entry["Key"][len(prefix) + 1 :]] = s3.get_object(Bucket=BUCKET, Key=entry["Key"])["Body"].read()
    return found


def clear(server: S3Server, prefix: str) -> None:
    s3 = server.client()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
        for entry in page.get("Contents", []):
            s3.delete_object(Bucket=BUCKET, Key=entry["Key"])


def shard_tables(server: S3Server, prefix: str, inputs: str, work: Path) -> list[pa.Table]:
    """The output's shards read from the store, ``inputs`` taken off ``id`` and ``source``."""
    folder = work / "remote-out-download"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, data in objects(server, prefix).items():
        if name.startswith("data-"):
            (folder / name).write_bytes(data)
    return rows(folder, inputs)


def pin_process(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` on ``cpus`` (threads it starts later inherit it)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(task), cpus)


def one_run(kind: str, scale: int, spec: str, args: argparse.Namespace, env: dict[str, str], server: S3Server) -> tuple[Measured, float]:
    name = f"{kind}-x{scale}"
    if kind == "local":
        out: Path | str = args.work / f"remote-out-{name}"
        shutil.rmtree(out, ignore_errors=True)
    else:
        out = f"s3://{BUCKET}/{name}"
        clear(server, name)
    before = cpu_seconds(server.pid)
    command = [str(part) for part in mask_command(spec, Path("OUT"), args.num_proc)]
    if kind.endswith("@b"):
        command[0] = args.python_b
    command[command.index("OUT")] = str(out)
    command[command.index("--shard-size") + 1] = args.shard_size
    # not in a checkout: ``python -m`` puts the working folder first on sys.path, so every interpreter started in
    # this repository would run this checkout's code, ``--python-b``'s too (the paired figures before 2026-12-06
    # 14:00 UTC compared this code with itself)
    measured = measure(command, args.cores, args.work / f"remote-out-{name}.log", env, cwd=args.work)
    served = cpu_seconds(server.pid) - before
    if measured.returncode != 0:
        raise SystemExit(f"mask failed ({name}, exit {measured.returncode}); see {args.work / f'remote-out-{name}.log'}")
    print(
        f"  {name:<12} {measured.seconds:6.1f} s, CPU {measured.cpu_seconds:5.1f} s (server {served:4.1f} s), "
        f"peak tree PSS {measured.peak_tree_pss_mb:6.0f} MB, max RSS {measured.max_rss_mb:6.0f} MB, "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    return measured, served


def run_scale(scale: int, server: S3Server, args: argparse.Namespace) -> dict[str, Any]:
    corpus = build_corpus(args.work, scale)
    server.upload(BUCKET, corpus, f"{corpus.name}/")
    size_mb = sum(p.stat().st_size for p in corpus.glob("*.jsonl")) / 1e6
    env = {**os.environ, **server.env(endpoint=args.endpoint)}  # the runs reach the server through the proxy, if any
    local_spec, url = str(corpus) + "/", f"s3://{BUCKET}/{corpus.name}/"
    specs = {"local": local_spec, "out-s3": local_spec, "s3": url, "out-s3@b": local_spec, "s3@b": url}
    kinds = KINDS + (B_KINDS if args.python_b else ())
    runs: dict[str, list[Measured]] = {kind: [] for kind in kinds}
    served: dict[str, list[float]] = {kind: [] for kind in kinds}
    for round_index in range(args.rounds):
        order = kinds if round_index % 2 == 0 else kinds[::-1]
        for kind in order:
            measured, cpu = one_run(kind, scale, specs[kind], args, env, server)
            runs[kind].append(measured)
            served[kind].append(cpu)
    local = args.work / f"remote-out-local-x{scale}"
    files = {p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file() and not p.name.endswith(".lock")}
    if objects(server, f"out-s3-x{scale}") != files:
        raise SystemExit(f"x{scale}: the objects of -o s3:// differ from the local run's files")
    if shard_tables(server, f"s3-x{scale}", url, args.work) != rows(local, local_spec):
        raise SystemExit(f"x{scale}: the shards of the s3 run differ from the local run's")
    result: dict[str, Any] = {"scale": scale, "mb": size_mb, "kinds": kinds}
    for kind in kinds:
        result[kind] = {
            "s": statistics.median(m.seconds for m in runs[kind]),
            "cpu": statistics.median(m.cpu_seconds for m in runs[kind]),
            "server": statistics.median(served[kind]),
            "pss": max(m.peak_tree_pss_mb for m in runs[kind]),
            "rss": max(m.max_rss_mb for m in runs[kind]),
            "ratios": [m.seconds / base.seconds for m, base in zip(runs[kind], runs["local"])],
            # the run's own CPU against the local run's: what a store whose CPU is not on these cores would cost
            "cpu_ratios": [m.cpu_seconds / base.cpu_seconds for m, base in zip(runs[kind], runs["local"])],
        }
    return result


def report(results: list[dict[str, Any]], num_proc: int) -> str:
    lines = [
        f"| corpus | MB | run | wall s | / local (per round) | CPU s (+ server) | CPU / local | peak PSS / max RSS MB |  (--num-proc {num_proc})",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for kind in r["kinds"]:
            k = r[kind]
            ratios = ", ".join(f"{x:.2f}" for x in k["ratios"])
            lines.append(
                f"| x{r['scale']} | {r['mb']:.0f} | {kind} | {k['s']:.1f} | {statistics.median(k['ratios']):.2f}x ({ratios}) | "
                f"{k['cpu']:.1f} (+ {k['server']:.1f}) | {statistics.median(k['cpu_ratios']):.2f}x | {k['pss']:.0f} / {k['rss']:.0f} |"
            )
    if len(results) >= 2:
        small, large = results[0], results[-1]
        for kind in large["kinds"]:
            lines.append(
                f"{kind}, x{large['scale']} vs x{small['scale']}: peak tree PSS {large[kind]['pss'] / small[kind]['pss'] - 1:+.0%}, "
                f"max RSS {large[kind]['rss'] / small[kind]['rss'] - 1:+.0%}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="1,10", help="corpus sizes as copies of the base corpus")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--store-apart", action="store_true", help="the server on the last CPU, the runs on the others")
    parser.add_argument(
        "--shard-size",
        default="16MB",
        help="mask's --shard-size: 16MB (outputs of about 30 MB, one PUT each) or 256MB (mask's default: multipart uploads)",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="a store far away: every request waits this long in a proxy (tests/s3_server.FaultyProxy) before the server",
    )
    parser.add_argument(
        "--server",
        choices=("moto", "s3rver"),
        default="moto",
        help="the S3 server: moto (the tests' own) or s3rver (Node.js, installed with npm on first use; serves a ranged GET "
        "without reading the whole object, as moto does: bench/s3rver_server.py)",
    )
    parser.add_argument("--python-b", help="another interpreter (another checkout's venv) for the out-s3@b and s3@b runs")
    args = parser.parse_args()
    args.work = args.work.resolve()  # the runs start there (``one_run``): every path they are given is absolute
    args.work.mkdir(parents=True, exist_ok=True)
    server = S3Server() if args.server == "moto" else S3rver()
    if args.store_apart:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            raise SystemExit("--store-apart needs two CPUs or more")
        args.cores = min(args.cores, len(cpus) - 1)
        pin_process(server.pid, {cpus[-1]})
    proxy = FaultyProxy(server.endpoint, lambda *_: "stall", stall_s=args.latency_ms / 1000) if args.latency_ms else None
    args.endpoint = proxy.endpoint if proxy else None
    try:
        server.client().create_bucket(Bucket=BUCKET)
        results = [run_scale(int(scale), server, args) for scale in args.scales.split(",")]
    finally:
        if proxy is not None:
            proxy.close()
        server.stop()
    where = f", server on CPU {sorted(os.sched_getaffinity(0))[-1]}, runs on {args.cores} other(s)" if args.store_apart else ""
    latency = f", {args.latency_ms:g} ms per request" if args.latency_ms else ""
    print(report(results, args.num_proc) + where + f", --shard-size {args.shard_size}{latency}, server {args.server}")


if __name__ == "__main__":
    main()
