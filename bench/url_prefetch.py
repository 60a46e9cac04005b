"""A URL input read whole, block after block against the next block fetched ahead (``readers.remote.open_binary``).

Why: the masking pass parses each block before it asks for the next, so a
GET's wait added to the run's time; ``open_binary(..., whole=True)`` uses
fsspec's ``background`` cache (the next 8 MiB block fetched while this one is
parsed, two held). This reads one object of ``--mb`` MB from moto's S3 server
(``tests/s3_server.py``) in 1 MiB reads with ``--work-ms`` of busy work per
MiB (standing in for the parsing), both ways, ``--rounds`` times in turn, and
prints each read's wall time; the bytes are checked against what was uploaded.

    python bench/url_prefetch.py                      # 100 MB, 3 ms per MiB, 3 rounds
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.s3_server import S3Server  # noqa: E402

BUCKET = "prefetch-bench"


def read_whole(path: str, whole: bool, work_s: float) -> tuple[float, bytes]:
    from goldfish_prep.readers import remote

    started, digest = time.perf_counter(), hashlib.sha256()
    with remote.open_binary(path, whole=whole) as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            until = time.perf_counter() + work_s
            while time.perf_counter() < until:  # the parsing a real pass would do meanwhile
                pass
    return time.perf_counter() - started, digest.digest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--work-ms", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server = S3Server()
    try:
        server.client().create_bucket(Bucket=BUCKET)
        data = os.urandom(args.mb << 20)
        server.client().put_object(Bucket=BUCKET, Key="input.bin", Body=data)
        os.environ.update(server.env())
        expected, url = hashlib.sha256(data).digest(), f"s3://{BUCKET}/input.bin"
        for round_index in range(args.rounds):
            for whole in (False, True):
                seconds, digest = read_whole(url, whole, args.work_ms / 1000)
                if digest != expected:
                    raise SystemExit("the bytes read differ from the object's")
                print(f"round {round_index}: {'fetched ahead' if whole else 'block after block':<17} {seconds:5.2f} s", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
