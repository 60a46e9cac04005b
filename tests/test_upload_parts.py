"""``format.upload.UploadFile`` against a real S3 server (moto's, ``tests/s3_server.py``): a shard's parts are sent
by a thread while the caller writes on, the object appears only at ``commit``, and a part the store refuses is
one line at the caller's next write, with nothing left behind. A proxy in front of the server holds a part's
request until the test lets it go, so the order of events is forced rather than timed."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import uuid
from collections.abc import Iterator

import pytest

from goldfish_prep.format.store_errors import StoreError
from goldfish_prep.format.upload import part_size_of
from goldfish_prep.format.url_folder import UrlFolder
from goldfish_prep.readers.remote import use_storage_options
from tests import s3_server as fixtures
from tests.s3_server import FaultyProxy, S3Server

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


def test_the_caller_writes_on_while_a_part_is_sent_and_the_object_appears_at_commit(bucket: S3Server) -> None:
    arrived, release, sent = threading.Event(), threading.Event(), threading.Event()

    def hold_the_first_part(method: str, path: str, attempt: int) -> None:
        if method == "PUT" and "partNumber=1&" in path + "&" and attempt == 0:
            arrived.set()
            # bounded below the client's read timeout (60 s): a caller that waits for the part fails the assert
            # below after 20 s, instead of the client retrying a held request for minutes
            release.wait(20)
            sent.set()

    data = os.urandom(3 * PART + 12345)
    with through(FaultyProxy(bucket.endpoint, hold_the_first_part), default_block_size=PART) as folder:
        upload = folder.pending("data-00000.arrow")
        upload.write(data[:PART])  # a whole part: handed to the sending thread
        assert arrived.wait(60), "the first part was never sent"
        upload.write(data[PART : 2 * PART])  # queued behind it: the caller does not wait for the request
        held = not sent.is_set()
        release.set()
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
        assert part_size_of(folder.fs) == 50 << 20  # s3fs's own block size
        data = os.urandom(5 << 20)
        upload = folder.pending("data-00000.arrow")
        for start in range(0, len(data), 1 << 20):
            upload.write(data[start : start + (1 << 20)])
        assert seen == []  # held in memory until the commit
        upload.commit()
    assert seen == ["PUT"]


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
        with pytest.raises(StoreError) as failed:
            for _ in range(50):  # a later write meets it: the queue holds one part, so the caller cannot run ahead
                upload.write(chunk)
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
