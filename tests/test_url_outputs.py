"""Outputs by URL against a real S3-protocol server (moto's server mode, ``tests/s3_server.py``).

``mask -o s3://bucket/prefix`` reaches the server as a user reaches an
S3-compatible store: through s3fs, configured only by ``AWS_ENDPOINT_URL`` and
the credentials variables. What it writes must be, object for object, the
bytes a run into a local folder writes (the lock objects aside: a local folder
keeps an empty ``writer.lock`` file, a store deletes its lock object when the
run lets go). The objects are read back with boto3, never through the code
under test; the commit protocol, the lock and every failure of the store are
checked with real processes and signals.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests import s3_server as fixtures
from tests.faults_support import start
from tests.s3_server import FaultyProxy, S3Server, error_line, run

# the server (one per session) and the environment a user sets to reach it (see tests/s3_server.py)
s3_server = fixtures.s3_server
s3_env = fixtures.s3_env

BUCKET = "outputs"
OPTIONS = ("-q", "--shard-size", "24KB")
#: about 75 shards of ``big_corpus``: a run is still going well after its first two
KILL_OPTIONS = ("-q", "--shard-size", "40KB")
#: one shard of about 5.7 MB from ``big_corpus``, uploaded in parts of 5 MiB (the smallest S3 takes)
MULTIPART = ("--shard-size", "8MB", "--storage-options", json.dumps({"default_block_size": 5 << 20}))
#: what legitimately differs between a local and a store output: the lock files (a local folder keeps them, empty)
LOCKS = (".goldfish/writer.lock",)


def objects(server: S3Server, prefix: str, bucket: str = BUCKET) -> dict[str, bytes]:
    """Every object below ``prefix``, by its name relative to it, read with boto3."""
    s3 = server.client()
    found: dict[str, bytes] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for entry in page.get("Contents", []):
            name = entry["Key"][len(prefix) + 1 :]
            found[name] = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
    return found


def files(folder: Path) -> dict[str, bytes]:
    """Every file of a local output, by its path relative to it, lock files left out."""
    found = {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}
    return {name: data for name, data in found.items() if not name.endswith(".lock")}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, real_texts: list[str]) -> Path:
    """About 600 kB of real texts as JSON lines: some 25 shards of 24 kB."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    texts = [text for text in real_texts if 0 < len(text) < 20_000]
    with path.open("w", encoding="utf-8") as out:
        for number, text in enumerate(texts):
            if out.tell() > 600_000:
                break
            out.write(json.dumps({"text": f"{number}\n{text}"}) + "\n")
    return path


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory: pytest.TempPathFactory, real_texts: list[str]) -> Path:
    """About 3 MB: hundreds of shards, so a run is still going when a test stops it after its first."""
    path = tmp_path_factory.mktemp("big") / "big.jsonl"
    texts = [text for text in real_texts if 0 < len(text) < 20_000]
    with path.open("w", encoding="utf-8") as out:
        number = 0
        while out.tell() < 3_000_000:
            out.write(json.dumps({"text": f"{number}\n{texts[number % len(texts)]}"}) + "\n")
            number += 1
    return path


bucket = fixtures.bucket_fixture(BUCKET)


@pytest.fixture(scope="module")
def reference(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A local run's files over ``corpus`` (no lock files)."""
    folder = tmp_path_factory.mktemp("reference") / "out"
    result = run("mask", corpus, "-o", folder, *OPTIONS)
    assert result.exit_code == 0, result.output
    assert sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*.lock")) == list(LOCKS)  # all it leaves out
    return files(folder)


@pytest.fixture(scope="module")
def big_reference(big_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A local run's files over ``big_corpus`` in shards of 40 kB."""
    folder = tmp_path_factory.mktemp("big-reference") / "out"
    assert run("mask", big_corpus, "-o", folder, *KILL_OPTIONS).exit_code == 0
    return files(folder)


@pytest.fixture(scope="module")
def one_shard_reference(big_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A local run's files over ``big_corpus`` in one shard of about 5.7 MB."""
    folder = tmp_path_factory.mktemp("one-shard-reference") / "out"
    assert run("mask", big_corpus, "-o", folder, "-q", "--shard-size", "8MB").exit_code == 0
    return files(folder)


# --- the same bytes as a local run --------------------------------------------------------------


def test_an_s3_output_holds_the_objects_a_local_run_writes(bucket: S3Server, corpus: Path, reference: dict[str, bytes]) -> None:
    result = run("mask", corpus, "-o", f"s3://{BUCKET}/shards", *OPTIONS)
    assert result.exit_code == 0, result.output
    assert f"in s3://{BUCKET}/shards" in result.output
    written = objects(bucket, "shards")
    assert written == reference  # shards, records, run.json, dataset_info.json, manifest, state.json; no lock object left
    assert sum(name.startswith("data-") for name in written) >= 10
    # the library reads it back through the same folder object, checksums checked
    from goldfish_prep.format.folder import open_folder

    folder = open_folder(f"s3://{BUCKET}/shards")
    manifest = folder.read_manifest()
    for shard in manifest.shards:
        assert folder.read_shard(shard.filename, sha256=shard.sha256).num_rows == shard.num_rows


def test_a_prefix_given_with_a_slash_is_the_same_output(bucket: S3Server, corpus: Path, reference: dict[str, bytes]) -> None:
    assert run("mask", corpus, "-o", f"s3://{BUCKET}/nested/shards/", *OPTIONS).exit_code == 0
    assert objects(bucket, "nested/shards") == reference


def test_a_non_empty_prefix_is_refused_and_overwrite_replaces_a_finished_output(
    bucket: S3Server, corpus: Path, reference: dict[str, bytes]
) -> None:
    url = f"s3://{BUCKET}/shards"
    assert run("mask", corpus, "-o", url, *OPTIONS, "--k", "3").exit_code == 0
    other = objects(bucket, "shards")
    assert other != reference
    line = error_line(run("mask", corpus, "-o", url, *OPTIONS))
    assert line == (
        f"Error: output folder {url} already exists and is not empty; pass --overwrite to replace it, "
        "or --resume to finish an interrupted run"
    )
    assert objects(bucket, "shards") == other  # refused whole
    result = run("mask", corpus, "-o", url, *OPTIONS, "--overwrite")
    assert result.exit_code == 0, result.output
    assert objects(bucket, "shards") == reference  # nothing of the replaced output is left (.goldfish/replaced/ included)


def test_tasks_then_finalize_on_a_url_give_the_bytes_of_one_run(bucket: S3Server, corpus: Path, reference: dict[str, bytes]) -> None:
    url = f"s3://{BUCKET}/split"
    for index in (2, 0):
        result = run("mask", corpus, "-o", url, *OPTIONS, "--num-tasks", 3, "--task-index", index)
        assert result.exit_code == 0, result.output
        assert f"goldfish-prep finalize {url}" in result.output
    line = error_line(run("finalize", url))
    assert "1 of 3 tasks has not finished (--task-index 1)" in line, line
    assert run("mask", corpus, "-o", url, *OPTIONS, "--num-tasks", 3, "--task-index", 1).exit_code == 0
    result = run("finalize", url)
    assert result.exit_code == 0, result.output
    written = objects(bucket, "split")
    tasks = {name for name in written if name.startswith(".goldfish/task-")}
    assert tasks == {f".goldfish/task-0000{i}-of-00003.json" for i in range(3)}  # the tasks' end records, as locally
    assert {name: data for name, data in written.items() if name not in tasks} == reference


def test_finishing_reads_each_record_once_without_a_head_per_record(bucket: S3Server, corpus: Path, reference: dict[str, bytes]) -> None:
    """The manifest is built from every shard's record, read together (one listing, concurrent GETs): one by one
    they cost a HEAD and a GET each, in turn, which on a real store is minutes for thousands of shards."""
    proxy = FaultyProxy(bucket.endpoint, lambda method, path, attempt: None)
    try:
        result = run("mask", corpus, "-o", f"s3://{BUCKET}/counted", *OPTIONS, env=bucket.env(endpoint=proxy.endpoint))
    finally:
        proxy.close()
    assert result.exit_code == 0, result.output
    assert objects(bucket, "counted") == reference
    shards = sum(name.startswith("data-") for name in reference)
    records = {request: count for request, count in proxy.counts.items() if re.search(r"/counted/\.goldfish/shard-\d{5}\.json", request)}
    gets = [request for request in records if request.startswith("GET ")]
    assert len(gets) == shards and all(records[request] == 1 for request in gets), records
    assert not [request for request in records if request.startswith("HEAD ")], records


def test_an_output_inside_the_input_prefix_is_refused(bucket: S3Server, corpus: Path) -> None:
    bucket.client().put_object(Bucket=BUCKET, Key="in/corpus.jsonl", Body=corpus.read_bytes()[:5000].rsplit(b"\n", 1)[0] + b"\n")
    line = error_line(run("mask", f"s3://{BUCKET}/in/", "-o", f"s3://{BUCKET}/in/out", *OPTIONS))
    assert (
        line
        == f"Error: output s3://{BUCKET}/in/out is inside the input prefix s3://{BUCKET}/in; choose an output prefix outside the inputs"
    )


# --- killed mid-run, the lock, --resume -----------------------------------------------------------


def wait_for_object(server: S3Server, key: str, process: subprocess.Popen[str]) -> None:
    s3 = server.client()
    deadline = time.monotonic() + 120
    while True:
        try:
            s3.head_object(Bucket=BUCKET, Key=key)
            return
        except s3.exceptions.ClientError:
            assert process.poll() is None, f"the run ended before {key} appeared: {process.communicate()}"
            assert time.monotonic() < deadline, f"no {key} after 120 s"
            time.sleep(0.02)


def test_sigkill_mid_upload_then_resume_gives_the_bytes_of_an_uninterrupted_run(
    bucket: S3Server, big_corpus: Path, big_reference: dict[str, bytes]
) -> None:
    expected = big_reference
    url, secret = f"s3://{BUCKET}/killed", "option-secret-0123456789"
    # credentials given as options (the server checks none): the lock object names the command, never the secret
    options = json.dumps({"key": bucket.env()["AWS_ACCESS_KEY_ID"], "secret": secret})

    release = threading.Event()

    def hold_shard_3(method: str, path: str, attempt: int) -> None:
        # the run cannot finish before the kill: shard 3's upload is held until then (the next commit waits for it)
        if method == "PUT" and "/killed/data-00003.arrow" in path and attempt == 0:
            release.wait(120)

    proxy = FaultyProxy(bucket.endpoint, hold_shard_3)
    try:
        process = start(big_corpus, "-o", url, *KILL_OPTIONS, "--storage-options", options, env=bucket.env(endpoint=proxy.endpoint))
        try:
            wait_for_object(bucket, "killed/.goldfish/shard-00001.json", process)
            # a second writer refuses at once, naming the holder
            line = error_line(run("mask", big_corpus, "-o", url, *KILL_OPTIONS, "--resume"))
            assert line.startswith(f"Error: output folder {url} is being written by another run (pid {process.pid} on "), line
            assert "no longer running" not in line and secret not in line
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.communicate(timeout=60)
    finally:
        release.set()
        proxy.close()
    left = objects(bucket, "killed")
    assert "goldfish_manifest.json" not in left and "state.json" not in left
    lock = left[".goldfish/writer.lock"]
    assert str(process.pid).encode() in lock and secret.encode() not in lock
    # every shard that has a completion record is whole: its bytes are those of the uninterrupted run
    records = [json.loads(data) for name, data in left.items() if name.startswith(".goldfish/shard-")]
    assert records
    for record in records:
        assert left[record["filename"]] == expected[record["filename"]]
    # the lock object outlives its killed holder; a run on the same machine sees that its pid is gone and takes it
    # over (without -q it says so), as the local lock does
    result = run("mask", big_corpus, "-o", url, *KILL_OPTIONS[1:], "--resume")
    assert result.exit_code == 0, result.output
    assert f"note: took over {url}/.goldfish/writer.lock, left by pid {process.pid} on " in result.output
    assert objects(bucket, "killed") == expected


def test_sigterm_lets_go_of_the_lock_and_resume_needs_nothing_removed(
    bucket: S3Server, big_corpus: Path, big_reference: dict[str, bytes]
) -> None:
    url = f"s3://{BUCKET}/stopped"
    process = start(big_corpus, "-o", url, *KILL_OPTIONS, env=bucket.env())
    try:
        wait_for_object(bucket, "stopped/.goldfish/shard-00000.json", process)
        os.kill(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines()[-1] == "Error: stopped by SIGTERM; completed shards are kept, rerun with --resume to continue"
    left = objects(bucket, "stopped")
    assert ".goldfish/writer.lock" not in left and "state.json" not in left
    result = run("mask", big_corpus, "-o", url, *KILL_OPTIONS, "--resume")
    assert result.exit_code == 0, result.output
    assert objects(bucket, "stopped") == big_reference


def test_sigkill_in_the_middle_of_a_multipart_upload_leaves_no_shard(
    bucket: S3Server, big_corpus: Path, one_shard_reference: dict[str, bytes]
) -> None:
    url, s3 = f"s3://{BUCKET}/cut", bucket.client()
    sending = threading.Event()

    def stall_the_first_part(method: str, path: str, attempt: int) -> str | None:
        if method == "PUT" and "/data-00000.arrow?" in path and "partNumber=1" in path:
            sending.set()
            return "stall"  # the part is on its way when the process dies
        return None

    proxy = FaultyProxy(bucket.endpoint, stall_the_first_part, stall_s=2)
    try:
        process = start(big_corpus, "-o", url, "--shard-size", "8MB", *MULTIPART[2:], env=bucket.env(endpoint=proxy.endpoint))
        try:
            assert sending.wait(120), process.communicate()
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.communicate(timeout=60)
        time.sleep(3)  # the stalled part reaches the store after its sender died
    finally:
        proxy.close()
    assert sorted(objects(bucket, "cut")) == [".goldfish/run.json", ".goldfish/writer.lock"]  # no shard, no record
    uploads = s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    assert [upload["Key"] for upload in uploads] == ["cut/data-00000.arrow"]  # invisible, and billed for its part
    s3.delete_object(Bucket=BUCKET, Key="cut/.goldfish/writer.lock")
    result = run("mask", big_corpus, "-o", url, "-q", *MULTIPART, "--resume")
    assert result.exit_code == 0, result.output
    assert objects(bucket, "cut") == one_shard_reference
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []  # the resume aborted the one left open


def test_a_run_aborts_only_its_own_shards_uploads_a_dead_run_left_open(bucket: S3Server, corpus: Path) -> None:
    """A task holding its lock aborts the open multipart uploads of the shards it owns under its prefix: not another
    task's (which may be sending them), not another object's, not another prefix's."""
    s3, prefix = bucket.client(), "open-uploads"
    for key in (
        f"{prefix}/data-00000.arrow",
        f"{prefix}/data-00001.arrow",
        f"{prefix}/data-00003.arrow",
        f"{prefix}/notes.bin",
        "elsewhere/data-00001.arrow",
    ):
        s3.create_multipart_upload(Bucket=BUCKET, Key=key)
    result = run("mask", corpus, "-o", f"s3://{BUCKET}/{prefix}", *OPTIONS, "--num-tasks", "2", "--task-index", "1")
    assert result.exit_code == 0, result.output
    left = sorted(upload["Key"] for upload in s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []))
    assert left == ["elsewhere/data-00001.arrow", f"{prefix}/data-00000.arrow", f"{prefix}/notes.bin"]


def test_the_lock_is_a_conditional_write_the_store_enforces(bucket: S3Server) -> None:
    from goldfish_prep.format.folder import open_folder
    from goldfish_prep.format.lock import LockHeldError

    folder = open_folder(f"s3://{BUCKET}/locked")
    first, second = folder.lock(".goldfish/writer.lock"), folder.lock(".goldfish/writer.lock")
    first.acquire()
    with pytest.raises(LockHeldError) as refused:
        second.acquire()
    assert refused.value.holder is not None and refused.value.holder.pid == os.getpid()
    # the refusal comes from the store: the object holds the first holder's bytes still
    assert json.loads(objects(bucket, "locked")[".goldfish/writer.lock"])["pid"] == os.getpid()
    first.release()
    assert objects(bucket, "locked") == {}
    second.acquire()
    second.release()


def test_a_multipart_shard_appears_only_when_its_upload_completes(
    bucket: S3Server, big_corpus: Path, one_shard_reference: dict[str, bytes]
) -> None:
    # one shard of about 5.7 MB, uploaded in parts of 5 MiB: the object must not exist until the store has
    # been asked to complete the upload, and its record must come after it
    seen: list[tuple[bool, bool]] = []
    s3 = bucket.client()

    def exists(key: str) -> bool:
        try:
            s3.head_object(Bucket=BUCKET, Key=key)
            return True
        except s3.exceptions.ClientError:
            return False

    def watch(method: str, path: str, attempt: int) -> None:
        if method == "POST" and "uploadId=" in path and "/data-00000.arrow" in path:  # CompleteMultipartUpload
            seen.append((exists("parts/data-00000.arrow"), exists("parts/.goldfish/shard-00000.json")))

    proxy = FaultyProxy(bucket.endpoint, watch)
    try:
        result = run("mask", big_corpus, "-o", f"s3://{BUCKET}/parts", "-q", *MULTIPART, env=bucket.env(endpoint=proxy.endpoint))
    finally:
        proxy.close()
    assert result.exit_code == 0, result.output
    parts = [request for request in proxy.counts if request.startswith("PUT /outputs/parts/data-00000.arrow?") and "partNumber=" in request]
    assert len(parts) == 2
    assert seen == [(False, False)]  # every part sent, yet neither the shard nor its record visible
    assert objects(bucket, "parts") == one_shard_reference


def test_a_refused_completion_leaves_no_object_and_no_parts(bucket: S3Server, big_corpus: Path) -> None:
    url = f"s3://{BUCKET}/refused-complete"
    proxy = FaultyProxy(bucket.endpoint, lambda method, path, attempt: "503" if method == "POST" and "uploadId=" in path else None)
    retries = json.dumps({"default_block_size": 5 << 20, "config_kwargs": {"retries": {"max_attempts": 1}}})
    try:
        result = run(
            "mask",
            big_corpus,
            "-o",
            url,
            "-q",
            "--shard-size",
            "8MB",
            "--storage-options",
            retries,
            env=bucket.env(endpoint=proxy.endpoint),
        )
    finally:
        proxy.close()
    line = error_line(result)
    assert line.startswith(f"Error: {url}/data-00000.arrow: the request failed after retries ("), line
    assert list(objects(bucket, "refused-complete")) == [".goldfish/run.json"]  # for --resume; no shard, record or lock
    assert bucket.client().list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []  # the upload was aborted


def holder_object(pid: int, host: str = "node-7") -> bytes:
    """A lock object as a run on another machine writes it."""
    return json.dumps({"command": "goldfish-prep mask ...", "host": host, "pid": pid, "started": 1.8e9}).encode()


def test_a_plain_run_and_the_tasks_of_a_split_run_exclude_each_other(bucket: S3Server, corpus: Path) -> None:
    url, s3 = f"s3://{BUCKET}/shared", bucket.client()
    assert run("mask", corpus, "-o", url, *OPTIONS, "--num-tasks", 2, "--task-index", 0).exit_code == 0
    before = objects(bucket, "shared")
    # task 1 is running on another machine (its lock object exists): a plain run may not touch the folder
    s3.put_object(Bucket=BUCKET, Key="shared/.goldfish/task-00001-of-00002.lock", Body=holder_object(4242))
    lock = f"{url}/.goldfish/task-00001-of-00002.lock"
    for options in (("--overwrite",), ("--resume",)):
        line = error_line(run("mask", corpus, "-o", url, *OPTIONS, *options))
        assert line.startswith(f"Error: output folder {url} is being written by another run (pid 4242 on node-7, started "), line
        assert f"delete the lock object {lock} (`aws s3 rm {lock}`)" in line
    line = error_line(run("finalize", url))
    assert "(pid 4242 on node-7" in line, line
    assert objects(bucket, "shared") == {**before, ".goldfish/task-00001-of-00002.lock": holder_object(4242)}  # nothing touched
    s3.delete_object(Bucket=BUCKET, Key="shared/.goldfish/task-00001-of-00002.lock")
    # and the other way round: a plain run (or finalize) holds writer.lock, so a task refuses
    s3.put_object(Bucket=BUCKET, Key="shared/.goldfish/writer.lock", Body=holder_object(4343))
    line = error_line(run("mask", corpus, "-o", url, *OPTIONS, "--num-tasks", 2, "--task-index", 1))
    assert "(pid 4343 on node-7" in line and f"{url}/.goldfish/writer.lock" in line, line
    assert objects(bucket, "shared") == {**before, ".goldfish/writer.lock": holder_object(4343)}


class IgnoringProxy(FaultyProxy):
    """A store that ignores conditional writes (as some S3-compatible ones do): ``If-None-Match`` never reaches it."""

    def _forward(self, handler: Any) -> None:
        del handler.headers["If-None-Match"]
        super()._forward(handler)


def test_on_a_store_that_ignores_conditional_writes_a_later_writer_is_still_refused(bucket: S3Server) -> None:
    from goldfish_prep.format.folder import open_folder
    from goldfish_prep.format.lock import LockHeldError
    from goldfish_prep.readers.remote import use_storage_options

    proxy = IgnoringProxy(bucket.endpoint, lambda method, path, attempt: None)
    try:
        use_storage_options({"endpoint_url": proxy.endpoint})
        folder = open_folder(f"s3://{BUCKET}/ignoring")
        first = folder.lock(".goldfish/writer.lock")
        first.acquire()
        # the store would overwrite the object; the look before the create refuses the second writer
        with pytest.raises(LockHeldError):
            folder.lock(".goldfish/writer.lock").acquire()
        assert json.loads(objects(bucket, "ignoring")[".goldfish/writer.lock"])["pid"] == os.getpid()
        first.release()
        # the proxy does make the store ignore the condition: a bare exclusive create replaces an object
        import fsspec

        bucket.client().put_object(Bucket=BUCKET, Key="ignoring/taken", Body=b"first")
        fs = fsspec.filesystem("s3", skip_instance_cache=True, endpoint_url=proxy.endpoint)
        with fs.open(f"{BUCKET}/ignoring/taken", "xb") as handle:
            handle.write(b"second")
        assert objects(bucket, "ignoring") == {"taken": b"second"}
    finally:
        use_storage_options(None)
        proxy.close()


# --- one line for each way the store refuses -------------------------------------------------------


def test_a_bucket_that_does_not_exist(s3_env: S3Server, corpus: Path) -> None:
    line = error_line(run("mask", corpus, "-o", "s3://no-such-bucket-here/shards", *OPTIONS))
    assert line.startswith("Error: s3://no-such-bucket-here/shards: the bucket does not exist ("), line
    assert line.endswith("Create it first, or check the bucket name (and AWS_ENDPOINT_URL for an S3-compatible store)")
    assert "no-such-bucket-here" not in [b["Name"] for b in s3_env.client().list_buckets()["Buckets"]]  # not created


def test_a_bucket_named_bucket_takes_an_output(s3_env: S3Server, corpus: Path, reference: dict[str, bytes]) -> None:
    """docs/remote.md's own example, `-o s3://bucket/shards`: s3fs says a missing key by its path alone
    ("bucket/shards"), which was once taken for a missing bucket, and the run refused the new prefix."""
    with fixtures.empty_bucket(s3_env, "bucket"):
        result = run("mask", corpus, "-o", "s3://bucket/shards", *OPTIONS)
        written = objects(s3_env, "shards", bucket="bucket")
    assert result.exit_code == 0, result.output
    assert written == reference


@pytest.mark.parametrize("who", ["wrong-secret", "no-permission"])
def test_credentials_the_store_refuses(bucket: S3Server, corpus: Path, who: str) -> None:
    url = f"s3://{BUCKET}/refused"
    with bucket.checking_credentials() as (allowed, denied):
        key = (allowed[0], "not-the-secret-0123") if who == "wrong-secret" else denied
        result = run("mask", corpus, "-o", url, *OPTIONS, env=bucket.env(key=key))
    line = error_line(result)
    assert line.startswith(f"Error: {url}") and ": the store refused access (" in line, line
    assert "AWS_ACCESS_KEY_ID" in line and key[1] not in result.output
    assert objects(bucket, "refused") == {}


def test_storage_options_the_driver_does_not_take(bucket: S3Server, corpus: Path) -> None:
    line = error_line(run("mask", corpus, "-o", f"s3://{BUCKET}/x", *OPTIONS, "--storage-options", '{"no_such_option": 1}'))
    assert line.startswith(f"Error: --storage-options do not fit the file system of s3://{BUCKET}/x: "), line
    assert "no_such_option" in line


# --- a store under load: retried without harm, or one line ---------------------------------------


def test_failed_uploads_are_retried_without_corrupting_anything(bucket: S3Server, corpus: Path, reference: dict[str, bytes]) -> None:
    def fail(method: str, path: str, attempt: int) -> str | None:
        # the first upload of the lock, of some shards and records, and of the manifest and state.json is refused once
        names = ("writer.lock", "data-00000.arrow", "data-00004.arrow", "shard-00002.json", "goldfish_manifest.json", "state.json")
        return "503" if method == "PUT" and attempt == 0 and path.endswith(names) else None

    proxy = FaultyProxy(bucket.endpoint, fail)
    try:
        result = run("mask", corpus, "-o", f"s3://{BUCKET}/retried", *OPTIONS, env=bucket.env(endpoint=proxy.endpoint))
    finally:
        proxy.close()
    assert result.exit_code == 0, result.output
    assert proxy.faults == 6
    assert objects(bucket, "retried") == reference


def test_a_store_that_keeps_failing_stops_in_one_line_and_resume_finishes(
    bucket: S3Server, corpus: Path, reference: dict[str, bytes]
) -> None:
    url = f"s3://{BUCKET}/failing"

    def fail(method: str, path: str, attempt: int) -> str | None:
        return "503" if method == "PUT" and "/data-00003.arrow" in path else None

    proxy = FaultyProxy(bucket.endpoint, fail)
    options = json.dumps({"config_kwargs": {"retries": {"max_attempts": 1}}})
    try:
        result = run("mask", corpus, "-o", url, *OPTIONS, "--storage-options", options, env=bucket.env(endpoint=proxy.endpoint))
    finally:
        proxy.close()
    line = error_line(result)
    assert line.startswith(f"Error: {url}/data-00003.arrow: the request failed after retries ("), line
    left = objects(bucket, "failing")
    assert "data-00003.arrow" not in left and "state.json" not in left
    assert ".goldfish/writer.lock" not in left  # a run that fails lets go of the lock
    result = run("mask", corpus, "-o", url, *OPTIONS, "--resume")
    assert result.exit_code == 0, result.output
    assert objects(bucket, "failing") == reference


def test_the_client_own_retries_resend_a_whole_shard(bucket: S3Server, corpus: Path, reference: dict[str, bytes]) -> None:
    """botocore not retrying (``max_attempts`` 1), s3fs retries a refused PUT by calling again with the same
    arguments: a shard whose body were a stream would go out from where the refused attempt left it (empty)."""

    def fail(method: str, path: str, attempt: int) -> str | None:
        return "503" if method == "PUT" and attempt < 2 and path.endswith(("/data-00000.arrow", "/data-00005.arrow")) else None

    proxy = FaultyProxy(bucket.endpoint, fail)
    options = json.dumps({"config_kwargs": {"retries": {"max_attempts": 1}}})
    try:
        result = run(
            "mask", corpus, "-o", f"s3://{BUCKET}/again", *OPTIONS, "--storage-options", options, env=bucket.env(endpoint=proxy.endpoint)
        )
    finally:
        proxy.close()
    assert result.exit_code == 0, result.output
    assert proxy.faults == 4
    assert objects(bucket, "again") == reference


# --- each shard's PUT carries the sha256 its record names ------------------------------------------


def _shard_puts(proxy: FaultyProxy) -> dict[str, tuple[dict[str, str], str]]:
    """The headers and body sha256 of the (last) PUT of each shard, by the shard's name."""
    return {
        path.rsplit("/", 1)[-1]: (headers, body) for method, path, headers, body in proxy.requests if method == "PUT" and "/data-" in path
    }


def _checked_by_its_sha256(headers: dict[str, str], body_sha256: str) -> bool:
    """Whether a request carries its body's SHA-256 in a signed header, and its payload is not hashed again to be signed."""
    signed = re.search(r"SignedHeaders=([^,]+)", headers["authorization"]).group(1).split(";")  # type: ignore[union-attr]
    return (
        base64.b64decode(headers.get("x-amz-checksum-sha256", "")).hex() == body_sha256
        and "x-amz-checksum-sha256" in signed
        and headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
        and not any(name.startswith("x-amz-checksum-") and name != "x-amz-checksum-sha256" for name in headers)  # no CRC32 of botocore's
    )


def _recorded_run(bucket: S3Server, corpus: Path, prefix: str, *options: str, **env: str) -> tuple[FaultyProxy, dict[str, bytes]]:
    """``mask`` into ``prefix`` through a proxy that records every request (``env``: variables added); the proxy and
    the objects written."""
    proxy = FaultyProxy(bucket.endpoint, lambda *_: None)
    try:
        result = run("mask", corpus, "-o", f"s3://{BUCKET}/{prefix}", *options, env={**bucket.env(endpoint=proxy.endpoint), **env})
    finally:
        proxy.close()
    assert result.exit_code == 0, result.output
    return proxy, objects(bucket, prefix)


def test_each_shard_is_put_with_its_record_sha256_and_the_body_bound_by_it(
    bucket: S3Server, corpus: Path, reference: dict[str, bytes]
) -> None:
    """The store can check the bytes against the record's hash (``format/s3_upload.py``); over plain HTTP the payload
    is not hashed a second time to be signed, since the signed checksum header binds it."""
    proxy, written = _recorded_run(bucket, corpus, "checked", *OPTIONS)
    assert written == reference
    puts = _shard_puts(proxy)
    assert sorted(puts) == sorted(name for name in written if name.startswith("data-"))
    for name, (headers, body_sha256) in puts.items():
        record = json.loads(written[f".goldfish/shard-{name[5:10]}.json"])
        assert body_sha256 == record["sha256"] == hashlib.sha256(written[name]).hexdigest()
        assert _checked_by_its_sha256(headers, body_sha256), headers
    # what carries no sha256 of ours (records, manifest) is signed as botocore signs it over HTTP
    others = [(headers, body) for method, path, headers, body in proxy.requests if method == "PUT" and "/data-" not in path]
    assert others and all(headers["x-amz-content-sha256"] == body for headers, body in others)


def test_each_part_of_a_multipart_shard_is_checked_by_its_own_sha256(
    bucket: S3Server, big_corpus: Path, one_shard_reference: dict[str, bytes]
) -> None:
    proxy, written = _recorded_run(bucket, big_corpus, "parts", "-q", *MULTIPART)
    assert written == one_shard_reference
    created = [headers for method, path, headers, _ in proxy.requests if method == "POST" and "/data-00000.arrow?uploads" in path]
    assert len(created) == 1 and created[0]["x-amz-checksum-algorithm"] == "SHA256"
    parts = [(headers, body) for method, path, headers, body in proxy.requests if method == "PUT" and "/data-00000.arrow?" in path]
    assert len(parts) == 2  # 5.7 MB in parts of 5 MiB
    assert all(_checked_by_its_sha256(headers, body) for headers, body in parts)


def test_a_payload_signing_the_user_asked_for_is_kept(bucket: S3Server, corpus: Path, reference: dict[str, bytes]) -> None:
    """``s3.payload_signing_enabled`` set in ``--storage-options``: shards still carry their sha256, and the payload is
    signed as configured (the hook that sends it unsigned steps aside)."""
    signing = json.dumps({"config_kwargs": {"s3": {"payload_signing_enabled": True}}})
    proxy, written = _recorded_run(bucket, corpus, "signed", *OPTIONS, "--storage-options", signing)
    assert written == reference
    puts = _shard_puts(proxy)
    assert puts
    for headers, body_sha256 in puts.values():
        assert base64.b64decode(headers["x-amz-checksum-sha256"]).hex() == body_sha256
        assert headers["x-amz-content-sha256"] == body_sha256


def test_with_a_client_per_bucket_region_the_payload_is_still_sent_once_hashed(
    bucket: S3Server, corpus: Path, reference: dict[str, bytes]
) -> None:
    """``cache_regions`` (s3fs makes a client for each bucket's region, apart from ``fs.s3``): the hook that sends a
    checksummed payload unsigned must reach the client that sends the shard, or the body is hashed again to sign it."""
    proxy, written = _recorded_run(bucket, corpus, "regions", *OPTIONS, "--storage-options", json.dumps({"cache_regions": True}))
    assert written == reference
    puts = _shard_puts(proxy)
    assert puts and all(_checked_by_its_sha256(headers, body) for headers, body in puts.values())


def test_a_client_told_to_send_checksums_only_when_required_sends_none(bucket: S3Server, corpus: Path, reference: dict[str, bytes]) -> None:
    """``AWS_REQUEST_CHECKSUM_CALCULATION=when_required``: the fix for stores that refuse checksum headers."""
    proxy, written = _recorded_run(bucket, corpus, "plain", *OPTIONS, AWS_REQUEST_CHECKSUM_CALCULATION="when_required")
    assert written == reference
    puts = _shard_puts(proxy)
    assert puts
    for headers, body_sha256 in puts.values():
        assert not any(header.startswith("x-amz-checksum-") for header in headers)
        assert headers["x-amz-content-sha256"] == body_sha256  # signed as botocore signs over HTTP


# --- Ray tasks writing to the store ----------------------------------------------------------------


def test_a_ray_task_whose_worker_is_killed_is_retried_and_the_output_is_the_same(
    bucket: S3Server, big_corpus: Path, big_reference: dict[str, bytes]
) -> None:
    """SIGKILL to the worker process of one Ray task mid-run: Ray retries the task (same task id), the retry takes
    over the lock object its dead attempt left, resumes its finished shards, and the output is one run's bytes."""
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'goldfish-prep[ray]'")
    if ray.is_initialized():
        pytest.skip("another test's Ray is connected; this one needs the store's environment in its workers")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    s3, killed = bucket.client(), []

    def kill_task_1() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                s3.head_object(Bucket=BUCKET, Key="lost/.goldfish/shard-00004.json")  # task 1's second shard
                lock = s3.get_object(Bucket=BUCKET, Key="lost/.goldfish/task-00001-of-00003.lock")["Body"].read()
            except s3.exceptions.ClientError:
                time.sleep(0.02)
                continue
            pid = json.loads(lock)["pid"]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": bucket.env()})
    killer = threading.Thread(target=kill_task_1, daemon=True)
    killer.start()
    try:
        result = run("mask", big_corpus, "-o", f"s3://{BUCKET}/lost", *KILL_OPTIONS, "--ray-address", "local", "--ray-tasks", 3)
    finally:
        killer.join(timeout=5)
        ray.shutdown()
    assert killed, "task 1 finished before its worker could be killed"
    assert result.exit_code == 0, result.output
    written = objects(bucket, "lost")
    tasks = {name for name in written if name.startswith(".goldfish/task-")}
    assert tasks == {f".goldfish/task-0000{i}-of-00003.json" for i in range(3)}  # no lock object left
    assert {name: data for name, data in written.items() if name not in tasks} == big_reference
