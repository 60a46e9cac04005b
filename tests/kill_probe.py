"""Kill a real ``mask -o s3://...`` at a chosen request, then check what the store holds, its readers and --resume.

The commit protocol on object storage (docs/remote.md) promises that a run
stopped at *any* moment leaves a folder no reader takes for complete and that
``--resume`` ends it with the bytes of an uninterrupted run. The kill tests of
``test_url_outputs.py`` stop a run at a few moments chosen by hand; this probe
stops it at moments chosen by the requests themselves, so that no moment is
skipped because nobody thought of it.

``KillingProxy`` stands between the run and moto's server and numbers every
request as it arrives. A ``KillPoint`` names one: the n-th request overall, or
the n-th of a kind (a part, a ``CompleteMultipartUpload``, a record PUT, the
manifest, ...), and whether the run dies *before* the store sees it (the
request is dropped) or *after* (the store applied it, the answer never comes
back). At that request the proxy sends the signal to the run's process group:
SIGKILL (nothing is cleaned up, as after the OOM killer) or SIGINT (Ctrl-C:
the request is forwarded and the run cleans up). One point is a scenario of
its own: shard ``m``'s upload is held until shard ``m + 1``'s (the two are in
flight together, ``pipeline/_commits.py``) has completed, and the run dies
then: a later shard whole on the store, an earlier one missing.

Deterministic, not timed: the kill happens at a request, whatever the
machine's speed. Two uploads run at once, so the order of two requests of
different shards can differ between runs; the point's kind is what the proxy
saw at the kill.

After the kill ``check_point`` asks (each answer is a ``Finding``, every one
must hold):

- ``verify`` and ``stats`` of the folder (lock object present) either refuse
  in one ``Error:`` line or find the folder complete (byte-identical to the
  uninterrupted run's files);
- the same with the lock object deleted, as the user is told to on another
  machine (then put back): a folder without its manifest or ``state.json`` is
  refused, never read;
- after SIGINT: exit 130, no lock object, no multipart upload left;
- ``mask --resume`` (the same machine: it takes over a dead holder's lock)
  exits 0 and every object is byte-identical to a local run's file, lock files
  aside; the multipart uploads still open afterwards are listed (only uploads
  the killed run began can be left: ``--resume`` does not abort them, an
  ``AbortIncompleteMultipartUpload`` lifecycle rule does).

Used by ``tests/test_kill_anywhere.py`` (a few points) and ``bench/kill_probe.py``
(the sweep).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.s3_server import FaultyProxy, S3Server

ROOT = Path(__file__).resolve().parents[1]
#: out of order: how long a run that makes no request is left before it is stopped (it waits for the held upload,
#: so it makes none; the bound only ends the wait, what is checked does not depend on it)
QUIET_S = 1.0

#: request kinds, by the first pattern (on "METHOD path") that matches
KINDS = (
    ("create-upload", r"^POST .*\?uploads"),
    ("part", r"^PUT .*[?&]partNumber="),
    ("complete", r"^POST .*[?&]uploadId="),
    ("abort", r"^DELETE .*[?&]uploadId="),
    ("shard-put", r"^PUT .*/data-\d{5}\.arrow$"),
    ("record", r"^PUT .*/\.goldfish/shard-\d{5}\.json"),
    ("lock-put", r"^PUT .*\.lock"),
    ("lock-delete", r"^DELETE .*\.lock"),
    ("run-json", r"^PUT .*/\.goldfish/run\.json"),
    ("dataset-info", r"^PUT .*/dataset_info\.json"),
    ("manifest", r"^PUT .*/goldfish_manifest\.json"),
    ("state", r"^PUT .*/state\.json"),
    ("delete", r"^DELETE "),
    ("delete-many", r"^POST .*\?delete"),
    ("list", r"^GET [^?]*\?(.*&)?(list-type|prefix|delimiter)="),
    ("read", r"^(GET|HEAD) "),
)


def jsonl_corpus(path: Path, texts: list[str], size: int) -> Path:
    """JSON lines of ``texts`` (each numbered, so no two lines are equal) until ``path`` holds ``size`` bytes."""
    texts = [text for text in texts if 0 < len(text) < 20_000]
    with path.open("w", encoding="utf-8") as out:
        number = 0
        while out.tell() < size:
            out.write(json.dumps({"text": f"{number}\n{texts[number % len(texts)]}"}) + "\n")
            number += 1
    return path


def kind_of(method: str, path: str) -> str:
    request = f"{method} {path}"
    for name, pattern in KINDS:
        if re.search(pattern, request):
            return name
    return "other"


@dataclass(frozen=True)
class KillPoint:
    """Where to stop a run: the ``nth`` request overall, or the ``nth`` of ``kind``; ``when`` the store has seen
    it ("after") or not ("before"); ``out_of_order``: shard ``nth``'s upload held until shard ``nth + 1``'s is
    complete, then the kill (``kind`` and ``when`` unused)."""

    signal: int
    nth: int
    kind: str | None = None
    when: str = "after"
    out_of_order: bool = False

    @property
    def label(self) -> str:
        name = "KILL" if self.signal == signal.SIGKILL else "INT"
        if self.out_of_order:
            return f"{name} shard {self.nth + 1} done, {self.nth} held"
        where = f"{self.kind} #{self.nth}" if self.kind else f"request #{self.nth}"
        return f"{name} {self.when} {where}"


class KillingProxy(FaultyProxy):
    """A proxy that numbers the requests of one run and stops the run at its ``KillPoint`` (``None``: never)."""

    def __init__(self, target: str, point: KillPoint | None) -> None:
        super().__init__(target, lambda method, path, attempt: None)
        self.point = point
        self.seen: list[str] = []  # the kind of each request, in the order they arrived
        self.killed_at: str | None = None  # "kind #n of N" of the request at which the signal was sent
        self.pid: int | None = None
        self.stopped = threading.Event()  # the signal was sent
        self._active = 0
        self._release = threading.Event()  # out_of_order: the held upload may go on (to a dead process)
        self._armed = threading.Event()  # out_of_order: the later shard is whole
        self._fired = False

    def _forward(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        method, path = handler.command, handler.path
        kind = kind_of(method, path)
        with self._lock:
            dead = self.stopped.is_set() and self.point is not None and self.point.signal == signal.SIGKILL
            if not dead:
                self.seen.append(kind)
            number = len(self.seen)
            of_kind = self.seen.count(kind)
            self._active += 1
        try:
            if dead:  # a request the killed process had not yet sent in full: the store never sees it
                return self._drop(handler)
            point = self.point
            if point is None or self.stopped.is_set():
                return super()._forward(handler)
            if point.out_of_order:
                return self._out_of_order(handler, point, path)
            hit = (of_kind == point.nth) if point.kind else (number == point.nth)
            if not hit or (point.kind and point.kind != kind):
                return super()._forward(handler)
            self.killed_at = f"{kind} #{of_kind} (request {number})"
            if point.signal != signal.SIGKILL:  # Ctrl-C: the request goes on, and the run cleans up
                self._stop(point.signal)
                return super()._forward(handler)
            if point.when == "before":
                self._stop(point.signal)
                return self._drop(handler)
            self._forward_then(handler, lambda: self._stop(point.signal))
        finally:
            with self._lock:
                self._active -= 1

    def _out_of_order(self, handler: http.server.BaseHTTPRequestHandler, point: KillPoint, path: str) -> None:
        shard = re.search(r"/data-(\d{5})\.arrow", path)
        number = int(shard.group(1)) if shard else -1
        # the request that makes a shard appear: its one PUT, or its CompleteMultipartUpload
        finishing = (handler.command == "PUT" and "partNumber=" not in path) or (handler.command == "POST" and "uploadId=" in path)
        if number == point.nth and finishing:
            self._release.wait(120)  # until the later shard is whole and the run stopped
            if self.stopped.is_set() and point.signal == signal.SIGKILL:
                return self._drop(handler)
        if number == point.nth + 1 and finishing and not self._armed.is_set():
            # the later shard whole, and the run hears it; it is stopped at its next request (forwarded first: a
            # record of that shard, written before the earlier shard is whole, would land), or once it makes none
            super()._forward(handler)
            self.killed_at = f"shard {number} whole, shard {point.nth}'s finish held"
            self._armed.set()
            threading.Timer(QUIET_S, self._fire, (point, None)).start()
            return None
        if self._armed.is_set():
            return self._fire(point, handler)
        return super()._forward(handler)

    def _fire(self, point: KillPoint, handler: http.server.BaseHTTPRequestHandler | None) -> None:
        """Out of order: stop the run at the first request after the later shard's (``handler``), or once it has
        made none for ``QUIET_S`` (``handler`` None: the run waits for the held upload, as it must)."""
        with self._lock:
            first, self._fired = not self._fired, True
        if not first:
            return super()._forward(handler) if handler is not None else None
        if handler is None:
            self.killed_at = f"{self.killed_at}, then no request"
            return self._stop(point.signal, release=True)
        self.killed_at = f"{self.killed_at}, then {kind_of(handler.command, handler.path)}"
        if point.signal == signal.SIGKILL:
            return self._forward_then(handler, lambda: self._stop(point.signal, release=True))
        super()._forward(handler)
        return self._stop(point.signal, release=True)

    def _forward_then(self, handler: http.server.BaseHTTPRequestHandler, then: Any) -> None:
        """Forward the request to the store, then (before its answer reaches the run) call ``then``."""
        original = handler.send_response

        def send_response(code: int, message: str | None = None) -> None:
            then()
            handler.send_response = original  # type: ignore[method-assign]
            handler.close_connection = True
            raise ConnectionAbortedError("the run is dead")

        handler.send_response = send_response  # type: ignore[method-assign]
        try:
            super()._forward(handler)
        except ConnectionAbortedError:
            pass

    def _drop(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        if length:
            handler.rfile.read(length)
        handler.close_connection = True

    def _stop(self, number: int, release: bool = False) -> None:
        """Send signal ``number`` to the run's process group (``release``: then let a held upload go on)."""
        assert self.pid is not None
        try:
            os.killpg(self.pid, number)
        except ProcessLookupError:
            pass
        self.stopped.set()
        if release:
            self._release.set()

    def settle(self, timeout: float = 30) -> None:
        """Wait until no request is being handled (the ones the dead process had sent are in or dropped)."""
        self._release.set()
        deadline = time.monotonic() + timeout
        while self._active and time.monotonic() < deadline:
            time.sleep(0.01)


@dataclass
class Finding:
    """What one kill point left, and whether each promise held."""

    point: KillPoint
    then: KillPoint | None = None  # the resume's own stop, if any
    killed_at: str | None = None
    exit_code: int | None = None
    left: list[str] = field(default_factory=list)  # object names after the kill (shards, records, ...)
    uploads_after_kill: int = 0
    readers: str = ""  # what verify/stats said, in short
    resume_exit: int | None = None
    uploads_after_resume: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def store_env(server: S3Server, endpoint: str | None = None) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    env.update(server.env(endpoint), AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return env


def goldfish(server: S3Server, *args: object, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """A goldfish-prep command as its own process, straight to the store."""
    command = [sys.executable, "-m", "goldfish_prep_cli", *(str(a) for a in args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=store_env(server))


def start_mask(server: S3Server, endpoint: str, *args: object) -> subprocess.Popen[str]:
    """``mask`` as a real process in a group of its own, through ``endpoint``, with the stop signals at their defaults."""
    from tests.faults_support import default_stop_signals

    return subprocess.Popen(
        [sys.executable, "-m", "goldfish_prep_cli", "mask", *(str(a) for a in args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=store_env(server, endpoint),
        start_new_session=True,
        preexec_fn=default_stop_signals,
    )


def objects(server: S3Server, bucket: str, prefix: str) -> dict[str, bytes]:
    s3 = server.client()
    found: dict[str, bytes] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for entry in page.get("Contents", []):
            found[entry["Key"][len(prefix) + 1 :]] = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
    return found


def uploads(server: S3Server, bucket: str, prefix: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = server.client().list_multipart_uploads(Bucket=bucket, Prefix=prefix + "/").get("Uploads", [])
    return found


def clear(server: S3Server, bucket: str, prefix: str) -> None:
    s3 = server.client()
    for name in objects(server, bucket, prefix):
        s3.delete_object(Bucket=bucket, Key=f"{prefix}/{name}")
    for upload in uploads(server, bucket, prefix):
        s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])


def local_reference(corpus: Path, folder: Path, options: tuple[str, ...]) -> dict[str, bytes]:
    """An uninterrupted local run's files (lock files aside)."""
    result = subprocess.run(
        [sys.executable, "-m", "goldfish_prep_cli", "mask", str(corpus), "-o", str(folder), *options],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    found = {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}
    return {name: data for name, data in found.items() if not name.endswith(".lock")}


def without_locks(found: dict[str, bytes]) -> dict[str, bytes]:
    return {name: data for name, data in found.items() if not name.endswith(".lock")}


def calibrate(server: S3Server, bucket: str, prefix: str, corpus: Path, options: tuple[str, ...]) -> list[str]:
    """The kinds of the requests of an uninterrupted run through the proxy, in order."""
    proxy = KillingProxy(server.endpoint, None)
    try:
        process = start_mask(server, proxy.endpoint, corpus, "-o", f"s3://{bucket}/{prefix}", *options)
        proxy.pid = process.pid
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
    finally:
        proxy.close()
    clear(server, bucket, prefix)
    return proxy.seen


def _readers(server: S3Server, url: str, complete: bool, finding: Finding, when: str) -> str:
    """verify and stats of ``url``: a refusal must be one ``Error:`` line; an acceptance only of a complete folder."""
    said = []
    for command in ("verify", "stats"):
        result = goldfish(server, command, url)
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        if result.returncode == 0:
            said.append(f"{command} ok")
            if not complete:
                finding.failures.append(f"{when}: {command} accepted an incomplete folder: {lines[:3]}")
        else:
            said.append(f"{command} refused")
            if len(lines) != 1 or not lines[0].startswith("Error: "):
                finding.failures.append(f"{when}: {command} refused in {len(lines)} lines: {lines[-3:]}")
    return ", ".join(said)


def check_point(
    server: S3Server,
    bucket: str,
    prefix: str,
    corpus: Path,
    options: tuple[str, ...],
    reference: dict[str, bytes],
    point: KillPoint,
    then: KillPoint | None = None,
) -> Finding:
    """Run ``mask`` through a ``KillingProxy`` stopped at ``point``, then check the folder, its readers and --resume
    (``then``: the first ``--resume`` is stopped too, at that point of its own requests, and checked the same way)."""
    url = f"s3://{bucket}/{prefix}"
    finding = Finding(point, then)
    _stop_and_look(server, bucket, prefix, corpus, options, reference, point, finding, ())
    if then is not None:
        _stop_and_look(server, bucket, prefix, corpus, options, reference, then, finding, ("--resume",))
    resumed = goldfish(server, "mask", corpus, "-o", url, "-q", *options, "--resume")
    finding.resume_exit = resumed.returncode
    if resumed.returncode != 0:
        finding.failures.append(f"--resume exit {resumed.returncode}: {resumed.stderr.strip()[-300:]}")
    after = objects(server, bucket, prefix)
    if after != reference:
        differ = sorted(set(after) ^ set(reference) | {n for n in set(after) & set(reference) if after[n] != reference[n]})
        finding.failures.append(f"after --resume the objects differ from the local run's files: {differ[:6]}")
    finding.uploads_after_resume = sorted(upload["Key"][len(prefix) + 1 :] for upload in uploads(server, bucket, prefix))
    if finding.uploads_after_resume:  # the resume aborts what the dead run left open (``abort_open_uploads``)
        finding.failures.append(f"incomplete uploads left after --resume: {finding.uploads_after_resume}")
    clear(server, bucket, prefix)
    return finding


def _stop_and_look(
    server: S3Server,
    bucket: str,
    prefix: str,
    corpus: Path,
    options: tuple[str, ...],
    reference: dict[str, bytes],
    point: KillPoint,
    finding: Finding,
    extra: tuple[str, ...],
) -> None:
    """One run stopped at ``point``, and what it left checked; what is found is added to ``finding``."""
    url = f"s3://{bucket}/{prefix}"
    second = finding.killed_at is not None
    earlier = {upload["UploadId"] for upload in uploads(server, bucket, prefix)}  # left by a run before this one
    proxy = KillingProxy(server.endpoint, point)
    try:
        process = start_mask(server, proxy.endpoint, corpus, "-o", url, "-q", *options, *extra)
        proxy.pid = process.pid
        try:
            _, stderr = process.communicate(timeout=300)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate(timeout=60)
        proxy.settle()
    finally:
        proxy.close()
    if second:  # the resume, stopped in turn: the table shows both
        finding.killed_at = f"{finding.killed_at}; resume: {proxy.killed_at}"
    else:
        finding.killed_at = proxy.killed_at
        finding.exit_code = process.returncode
    if proxy.killed_at is None:
        finding.failures.append(f"the run never reached the point (exit {process.returncode}): {stderr.strip()[-300:]}")
    left = objects(server, bucket, prefix)
    if not second:
        finding.left = sorted(left)
        finding.uploads_after_kill = len(uploads(server, bucket, prefix))
    opened = len([upload for upload in uploads(server, bucket, prefix) if upload["UploadId"] not in earlier])
    complete = without_locks(left) == reference
    locks = [name for name in left if name.endswith(".lock")]
    if point.signal == signal.SIGINT:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        if process.returncode != 128 + signal.SIGINT and not (process.returncode == 0 and complete):
            finding.failures.append(f"SIGINT: exit {process.returncode}, not 130: {last}")
        if locks:
            finding.failures.append(f"SIGINT: lock object(s) left: {locks}")
        if opened:
            finding.failures.append(f"SIGINT: {opened} multipart upload(s) left open")
    elif process.returncode != -signal.SIGKILL:
        finding.failures.append(f"SIGKILL: exit {process.returncode}")
    # the records name a prefix of the shards (pipeline/_commits.py writes them in order, each after the one before)
    numbers = sorted(
        int(name[len(".goldfish/shard-") : -len(".json")]) for name in left if re.fullmatch(r"\.goldfish/shard-\d{5}\.json", name)
    )
    if numbers != list(range(len(numbers))):
        finding.failures.append(f"the records are not a prefix of the shards: {numbers}")
    # a shard counts only with its record, and then it must be whole
    for name, data in left.items():
        if re.fullmatch(r"\.goldfish/shard-\d{5}\.json", name):
            shard = json.loads(data)["filename"]
            if left.get(shard) != reference.get(shard):
                finding.failures.append(f"record {name} names {shard}, which is not the uninterrupted run's bytes")
    said = [_readers(server, url, complete and not locks, finding, "with the lock")]
    if locks:  # the user deletes the lock object, as told on another machine; then it is put back
        s3 = server.client()
        for name in locks:
            s3.delete_object(Bucket=bucket, Key=f"{prefix}/{name}")
        said.append("no lock: " + _readers(server, url, complete, finding, "lock deleted"))
        for name in locks:
            s3.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=left[name])
    finding.readers = (finding.readers + " / resume stopped: " if second else "") + "; ".join(said)


def table(findings: list[Finding]) -> str:
    """One line per point: where it stopped, what was left, what the readers said, and the verdict."""
    lines = [
        f"{'point':<34} {'stopped at':<42} {'exit':>4} {'shards/records':>14} {'mpu':>3} {'readers':<62} {'resume':>6} {'mpu':>3}  verdict"
    ]
    for found in findings:
        shards = sum(1 for name in found.left if re.fullmatch(r"data-\d{5}\.arrow", name))
        records = sum(1 for name in found.left if name.startswith(".goldfish/shard-"))
        verdict = "ok" if not found.failures else "FAIL: " + " | ".join(found.failures)
        lines.append(
            f"{found.point.label + (f' > resume {found.then.label}' if found.then else ''):<34} {found.killed_at or '-':<42} {found.exit_code!s:>4} {f'{shards}/{records}':>14} "
            f"{found.uploads_after_kill:>3} {found.readers:<62} {found.resume_exit!s:>6} {len(found.uploads_after_resume):>3}  {verdict}"
        )
    return "\n".join(lines)
