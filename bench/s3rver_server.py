"""s3rver, a second local S3 server for the benchmarks: Node.js, objects kept as files on disk.

Why a second server: moto, the tests' server (``tests/s3_server.py``), answers a
ranged GET by reading the whole object and slicing it (moto 5.2's
``_handle_range_header`` is handed the full body), so an input of 225 MB read in
8 MiB blocks costs it 28 reads of 225 MB. On the x100 corpus (eight such
files) that made moto use 54 to 56 s of CPU, most of its core, in runs of 65 to 68 s:
the figure measured moto, not the client. s3rver streams a range from its file
(``fs.createReadStream`` with start and end), as a real store serves only what
is asked. What it does not do: conditional writes, checksums, credentials
(any signature is taken, the key must be ``S3RVER``). Good for timing a clean
run, not for the tests of the lock or of faults, which stay on moto.

Installed on first use with npm into ``~/.cache/goldfish-prep/bench/s3rver``
(``GOLDFISH_BENCH_DIR`` moves it); needs Node.js and npm.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.s3_server import S3Server  # noqa: E402
from tests.server_process import ServerProcess, free_port  # noqa: E402

VERSION = "3.7.1"
KEY = ("S3RVER", "S3RVER")  # the only key s3rver knows


def s3rver_bin() -> Path:
    """The ``s3rver`` command, installed with npm the first time."""
    root = Path(os.environ.get("GOLDFISH_BENCH_DIR", Path.home() / ".cache" / "goldfish-prep" / "bench")) / "s3rver"
    command = root / "node_modules" / ".bin" / "s3rver"
    if not command.exists():
        if shutil.which("npm") is None:
            raise SystemExit("--server s3rver needs Node.js and npm (apt-get install npm)")
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--prefix", str(root), "--no-audit", "--no-fund", "--loglevel=error", f"s3rver@{VERSION}"], check=True
        )
    return command


class S3rver(S3Server):
    """s3rver in a child process, its objects in a temporary folder; the same interface as moto's ``S3Server``."""

    def __init__(self) -> None:  # S3Server's own, which starts moto, is not called
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._data = tempfile.mkdtemp(prefix="goldfish-s3rver-")
        command = [
            str(s3rver_bin()),
            "-d",
            self._data,
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "--silent",
            "--allow-mismatched-signatures",
        ]
        # its listings' continuation tokens use a cipher that OpenSSL 3 keeps in its legacy provider (seen on Node 20)
        env = {**os.environ, "NODE_OPTIONS": "--openssl-legacy-provider"}
        self._server = ServerProcess(command, f"{self.endpoint}/", "s3rver", env=env)

    def env(self, endpoint: str | None = None, key: tuple[str, str] = KEY) -> dict[str, str]:
        return super().env(endpoint, key)

    def client(self, service: str = "s3", key: tuple[str, str] = KEY, config: Any = None) -> Any:
        return super().client(service, key, config)

    def make_bucket(self, s3: Any, bucket: str) -> None:
        if bucket not in {entry["Name"] for entry in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(Bucket=bucket)  # s3rver answers a second create with BucketAlreadyExists, not ...OwnedByYou

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self._data, ignore_errors=True)
