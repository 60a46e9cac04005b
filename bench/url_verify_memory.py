"""Memory of ``goldfish-prep verify`` on an output by URL against the same output on local disk.

A one-shard output of pre-tokenized documents (400 ids each; ``--documents``
sets the shard's size: 64,000 give about 214 MB, four times s3fs's 50 MiB
upload part) is uploaded to moto's S3 server (``tests/s3_server.py``, on this
machine), then ``verify`` runs as a process of its own on the URL and on the
local folder, and its ``/proc/PID/status`` is sampled every 5 ms: the peak of
its anonymous memory (``RssAnon``: heap, Arrow buffers, NumPy arrays, which the
kernel cannot drop), of its file-backed resident pages (``RssFile``: mapped
files and libraries, which it can), and of the two together (``VmRSS``).

    python bench/url_verify_memory.py --documents 64000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.url_reads import make_output  # noqa: E402
from tests.s3_server import S3Server  # noqa: E402
from tests.shards import train_bpe  # noqa: E402

FIELDS = ("VmRSS", "RssAnon", "RssFile")


def sampled(command: list[str], env: dict[str, str]) -> tuple[dict[str, int], float, str]:
    """(peak kB of each of ``FIELDS``, wall seconds, output) of ``command`` run to its end."""
    peaks = dict.fromkeys(FIELDS, 0)
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while process.poll() is None:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
        except OSError:
            break
        for line in status.splitlines():
            name, _, value = line.partition(":")
            if name in peaks and value.strip():
                peaks[name] = max(peaks[name], int(value.split()[0]))
        time.sleep(0.005)
    output = process.communicate()[0]
    assert process.returncode == 0, output
    return peaks, time.perf_counter() - start, output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=64000, help="documents in the one shard (400 ids each)")
    args = parser.parse_args()
    server = S3Server()
    try:
        env = {**os.environ, **server.env(), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        with tempfile.TemporaryDirectory(prefix="goldfish-url-verify-") as work:
            root = Path(work)
            out = make_output(root, args.documents, train_bpe(root))
            server.upload("bench", out, "out/")
            size = (out / "data-00000.arrow").stat().st_size
            print(f"one shard of {size / 1e6:.1f} MB ({args.documents:,} documents)")
            print("| verify of | peak RssAnon MB | peak RssFile MB | peak VmRSS MB | wall s |")
            print("|---|---|---|---|---|")
            for label, where in (("local folder", str(out)), ("s3:// URL", "s3://bench/out")):
                peaks, seconds, _ = sampled([sys.executable, "-m", "goldfish_prep_cli", "verify", where], env)
                row = [label, *(f"{peaks[name] / 1e3:.0f}" for name in ("RssAnon", "RssFile", "VmRSS")), f"{seconds:.1f}"]
                print("| " + " | ".join(row) + " |", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
