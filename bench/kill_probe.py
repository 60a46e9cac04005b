"""Kill ``mask -o s3://...`` at requests spread over the whole run, and at each kind of request; check each.

Not a speed bench: a sweep of the commit protocol (docs/remote.md) under
SIGKILL and SIGINT, with ``tests/kill_probe.py``'s machinery against moto's
server (``tests/s3_server.py``). Two layouts: ``small`` (about 7 shards of
~170 kB, each one PUT) and ``multipart`` (shards of ~12 MB sent in 5 MiB
parts). For each, an uninterrupted run through the proxy numbers its requests;
the points are then ``--spread`` requests evenly spaced over that run (SIGKILL
after the store saw it), the first and the last request of each kind (SIGKILL
before and after), SIGINT at evenly spaced requests, and the held-shard
scenario (a later shard complete while the one before it is still in flight);
then a run killed with a shard whole but unrecorded, whose ``--resume`` is
stopped in turn at each kind of request a resume makes (``resume_points``).
Every point is checked as ``check_point`` says; a table is printed, one line
per point, and the exit status is 1 if any point failed.

    python bench/kill_probe.py                    # both layouts
    python bench/kill_probe.py --layouts small --spread 40 --interrupts 10
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.conftest import COPYRIGHT_FILES, LICENSE_FILES  # noqa: E402
from tests.kill_probe import Finding, KillPoint, calibrate, check_point, jsonl_corpus, local_reference, table  # noqa: E402
from tests.s3_server import S3Server  # noqa: E402

BUCKET = "kill-probe"
LAYOUTS = {
    "small": (600_000, ("--shard-size", "80KB")),
    "multipart": (16_000_000, ("--shard-size", "12MB", "--storage-options", json.dumps({"default_block_size": 5 << 20}))),
}


def build_corpus(path: Path, size: int) -> Path:
    texts = [Path(p).read_text(encoding="utf-8", errors="replace") for p in COPYRIGHT_FILES + LICENSE_FILES]
    return jsonl_corpus(path, texts, size)


def points_for(seen: list[str], spread: int, interrupts: int) -> list[KillPoint]:
    """Evenly spaced requests, each kind's first and last, SIGINTs, and the held-shard scenario."""
    total = len(seen)
    chosen: list[KillPoint] = [KillPoint(signal.SIGKILL, max(1, round(total * (i + 1) / (spread + 1)))) for i in range(spread)]
    for kind in dict.fromkeys(seen):
        count = seen.count(kind)
        for nth in sorted({1, count}):
            for when in ("before", "after"):
                chosen.append(KillPoint(signal.SIGKILL, nth, kind, when))
    chosen += [KillPoint(signal.SIGINT, max(1, round(total * (i + 1) / (interrupts + 1)))) for i in range(interrupts)]
    chosen.append(KillPoint(signal.SIGKILL, 0, out_of_order=True))
    chosen.append(KillPoint(signal.SIGINT, 0, out_of_order=True))
    return list(dict.fromkeys(chosen))


def resume_points(seen: list[str]) -> list[tuple[KillPoint, KillPoint]]:
    """A run killed once a shard is whole without its record, then its ``--resume`` stopped at each kind of request
    a resume makes: the lock's take-over, the deletion of that shard, a shard and a record of its own, the end."""
    if "complete" in seen:  # shards in parts
        first = KillPoint(signal.SIGKILL, 1, "complete", "after")
        kinds = [("lock-put", "after"), ("delete", "after"), ("create-upload", "after"), ("part", "after"), ("complete", "before")]
    else:
        first = KillPoint(signal.SIGKILL, 4, "shard-put", "after")
        kinds = [("lock-put", "after"), ("delete", "before"), ("delete", "after"), ("shard-put", "after"), ("record", "before")]
    kinds += [("record", "after"), ("manifest", "after"), ("state", "after")]
    pairs = [(first, KillPoint(signal.SIGKILL, 1, kind, when)) for kind, when in kinds]
    return pairs + [(first, KillPoint(signal.SIGINT, 1, kind)) for kind in ("delete", "record")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", default="small,multipart")
    parser.add_argument("--spread", type=int, default=24, help="SIGKILL points evenly spaced over the run's requests")
    parser.add_argument("--interrupts", type=int, default=6, help="SIGINT points evenly spaced over the run's requests")
    args = parser.parse_args()
    server = S3Server()
    failed = 0
    try:
        s3 = server.client()
        s3.create_bucket(Bucket=BUCKET)
        with tempfile.TemporaryDirectory(prefix="kill-probe-") as work:
            for layout in args.layouts.split(","):
                size, options = LAYOUTS[layout]
                corpus = build_corpus(Path(work) / f"{layout}.jsonl", size)
                reference = local_reference(corpus, Path(work) / f"{layout}-local", ("-q", *options[:2]))
                seen = calibrate(server, BUCKET, layout, corpus, ("-q", *options))
                kinds = {kind: seen.count(kind) for kind in dict.fromkeys(seen)}
                shards = sum(1 for name in reference if name.startswith("data-"))
                print(f"\n== {layout}: {shards} shards, {len(seen)} requests uninterrupted: {kinds}", flush=True)
                findings: list[Finding] = []
                started = time.monotonic()
                planned = [(point, None) for point in points_for(seen, args.spread, args.interrupts)] + resume_points(seen)
                for number, (point, then) in enumerate(planned):
                    findings.append(check_point(server, BUCKET, f"{layout}-{number:03d}", corpus, options, reference, point, then))
                    print(table(findings[-1:]).splitlines()[1], flush=True)
                print(f"\n{layout}: {len(findings)} points in {time.monotonic() - started:.0f} s\n{table(findings)}")
                failed += sum(1 for found in findings if found.failures)
    finally:
        with contextlib.suppress(Exception):
            server.stop()
    print(f"\n{failed} point(s) failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
