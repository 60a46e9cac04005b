"""``format.upload.UploadFile`` against a real S3 server (moto's, ``tests/s3_server.py``): a shard's parts are sent
by a thread while the caller writes on, the object appears only at ``commit``, and a part the store refuses is
one line at the caller's next write, with nothing left behind, and Ctrl-C while the caller waits for the thread
ends the run at once and aborts the upload. A proxy in front of the server holds a part's request until the test
lets it go, so the order of events is forced rather than timed."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from goldfish_prep.format.s3_upload import S3_PART_SIZE, S3_PARTS_IN_FLIGHT, S3Parts
from goldfish_prep.format.store_errors import StoreError
from goldfish_prep.format.upload import part_size_of
from goldfish_prep.format.url_folder import UrlFolder
from goldfish_prep.readers.remote import use_storage_options
from tests import s3_server as fixtures
from tests.faults_support import start
from tests.s3_server import FaultyProxy, S3Server, run
from tests.test_url_outputs import files, objects

# the server (one per session) and the environment a user sets to reach it (see tests/s3_server.py)
s3_server = fixtures.s3_server
s3_env = fixtures.s3_env

BUCKET = "upload-parts"
PART = 5 << 20  # the smallest part S3 takes


bucket = fixtures.bucket_fixture(BUCKET)


@contextlib.contextmanager
def through(proxy: FaultyProxy, **options: object) -> Iterator[UrlFolder]:
    """A fresh output folder whose requests go through ``proxy``."""
    use_storage_options({"endpoint_url": proxy.endpoint, **options})
    try:
        yield UrlFolder(f"s3://{BUCKET}/{uuid.uuid4().hex}", writing=True)
    finally:
        use_storage_options(None)
        proxy.close()


def keys(server: S3Server, folder: UrlFolder) -> list[str]:
    prefix = folder.url.removeprefix(f"s3://{BUCKET}/")
    listed = server.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/").get("Contents", [])
    return [entry["Key"].rsplit("/", 1)[-1] for entry in listed]


def uploads(server: S3Server) -> list[str]:
    return [upload["Key"] for upload in server.client().list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])]


def write_and_commit(server: S3Server, folder: UrlFolder, data: bytes) -> None:
    """Write ``data`` as shard 0 in 1 MiB writes (as the Arrow writer's), commit it, and check the object's bytes."""
    upload = folder.pending("data-00000.arrow")
    for offset in range(0, len(data), 1 << 20):
        upload.write(data[offset : offset + (1 << 20)])
    assert upload.commit() == hashlib.sha256(data).hexdigest()
    key = f"{folder.url.removeprefix(f's3://{BUCKET}/')}/data-00000.arrow"
    assert server.client().get_object(Bucket=BUCKET, Key=key)["Body"].read() == data


class HeldPart:
    """A ``FaultyProxy`` rule: hold the requests of parts ``numbers`` of ``name``'s upload (their first attempts)
    until ``release`` is set, for at most ``hold_s``: below the client's read timeout (60 s), so that a caller that
    waits for a part fails its test instead of the client retrying a held request for minutes. ``arrived`` is set
    when all of them have reached the proxy, ``sent`` when one is let go."""

    def __init__(self, hold_s: float, numbers: tuple[int, ...] = (1,), name: str = "data-00000.arrow") -> None:
        self.arrived, self.release, self.sent = threading.Event(), threading.Event(), threading.Event()
        self._hold_s, self._parts, self._name = hold_s, {f"partNumber={number}&" for number in numbers}, f"/{name}?"
        self._waiting: set[str] = set()

    def __call__(self, method: str, path: str, attempt: int) -> None:
        part = next((part for part in self._parts if part in path + "&"), None)
        if method == "PUT" and self._name in path and part is not None and attempt == 0:
            self._waiting.add(part)
            if self._waiting == self._parts:
                self.arrived.set()
            self.release.wait(self._hold_s)
            self.sent.set()


def test_the_caller_writes_on_while_a_part_is_sent_and_the_object_appears_at_commit(bucket: S3Server) -> None:
    part = HeldPart(hold_s=20)  # a caller that waits for the part fails the assert below after 20 s
    data = os.urandom(3 * PART + 12345)
    with through(FaultyProxy(bucket.endpoint, part), default_block_size=PART) as folder:
        upload = folder.pending("data-00000.arrow")
        upload.write(data[:PART])  # a whole part: handed to the sending thread
        assert part.arrived.wait(60), "the first part was never sent"
        upload.write(data[PART : 2 * PART])  # queued behind it: the caller does not wait for the request
        held = not part.sent.is_set()
        part.release.set()
        upload.write(data[2 * PART :])
        assert held, "the caller's write waited for the part's request"
        assert "data-00000.arrow" not in keys(bucket, folder)  # nothing visible before the commit
        assert upload.commit() == hashlib.sha256(data).hexdigest()
        assert upload.checksums()["sha256"] == hashlib.sha256(data).hexdigest()
        key = f"{folder.url.removeprefix(f's3://{BUCKET}/')}/data-00000.arrow"
        assert bucket.client().get_object(Bucket=BUCKET, Key=key)["Body"].read() == data
        assert uploads(bucket) == []


def test_a_shard_smaller_than_a_part_is_one_put(bucket: S3Server) -> None:
    seen: list[str] = []

    def watch(method: str, path: str, attempt: int) -> None:
        if "data-00000.arrow" in path:
            seen.append(f"{method} {path.split('?', 1)[1] if '?' in path else ''}".strip())

    with through(FaultyProxy(bucket.endpoint, watch)) as folder:
        assert part_size_of(folder.fs) == S3_PART_SIZE  # not s3fs's 50 MiB: several parts are sent at once
        data = os.urandom(5 << 20)
        upload = folder.pending("data-00000.arrow")
        for start in range(0, len(data), 1 << 20):
            upload.write(data[start : start + (1 << 20)])
        assert seen == []  # held in memory until the commit
        upload.commit()
    assert seen == ["PUT"]


def test_parts_are_sent_at_once_and_the_object_has_them_in_order(bucket: S3Server) -> None:
    """Part 1 held until parts 2 and 3 have reached the store: they were sent while it was on its way."""
    arrived: set[int] = set()
    later_parts = threading.Event()

    def hold_the_first(method: str, path: str, attempt: int) -> None:
        number = int(path.split("partNumber=", 1)[1].split("&", 1)[0]) if method == "PUT" and "partNumber=" in path else 0
        arrived.add(number)
        if {2, 3} <= arrived:
            later_parts.set()
        if number == 1 and attempt == 0:
            later_parts.wait(20)  # a sender that waits for part 1 before sending the next fails the assert below

    data = os.urandom(4 * PART + 12345)
    with through(FaultyProxy(bucket.endpoint, hold_the_first), default_block_size=PART) as folder:
        assert part_size_of(folder.fs) == PART  # the options' part size
        write_and_commit(bucket, folder, data)
    assert later_parts.is_set(), "parts 2 and 3 were sent only after part 1"
    assert {1, 2, 3, 4, 5} <= arrived and uploads(bucket) == []


def test_a_refused_part_is_one_line_at_the_next_write_and_nothing_is_left(bucket: S3Server) -> None:
    refused = threading.Event()

    def refuse_the_second_part(method: str, path: str, attempt: int) -> str | None:
        if method == "PUT" and "partNumber=2&" in path + "&":
            refused.set()
            return "503"
        return None

    retries = {"default_block_size": PART, "config_kwargs": {"retries": {"max_attempts": 1}}}
    with through(FaultyProxy(bucket.endpoint, refuse_the_second_part), **retries) as folder:
        upload = folder.pending("data-00000.arrow")
        chunk = os.urandom(PART)
        with pytest.raises(StoreError) as failed:  # met by a later write, or by the commit (parts are sent at once)
            for _ in range(50):
                upload.write(chunk)
            upload.commit()
        assert refused.is_set()
        line = str(failed.value)
        assert "\n" not in line and folder.where("data-00000.arrow") in line and "SlowDown" in line
        upload.abort()
        assert keys(bucket, folder) == [] and uploads(bucket) == []
        with pytest.raises(StoreError):
            upload.write(chunk)  # a failed upload stays failed


def test_an_abandoned_upload_leaves_nothing(bucket: S3Server) -> None:
    with through(FaultyProxy(bucket.endpoint, lambda method, path, attempt: None), default_block_size=PART) as folder:
        upload = folder.pending("data-00000.arrow")
        upload.write(os.urandom(2 * PART + 1))  # two parts on their way, and some bytes buffered
        upload.abort()
        assert keys(bucket, folder) == [] and uploads(bucket) == []


def test_a_cancelled_upload_fails_its_commit_and_leaves_nothing(bucket: S3Server) -> None:
    """``cancel`` (from the main thread, while a background commit may wait on the upload) aborts the upload: the
    commit then fails in one line instead of sending the rest and completing, and the store has nothing of it."""
    with through(FaultyProxy(bucket.endpoint, lambda method, path, attempt: None), default_block_size=PART) as folder:
        upload = folder.pending("data-00000.arrow")
        upload.write(os.urandom(2 * PART + 1))  # two parts on their way, and some bytes buffered
        upload.cancel()
        with pytest.raises(StoreError, match="the upload was abandoned"):
            upload.commit()
        upload.abort()  # what the committing thread does after the failure: no error over the one being handled
        assert keys(bucket, folder) == [] and uploads(bucket) == []


def test_a_discarded_s3_upload_refuses_to_complete(bucket: S3Server) -> None:
    """``S3Parts.close`` after ``discard`` (from another thread) fails: a completion that claimed success would let a
    record follow a shard that is not on the store."""
    import s3fs

    fs = s3fs.S3FileSystem()
    parts = S3Parts(fs, f"{BUCKET}/discarded.arrow")
    parts.write_part(1, os.urandom(PART))
    parts.discard()
    with pytest.raises(ValueError, match="aborted"):
        parts.close()
    assert uploads(bucket) == [] and not fs.exists(f"{BUCKET}/discarded.arrow")


# --- Ctrl-C while the caller waits for the sending thread -----------------------------------------------


#: one shard of about 42 MB (parts of 5 MiB or a little more, and a rest) from ``six_parts_corpus``
ONE_SHARD = ("--shard-size", "64MB")
INTERRUPTED = "Error: interrupted; completed shards are kept, rerun with --resume to continue"


@pytest.fixture(scope="module")
def six_parts_corpus(tmp_path_factory: pytest.TempPathFactory, real_texts: list[str]) -> Path:
    """About 22 MB of real texts as JSON lines: one shard of more than six parts of ``PART`` (the writer overshoots a
    part by up to a record batch)."""
    path = tmp_path_factory.mktemp("six-parts") / "corpus.jsonl"
    texts = [text for text in real_texts if 0 < len(text) < 20_000]
    with path.open("w", encoding="utf-8") as out:
        number = 0
        while out.tell() < 22_000_000:
            out.write(json.dumps({"text": f"{number}\n{texts[number % len(texts)]}"}) + "\n")
            number += 1
    return path


def wait_until_its_main_thread_waits(process: subprocess.Popen[str], looks: int = 25) -> None:
    """Until the process's main thread sleeps on a lock (a futex) without using CPU for ``looks`` looks in a row.

    With part 1 held at the proxy and part 2 queued, that is the caller's hand-over of part 3 waiting for the
    queue: nothing else would hold the main thread of a one-process run that long (it reads, tokenizes and
    writes; the sending thread holds the GIL for a moment at most)."""
    task = Path(f"/proc/{process.pid}/task/{process.pid}")
    deadline, last, still = time.monotonic() + 120, -1, 0
    while still < looks:
        assert process.poll() is None, f"the run ended before it waited: {process.communicate()}"
        assert time.monotonic() < deadline, "the main thread never waited for the sending thread"
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        cpu = int(fields[11]) + int(fields[12])  # utime and stime, the stat file's fields 14 and 15
        wchan = (task / "wchan").read_text()  # "0" where the kernel does not say
        still = still + 1 if fields[0] == "S" and ("futex" in wchan or wchan == "0") and cpu == last else 0
        last = cpu
        time.sleep(0.02)


def test_ctrl_c_while_the_caller_waits_on_a_full_queue_aborts_the_upload_and_resume_finishes(
    bucket: S3Server, six_parts_corpus: Path, tmp_path: Path
) -> None:
    """Parts 1 to 4 of the shard are held at the proxy (every sending thread waits), part 5 is queued behind them,
    and the run's write of part 6 waits for the queue. Ctrl-C then ends the run at once with the usual line (the held request is not waited for), the
    multipart upload is aborted (nothing of it left on the store), and --resume writes the bytes of a clean run."""
    held = tuple(range(1, S3_PARTS_IN_FLIGHT + 1))
    proxy = interrupted_while_held(bucket, six_parts_corpus, PART, held, queued=S3_PARTS_IN_FLIGHT + 1)
    assert proxy.counts  # the run went through the proxy
    resumed_equals_a_clean_run(bucket, six_parts_corpus, PART, tmp_path)


def test_ctrl_c_while_the_shard_commits_in_the_background_aborts_it_at_once(
    bucket: S3Server, six_parts_corpus: Path, tmp_path: Path
) -> None:
    """The whole shard has been handed over: with parts of 12 MiB its first three parts are on their way (held at
    the proxy), the rest waits for them in the background commit (``pipeline._commits``) and the main thread waits for
    that commit. Ctrl-C then cancels the upload: the run ends at once (not after the held requests) with the usual
    line, the upload is aborted, and --resume writes the bytes of a clean run."""
    part_size = 12 << 20
    clean = run("mask", six_parts_corpus, "-o", tmp_path / "clean", "-q", *ONE_SHARD)
    assert clean.exit_code == 0, clean.output
    size = (tmp_path / "clean" / "data-00000.arrow").stat().st_size
    assert 3 * part_size < size < 4 * part_size, size  # three parts handed over, the rest sent at the commit
    interrupted_while_held(bucket, six_parts_corpus, part_size, (1, 2, 3))
    resumed_equals_a_clean_run(bucket, six_parts_corpus, part_size, tmp_path)


def interrupted_while_held(bucket: S3Server, corpus: Path, part_size: int, held: tuple[int, ...], queued: int | None = None) -> FaultyProxy:
    """Run mask into s3://BUCKET/interrupted through a proxy that holds parts ``held`` of the shard (for 50 s, longer
    than the run may take to end, shorter than the client's read timeout); once they have all arrived and the run's
    main thread waits, Ctrl-C: the run must end within 30 s with the interrupt's one line and leave no upload open.
    ``queued``: a part that must still be queued, not sent, at that moment."""
    options = (*ONE_SHARD, "--storage-options", json.dumps({"default_block_size": part_size}))
    part = HeldPart(hold_s=50, numbers=held)
    proxy = FaultyProxy(bucket.endpoint, part)
    try:
        process = start(corpus, "-o", f"s3://{BUCKET}/interrupted", *options, env=bucket.env(endpoint=proxy.endpoint))
        try:
            assert part.arrived.wait(120), process.communicate()
            wait_until_its_main_thread_waits(process)
            if queued is not None:
                assert not [request for request in proxy.counts if f"partNumber={queued}&" in request + "&"]  # not sent
            os.killpg(process.pid, signal.SIGINT)
            try:
                _, stderr = process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                pytest.fail("mask hung after Ctrl-C (waiting for the held parts?)")
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
    finally:
        part.release.set()
        proxy.close()
    assert process.returncode == 128 + signal.SIGINT, stderr
    assert stderr.strip().splitlines() == [INTERRUPTED], stderr
    assert uploads(bucket) == []  # aborted: no part of the shard left on the store
    left = objects(bucket, "interrupted", bucket=BUCKET)
    assert "data-00000.arrow" not in left and ".goldfish/writer.lock" not in left and "state.json" not in left, sorted(left)
    return proxy


def resumed_equals_a_clean_run(bucket: S3Server, corpus: Path, part_size: int, tmp_path: Path) -> None:
    options = (*ONE_SHARD, "--storage-options", json.dumps({"default_block_size": part_size}))
    resumed = run("mask", corpus, "-o", f"s3://{BUCKET}/interrupted", "-q", *options, "--resume")
    assert resumed.exit_code == 0, resumed.output
    if not (tmp_path / "clean").exists():
        clean = run("mask", corpus, "-o", tmp_path / "clean", "-q", *ONE_SHARD)
        assert clean.exit_code == 0, clean.output
    assert objects(bucket, "interrupted", bucket=BUCKET) == files(tmp_path / "clean")
