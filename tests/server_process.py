"""A store's emulator as a child process of the test session: started, waited for, stopped.

The S3, GCS and Azure servers of the suite (``s3_server.py``, ``gcs_server.py``,
``azure_server.py``) differ in their program and in the request that shows they
are up; the life of the process is the same, and lives here.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ServerProcess:
    """``command`` in a child process, once ``probe`` (a URL) answers; ``stop`` ends it. ``env``: the child's whole
    environment (default: this process's)."""

    def __init__(
        self,
        command: list[str],
        probe: str,
        name: str,
        timeout_s: float = 60,
        cwd: Path | str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self._process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                urllib.request.urlopen(probe, timeout=2).close()
                return
            except urllib.error.HTTPError:
                return  # it answers (an unsigned request may be refused): it is up
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{name} did not start ({command[0]})") from None
                time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self._process.pid

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
