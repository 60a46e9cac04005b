"""A real S3-protocol server for the tests, and a faulty proxy to put in front of it.

``S3Server`` runs moto's server mode (``python -m moto.server``) as its own
process on 127.0.0.1 and a free port; the code under test reaches it exactly as
a user reaches an S3-compatible store, configured only by ``AWS_ENDPOINT_URL``
and the credentials variables (``env``). Test setup (buckets, objects) goes
through boto3, never through the code under test.

Signatures are not checked by default (moto's default); ``checking_credentials``
turns moto's IAM checks on for a block, with a user allowed everything and one
allowed nothing. (moto 5.2 computes a wrong signature for list requests whose
query holds a ``/``, so with checks on only single objects are asked about.)

``FaultyProxy`` forwards HTTP requests to the server and, as told, answers some
with 503 ``SlowDown``, stalls before answering, or cuts a body short: a store
under load, for the retry tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import http.server
import json
import os
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from goldfish_prep_cli.main import cli
from tests.server_process import ServerProcess, free_port

REGION = "us-east-1"
# moto accepts any key while its IAM checks are off
DEFAULT_KEY = ("goldfishtestkey", "goldfishtestsecret")
_ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


class S3Server:
    """moto's S3 server in a child process, for one test session."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = ServerProcess(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            f"{self.endpoint}/moto-api/data.json",
            "moto's server (is moto[server] installed?)",
        )

    @property
    def pid(self) -> int:
        return self._server.pid

    def env(self, endpoint: str | None = None, key: tuple[str, str] = DEFAULT_KEY) -> dict[str, str]:
        """The variables a user sets to reach this store (``endpoint``: another address in front of it)."""
        return {
            "AWS_ENDPOINT_URL": endpoint or self.endpoint,
            "AWS_ACCESS_KEY_ID": key[0],
            "AWS_SECRET_ACCESS_KEY": key[1],
            "AWS_DEFAULT_REGION": REGION,
        }

    def client(self, service: str = "s3", key: tuple[str, str] = DEFAULT_KEY, config: Any = None) -> Any:
        import boto3

        return boto3.client(
            service, endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=key[0], aws_secret_access_key=key[1], config=config
        )

    def upload(self, bucket: str, folder: Path, prefix: str = "") -> None:
        """Every file below ``folder`` as ``prefix`` + its relative path (the bucket is created if new)."""
        s3 = self.client()
        self.make_bucket(s3, bucket)
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                s3.upload_file(str(path), bucket, prefix + path.relative_to(folder).as_posix())

    def make_bucket(self, s3: Any, bucket: str) -> None:
        """Create ``bucket`` through the client ``s3`` unless it exists."""
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=bucket)

    @contextlib.contextmanager
    def checking_credentials(self) -> Iterator[tuple[tuple[str, str], tuple[str, str]]]:
        """moto's IAM checks on for the block; yields (a key allowed everything, a key allowed nothing)."""
        self._reset_auth(3)  # the three requests below make the allowed user; then every request is checked
        iam = self.client("iam")
        iam.create_user(UserName="reader")
        allowed = iam.create_access_key(UserName="reader")["AccessKey"]
        iam.put_user_policy(UserName="reader", PolicyName="all", PolicyDocument=json.dumps(_ALLOW_ALL))
        allowed_key = (allowed["AccessKeyId"], allowed["SecretAccessKey"])
        iam = self.client("iam", key=allowed_key)
        iam.create_user(UserName="stranger")
        denied = iam.create_access_key(UserName="stranger")["AccessKey"]
        try:
            yield allowed_key, (denied["AccessKeyId"], denied["SecretAccessKey"])
        finally:
            self._reset_auth(float("inf"))
            for user in ("reader", "stranger"):  # leave IAM as it was, for a later block
                for key in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
                    iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])
                with contextlib.suppress(Exception):
                    iam.delete_user_policy(UserName=user, PolicyName="all")
                iam.delete_user(UserName=user)

    def _reset_auth(self, free_requests: float) -> None:
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth", data=str(free_requests).encode(), method="POST", headers={"Content-Type": "text/plain"}
        )
        urllib.request.urlopen(request, timeout=10).close()

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    pytest.importorskip("moto.server", reason="the S3 tests need moto[server] (pip install -e '.[test]')")
    pytest.importorskip("s3fs", reason="s3:// inputs need s3fs (pip install 'goldfish-prep[s3]')")
    server = S3Server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The server, with the environment a user would set to reach it (and no other AWS configuration)."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    # a file system made for another module's server (each test module starts its own) must not be reused
    from goldfish_prep.readers.remote import use_storage_options

    use_storage_options(None)
    return s3_server


@contextlib.contextmanager
def empty_bucket(server: S3Server, name: str) -> Iterator[str]:
    """Bucket ``name`` on ``server`` for the block (created if new), then emptied: its objects deleted and its
    unfinished multipart uploads aborted, so the next test that uses it starts from nothing. Yields the name."""
    s3 = server.client()
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
            for entry in page.get("Contents", []):
                s3.delete_object(Bucket=name, Key=entry["Key"])
        for upload in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])


def bucket_fixture(name: str) -> Any:
    """A test module's ``bucket`` fixture: the server as a user reaches it (``s3_env``), with bucket ``name``
    empty at the start of each test (``empty_bucket``). In the module: ``bucket = fixtures.bucket_fixture(BUCKET)``."""

    @pytest.fixture
    def bucket(s3_env: S3Server) -> Iterator[S3Server]:
        with empty_bucket(s3_env, name):
            yield s3_env

    return bucket


class FaultyProxy:
    """An HTTP proxy to ``target`` that fails some requests as told (``fail``), thread-safe.

    ``fail(method, path, attempt)`` returns None to forward the request, ``"503"``
    to answer 503 SlowDown, ``"stall"`` to wait ``stall_s`` before forwarding, or
    ``"cut"`` to forward and then close the connection halfway through the body.
    ``requests`` keeps each request's method, path, headers (names in lower case) and the sha256 of its body, in the
    order they came.
    """

    def __init__(self, target: str, fail: Any, stall_s: float = 0.0) -> None:
        self.target = target.removeprefix("http://")
        self.fail = fail
        self.stall_s = stall_s
        self.counts: dict[str, int] = {}
        self.requests: list[tuple[str, str, dict[str, str], str]] = []
        self.faults = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                proxy._forward(self)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up on a stalled answer: expected, and not the test's output

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _forward(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        key = f"{handler.command} {handler.path}"
        with self._lock:
            attempt = self.counts.get(key, 0)
            self.counts[key] = attempt + 1
        fault = self.fail(handler.command, handler.path, attempt)
        if fault is not None:
            with self._lock:
                self.faults += 1
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in handler.headers.items()}
        with self._lock:
            self.requests.append((handler.command, handler.path, headers, hashlib.sha256(body).hexdigest()))
        if fault == "503":
            payload = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
            handler.send_response(503)
            handler.send_header("Content-Type", "application/xml")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload if handler.command != "HEAD" else b"")
            return
        if fault == "stall":
            time.sleep(self.stall_s)
        upstream = http.client.HTTPConnection(self.target, timeout=60)
        headers = {name: value for name, value in handler.headers.items() if name.lower() != "connection"}
        upstream.request(handler.command, handler.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        handler.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("connection", "transfer-encoding", "content-length", "server", "date"):
                handler.send_header(name, value)
        # a HEAD answer has no body: its Content-Length is the object's
        handler.send_header("Content-Length", response.getheader("Content-Length", "0") if handler.command == "HEAD" else str(len(data)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data[: len(data) // 2] if fault == "cut" else data)
        if fault == "cut":
            handler.close_connection = True
            handler.wfile.flush()
            handler.connection.shutdown(socket.SHUT_RDWR)
        upstream.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def run(*args: object, env: dict[str, str] | None = None) -> Result:
    """A goldfish-prep command in this process (``env``: variables set for it alone)."""
    return CliRunner(env=env).invoke(cli, [str(a) for a in args], catch_exceptions=False)


def error_line(result: Result) -> str:
    """The one line a failed command prints (and check that it is one line, with no traceback)."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]
