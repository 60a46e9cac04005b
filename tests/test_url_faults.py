"""An output on object storage under faults the store itself causes: a full bucket, a stale lock, an overwrite cut off.

Against the real S3-protocol server of ``tests/s3_server.py`` (moto's server
mode), reached as a user reaches a store (``AWS_ENDPOINT_URL`` and keys), with
a proxy in front of it that answers chosen requests as a full store does. The
objects are read back with boto3, never through the code under test.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from goldfish_prep.format.store_errors import CHECKSUMS_WHEN_REQUIRED
from tests import s3_server as fixtures
from tests import test_url_outputs as outputs
from tests.faults_support import start
from tests.s3_server import FaultyProxy, S3Server, error_line, run
from tests.test_url_outputs import BUCKET, KILL_OPTIONS, MULTIPART, OPTIONS, objects

# the server, a bucket emptied after each test, the corpora and the local runs' files (see tests/test_url_outputs.py)
s3_server, s3_env = fixtures.s3_server, fixtures.s3_env
bucket, corpus, big_corpus = outputs.bucket, outputs.corpus, outputs.big_corpus
reference, big_reference, one_shard_reference = outputs.reference, outputs.big_reference, outputs.one_shard_reference


class FullStore(FaultyProxy):
    """A proxy that answers the requests ``refuse(method, path)`` picks as a full store does: ``(status, code)``, or
    ``(status, code, message)`` for another answer."""

    def __init__(self, target: str, refuse: Any) -> None:
        super().__init__(target, lambda method, path, attempt: None)
        self.refuse = refuse
        self.refused: list[str] = []

    def _forward(self, handler: Any) -> None:
        answer = self.refuse(handler.command, handler.path)
        if answer is None:
            super()._forward(handler)
            return
        status, code, *words = answer
        message = (
            words[0]
            if words
            else "The bucket has reached its storage limit."
            if code
            else "Storage backend has reached its minimum free drive threshold."
        )
        self._answer(handler, status, code, message)

    def _answer(self, handler: Any, status: int, code: str, message: str) -> None:
        self.refused.append(f"{handler.command} {handler.path}")
        handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        payload = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/xml")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)


# --- a full bucket or a quota -----------------------------------------------------------------------


def is_part(number: int) -> Any:
    return lambda method, path: method == "PUT" and "/data-00000.arrow?" in path and f"partNumber={number}" in path


def is_completion(method: str, path: str) -> bool:
    return method == "POST" and "/data-00000.arrow?" in path and "uploadId=" in path


@pytest.mark.parametrize(
    ("request_", "status", "code"),
    [
        (is_part(1), 507, "InsufficientStorage"),  # a drive full (MinIO answers 507)
        (is_completion, 403, "QuotaExceeded"),  # a bucket or user quota (Ceph RGW answers 403 QuotaExceeded)
    ],
    ids=["part-507", "completion-403-quota"],
)
def test_a_full_store_stops_a_multipart_shard_in_one_line_and_resume_finishes(
    bucket: S3Server, big_corpus: Path, one_shard_reference: dict[str, bytes], request_: Any, status: int, code: str
) -> None:
    url = f"s3://{BUCKET}/full"
    proxy = FullStore(bucket.endpoint, lambda method, path: (status, code) if request_(method, path) else None)
    try:
        result = run("mask", big_corpus, "-o", url, "-q", *MULTIPART, env=bucket.env(endpoint=proxy.endpoint))
    finally:
        proxy.close()
    line = error_line(result)
    assert line.startswith(f"Error: {url}/data-00000.arrow: the store is full or over its quota ("), line
    assert code in line and "storage limit" in line  # the store's own words
    assert line.endswith("Free space under the bucket or raise its quota, then rerun with --resume, which keeps finished shards")
    assert len(proxy.refused) == 1  # not retried: a full store stays full
    assert list(objects(bucket, "full")) == [".goldfish/run.json"]  # no shard, no record, no lock object
    assert bucket.client().list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []  # the upload was aborted
    result = run("mask", big_corpus, "-o", url, "-q", *MULTIPART, "--resume")  # the store takes writes again
    assert result.exit_code == 0, result.output
    assert objects(bucket, "full") == one_shard_reference


def test_a_full_store_refusing_a_small_shard_keeps_the_shards_before_it(
    bucket: S3Server, corpus: Path, reference: dict[str, bytes]
) -> None:
    url = f"s3://{BUCKET}/quota"
    full = {"on": False}

    def refuse(method: str, path: str) -> tuple[int, str] | None:
        full["on"] = full["on"] or (method == "PUT" and "/data-00003.arrow" in path)
        return (507, "") if full["on"] and method == "PUT" else None  # full from then on: every PUT refused, no code

    proxy = FullStore(bucket.endpoint, refuse)
    try:
        result = run("mask", corpus, "-o", url, *OPTIONS, env=bucket.env(endpoint=proxy.endpoint))
    finally:
        proxy.close()
    line = error_line(result)
    # two shards upload at once (pipeline._commits): the first refusal in shard order is shard 3's PUT, or shard 2's
    # record when shard 3's upload began before that record was written
    refused = {f"{url}/data-00003.arrow", f"{url}/.goldfish/shard-00002.json"}
    assert any(line.startswith(f"Error: {name}: the store is full or over its quota (") for name in refused), line
    left = objects(bucket, "quota")
    recorded = [
        name.replace(".goldfish/shard-", "data-").replace(".json", ".arrow") for name in sorted(left) if name.startswith(".goldfish/shard-")
    ]
    assert recorded in ([f"data-0000{i}.arrow" for i in range(n)] for n in (2, 3)), recorded  # the records: a prefix
    # every shard left is whole (a shard uploaded whose record was refused stays until --resume deletes it)
    assert set(recorded) <= {name for name in left if name.startswith("data-")}
    assert all(left[name] == reference[name] for name in left if not name.startswith(".goldfish/run"))
    assert ".goldfish/writer.lock" not in left  # the release is a DELETE, which a full store takes
    result = run("mask", corpus, "-o", url, *OPTIONS, "--resume")
    assert result.exit_code == 0, result.output
    assert objects(bucket, "quota") == reference


def test_a_key_that_may_not_list_open_uploads_still_runs_and_leaves_them_to_the_lifecycle_rule(
    bucket: S3Server, corpus: Path, reference: dict[str, bytes]
) -> None:
    """Aborting a dead run's open uploads is best effort (``UrlFolder.abort_open_uploads``): a key without
    ``s3:ListBucketMultipartUploads`` (the listing answered 403) costs the run nothing, and the upload stays for the
    bucket's lifecycle rule."""
    s3 = bucket.client()
    s3.create_multipart_upload(Bucket=BUCKET, Key="no-listing/data-00000.arrow")
    proxy = FullStore(bucket.endpoint, lambda method, path: (403, "AccessDenied") if method == "GET" and "uploads" in path else None)
    try:
        result = run("mask", corpus, "-o", f"s3://{BUCKET}/no-listing", *OPTIONS, env=bucket.env(endpoint=proxy.endpoint))
    finally:
        proxy.close()
    assert result.exit_code == 0, result.output
    assert len(proxy.refused) == 1 and "uploads" in proxy.refused[0]  # asked once, refused, not retried
    assert objects(bucket, "no-listing") == reference
    assert [upload["Key"] for upload in s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])] == ["no-listing/data-00000.arrow"]


# --- a lock object left by a dead run: who may take it over -----------------------------------------


def lock_object(pid: int, machine: str | None) -> bytes:
    """A lock object as a run writes it, for a process ``pid`` of this host name on ``machine``."""
    from goldfish_prep.format.lock import process_start

    fields = {"command": "goldfish-prep mask c.jsonl -o s3://outputs/x", "host": socket.gethostname(), "pid": pid}
    fields.update(started=process_start(pid) or 1.8e9, machine=machine)
    return json.dumps(fields, sort_keys=True).encode() + b"\n"


def dead_pid() -> int:
    """The pid of a process that has ended (and was reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_only_a_dead_holder_of_this_machine_is_taken_over(bucket: S3Server) -> None:
    from goldfish_prep.format.folder import open_folder
    from goldfish_prep.format.lock import LockHeldError
    from goldfish_prep.format.object_lock import machine_id

    here = machine_id()
    if here is None:
        pytest.skip("needs Linux's boot id and pid namespace")
    folder, s3, key = open_folder(f"s3://{BUCKET}/stale"), bucket.client(), "stale/.goldfish/writer.lock"
    gone = dead_pid()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for left in (
            lock_object(sleeper.pid, here),  # alive on this machine
            lock_object(gone, "another-boot pid:[4026531836]"),  # same host name, another machine (or container)
            lock_object(gone, None),  # written without a machine: cannot be judged
        ):
            s3.put_object(Bucket=BUCKET, Key=key, Body=left)
            with pytest.raises(LockHeldError):
                folder.lock(".goldfish/writer.lock").acquire()
            assert objects(bucket, "stale")[".goldfish/writer.lock"] == left  # untouched
    finally:
        sleeper.kill()
        sleeper.wait()
    s3.put_object(Bucket=BUCKET, Key=key, Body=lock_object(gone, here))
    lock = folder.lock(".goldfish/writer.lock")
    lock.acquire()
    assert lock.taken_over is not None and lock.taken_over.pid == gone
    assert json.loads(objects(bucket, "stale")[".goldfish/writer.lock"])["pid"] == os.getpid()
    lock.release()
    assert objects(bucket, "stale") == {}


class _Stopped(BaseException):
    """What this test's SIGINT handler raises: a stop as the CLI's is (not an ``Exception``, which ``translated`` turns
    into a store error), but not a ``KeyboardInterrupt``, which would stop pytest itself if it escaped."""


def test_a_stop_while_the_lock_object_is_created_leaves_no_lock_object(bucket: S3Server) -> None:
    """SIGINT arrives while the lock's create-once PUT is on its way (the proxy sends it, then waits before it
    forwards the PUT). ``acquire`` holds the stop until it knows the object is its own, deletes it, and only then
    raises the stop: no lock object outlives the run. Before, the stop was raised at once and the PUT landed after
    it, a lock naming a dead process that a run on another machine could not take over (``bench/kill_probe.py``)."""
    from goldfish_prep.format.url_folder import UrlFolder
    from goldfish_prep.readers.remote import use_storage_options

    def stop_at_the_lock_put(method: str, path: str, attempt: int) -> None:
        if method == "PUT" and path.split("?", 1)[0].endswith("/.goldfish/writer.lock") and attempt == 0:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)  # the main thread has the signal now, long before the store has the object

    def stopped(signum: int, frame: object) -> None:
        raise _Stopped

    proxy = FaultyProxy(bucket.endpoint, stop_at_the_lock_put)
    previous = signal.signal(signal.SIGINT, stopped)
    use_storage_options({"endpoint_url": proxy.endpoint})
    try:
        lock = UrlFolder(f"s3://{BUCKET}/stopped", writing=True).lock(".goldfish/writer.lock")
        with pytest.raises(_Stopped):
            lock.acquire()
        time.sleep(1.5)  # a PUT still on its way would have landed by now
    finally:
        signal.signal(signal.SIGINT, previous)
        use_storage_options(None)
        proxy.close()
    assert any(method == "PUT" for method, *_ in proxy.requests)  # the stop came during the create, as meant
    assert ".goldfish/writer.lock" not in objects(bucket, "stopped")


def test_a_stop_while_the_finished_run_deletes_its_lock_object_leaves_the_output_whole(
    bucket: S3Server, corpus: Path, reference: dict[str, bytes]
) -> None:
    """SIGINT reaches a real ``mask`` process while the DELETE of its lock object, its very last request, is on its
    way (the proxy sends the signal, then waits before it forwards the DELETE): the output is whole, without its lock
    object, and the process ends as a stop does (130). The DELETE had left the process before the signal, so this
    does not show the hold in ``release`` (the test below does); it shows that a stop at the very end costs nothing."""
    process: list[subprocess.Popen[str]] = []

    def stop_at_the_lock_delete(method: str, path: str, attempt: int) -> None:
        if method == "DELETE" and path.split("?", 1)[0].endswith("/.goldfish/writer.lock") and attempt == 0:
            os.kill(process[0].pid, signal.SIGINT)
            time.sleep(0.5)  # the run's main thread has the signal now, long before the store has the DELETE

    proxy = FaultyProxy(bucket.endpoint, stop_at_the_lock_delete)
    try:
        process.append(start(corpus, "-o", f"s3://{BUCKET}/late", *OPTIONS[1:], env=bucket.env(endpoint=proxy.endpoint)))
        _, stderr = process[0].communicate(timeout=120)
    finally:
        proxy.close()
    assert any(method == "DELETE" for method, *_ in proxy.requests)  # the stop came during the DELETE, as meant
    assert objects(bucket, "late") == reference, stderr
    assert process[0].returncode == 128 + signal.SIGINT, stderr


def test_a_stop_just_before_the_lock_object_is_deleted_is_held_until_it_is(bucket: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGINT arrives as ``release`` is about to send the DELETE (from inside the call that sends it, before it
    sends): held until the store has answered, then raised. Without the hold the stop ends the run before the
    request leaves, and the lock object stays, naming a dead process that a run on another machine cannot take over."""
    from goldfish_prep.format.url_folder import UrlFolder

    def stopped(signum: int, frame: object) -> None:
        raise _Stopped

    lock = UrlFolder(f"s3://{BUCKET}/released", writing=True).lock(".goldfish/writer.lock")
    lock.acquire()
    assert ".goldfish/writer.lock" in objects(bucket, "released")
    delete = lock._fs.rm_file

    def stop_then_delete(path: str) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)  # the handler would run here, at the next instruction, were the stop not held
        delete(path)

    monkeypatch.setattr(lock._fs, "rm_file", stop_then_delete)
    previous = signal.signal(signal.SIGINT, stopped)
    try:
        with pytest.raises(_Stopped):
            lock.release()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert ".goldfish/writer.lock" not in objects(bucket, "released")


def test_of_two_runs_taking_over_one_dead_lock_only_one_wins(bucket: S3Server) -> None:
    """Both judge the holder dead; the take-over is a PUT with If-Match on the ETag each read, so the store lets
    the first replace the object and refuses the second (412): it never overwrites the new holder."""
    from goldfish_prep.format.folder import open_folder
    from goldfish_prep.format.lock import LockHeldError
    from goldfish_prep.format.object_lock import machine_id

    here = machine_id()
    if here is None:
        pytest.skip("needs Linux's boot id and pid namespace")
    folder, key = open_folder(f"s3://{BUCKET}/race"), "race/.goldfish/writer.lock"
    bucket.client().put_object(Bucket=BUCKET, Key=key, Body=lock_object(dead_pid(), here))
    late, first = folder.lock(".goldfish/writer.lock"), folder.lock(".goldfish/writer.lock")
    judged = late._stale()  # the late run has read the dead holder's object and judged it ...
    assert judged is not None and judged[1]
    first.acquire()  # ... when the first run takes it over
    won = objects(bucket, "race")[".goldfish/writer.lock"]
    with pytest.raises(LockHeldError):
        late._take_over(b'{"late": true}\n', *judged)
    assert objects(bucket, "race")[".goldfish/writer.lock"] == won
    first.release()


def test_a_killed_task_s_lock_is_taken_over_by_the_rerun_of_that_task(bucket: S3Server, corpus: Path) -> None:
    """``--num-tasks`` task 0 SIGKILLed mid-run: the same task rerun with --resume takes over its lock object."""
    url = f"s3://{BUCKET}/task"
    process = start(corpus, "-o", url, "--shard-size", "4KB", "--num-tasks", 2, "--task-index", 0, env=bucket.env())
    try:
        outputs.wait_for_object(bucket, "task/.goldfish/shard-00002.json", process)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=60)
    assert ".goldfish/task-00000-of-00002.lock" in objects(bucket, "task")
    result = run("mask", corpus, "-o", url, "--shard-size", "4KB", "--num-tasks", 2, "--task-index", 0, "--resume")
    assert result.exit_code == 0, result.output
    assert f"note: took over {url}/.goldfish/task-00000-of-00002.lock, left by pid {process.pid} on " in result.output
    assert ".goldfish/task-00000-of-00002.lock" not in objects(bucket, "task")


# --- --overwrite of a finished output on the store ----------------------------------------------------


def test_an_overwrite_killed_mid_run_keeps_the_old_output_until_resume_commits_the_new(
    bucket: S3Server, big_corpus: Path, big_reference: dict[str, bytes]
) -> None:
    """The finished output is moved aside whole (server-side copies into .goldfish/replaced/) before the new run
    writes; SIGKILL then leaves it there intact, and the rerun with --resume finishes the new output and drops it."""
    url = f"s3://{BUCKET}/over"
    assert run("mask", big_corpus, "-o", url, *KILL_OPTIONS, "--k", "3").exit_code == 0
    old = objects(bucket, "over")
    process = start(big_corpus, "-o", url, *KILL_OPTIONS[1:], "--overwrite", env=bucket.env())
    try:
        # the old records are moved aside last; then the new run's second shard completes
        last = max(name for name in old if name.startswith(".goldfish/shard-"))
        outputs.wait_for_object(bucket, f"over/.goldfish/replaced/{last}", process)
        outputs.wait_for_object(bucket, "over/.goldfish/shard-00001.json", process)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=60)
    left = objects(bucket, "over")
    aside = ".goldfish/replaced/"
    assert {name[len(aside) :]: data for name, data in left.items() if name.startswith(aside)} == old  # whole, byte for byte
    assert "state.json" not in left and "goldfish_manifest.json" not in left  # neither output looks finished
    result = run("mask", big_corpus, "-o", url, *KILL_OPTIONS, "--resume")  # takes the dead run's lock over
    assert result.exit_code == 0, result.output
    assert objects(bucket, "over") == big_reference  # the new output, and nothing of the old


def test_an_overwrite_that_fails_puts_the_old_output_back(bucket: S3Server, corpus: Path, tmp_path: Path) -> None:
    url = f"s3://{BUCKET}/back"
    assert run("mask", corpus, "-o", url, *OPTIONS).exit_code == 0
    old = objects(bucket, "back")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(corpus.read_bytes() + b"{not json\n")
    result = run("mask", bad, "-o", url, *OPTIONS[1:], "--overwrite")
    assert result.exit_code == 1
    assert f"note: the run failed, so the finished output it was replacing is back in {url}" in result.output
    assert result.output.strip().splitlines()[-1].startswith(f"Error: {bad} line ")
    assert objects(bucket, "back") == old


# --- verify on a URL output holds no shard in memory --------------------------------------------------


def test_a_whole_shard_read_by_url_is_mapped_from_a_temporary_file_not_held_in_memory(
    bucket: S3Server, big_corpus: Path, one_shard_reference: dict[str, bytes]
) -> None:
    import pyarrow as pa

    from goldfish_prep.format.folder import open_folder

    assert run("mask", big_corpus, "-o", f"s3://{BUCKET}/whole", "-q", "--shard-size", "8MB").exit_code == 0
    folder = open_folder(f"s3://{BUCKET}/whole")
    before = pa.total_allocated_bytes()
    shard = folder.read_shard_bytes("data-00000.arrow")
    size = len(one_shard_reference["data-00000.arrow"])
    assert pa.total_allocated_bytes() - before < size // 10  # Arrow holds none of it: the pages are a mapped file's
    assert shard.buffer.to_pybytes() == one_shard_reference["data-00000.arrow"]
    assert shard.checksums["sha256"] == json.loads(one_shard_reference[".goldfish/shard-00000.json"])["sha256"]
    assert shard.table().num_rows > 0


# --- a store that does not take the checksum headers, or finds a body damaged ----------------------------


class NoChecksums(FullStore):
    """An S3-compatible store that refuses a request carrying a checksum (``x-amz-checksum-crc32``, ``-sha256`` ...), as
    some did when botocore began to send one by default (1.36, January 2025)."""

    def __init__(self, target: str) -> None:
        super().__init__(target, lambda method, path: None)

    def _forward(self, handler: Any) -> None:
        sent = [name for name in handler.headers if name.lower().startswith("x-amz-checksum-") and name.lower() != "x-amz-checksum-mode"]
        if sent:
            self._answer(handler, 400, "InvalidArgument", f"Unsupported header '{sent[0].lower()}' received for this API call.")
        else:
            super()._forward(handler)


def test_a_store_that_refuses_checksum_headers_names_the_setting_that_turns_them_off(
    bucket: S3Server, corpus: Path, reference: dict[str, bytes]
) -> None:
    url = f"s3://{BUCKET}/no-checksums"
    proxy = NoChecksums(bucket.endpoint)
    try:
        line = error_line(run("mask", corpus, "-o", url, *OPTIONS, env=bucket.env(endpoint=proxy.endpoint)))
        assert ": the store does not take the checksum sent with each request (InvalidArgument: " in line, line
        assert "Unsupported header 'x-amz-checksum-" in line, line  # the store's own words
        assert line.endswith(f"Set {CHECKSUMS_WHEN_REQUIRED} and rerun with --resume"), line
        # the setting it names works against the same store
        env = {**bucket.env(endpoint=proxy.endpoint), "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required"}
        result = run("mask", corpus, "-o", url, *OPTIONS, "--resume", env=env)
    finally:
        proxy.close()
    assert result.exit_code == 0, result.output
    assert objects(bucket, "no-checksums") == reference


def test_a_shard_the_store_finds_damaged_on_the_way_is_sent_again_or_one_line(
    bucket: S3Server, corpus: Path, reference: dict[str, bytes]
) -> None:
    """A store that finds a body other than its checksum says (``BadDigest``): the client sends it again; a store
    that keeps finding it so stops the run in one line, and ``--resume`` finishes."""
    message = "The SHA256 you specified did not match the calculated checksum."
    damaged: list[str] = []

    def damage(times: float) -> Any:
        def refuse(method: str, path: str) -> tuple[int, str, str] | None:
            if len(damaged) >= times or method != "PUT" or "/data-00002.arrow" not in path:
                return None
            damaged.append(path)
            return 400, "BadDigest", message

        return refuse

    proxy = FullStore(bucket.endpoint, damage(1))
    try:
        result = run("mask", corpus, "-o", f"s3://{BUCKET}/resent", *OPTIONS, env=bucket.env(endpoint=proxy.endpoint))
        assert result.exit_code == 0, result.output
        assert len(damaged) == 1
        assert objects(bucket, "resent") == reference
        url = f"s3://{BUCKET}/damaged"
        proxy.refuse = damage(float("inf"))
        line = error_line(run("mask", corpus, "-o", url, *OPTIONS, env=bucket.env(endpoint=proxy.endpoint)))
    finally:
        proxy.close()
    assert line == (
        f"Error: {url}/data-00002.arrow: the store received bytes that differ from their checksum (BadDigest: [Errno 22] {message}): "
        "they were damaged on the way. Rerun with --resume, which keeps finished shards"
    ), line
    assert "data-00002.arrow" not in objects(bucket, "damaged")
    result = run("mask", corpus, "-o", url, *OPTIONS, "--resume")
    assert result.exit_code == 0, result.output
    assert objects(bucket, "damaged") == reference
