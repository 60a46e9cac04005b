"""A shard's upload on S3, each request checked by the store against a SHA-256 computed once.

Sent through s3fs (``pipe_file``, or the file ``fs.open(path, "wb")`` returns),
every byte of a shard passes through the client several more times after
``UploadFile`` has hashed it for the record: s3fs's file copies each part into
its buffer and out again, aiohttp copies the body once more (botocore's
``BytesIO`` around bytes must be unshared to be measured), botocore computes a
CRC32 of it (its default since 1.36) and, on an ``http://`` endpoint (MinIO or
Ceph inside a cluster, the test server), a SHA-256 to sign the payload. All of
it ran in the process that writes the shards, the run's narrowest point: on the
benchmark's 332 MB output 0.4 to 0.5 s of the run's CPU, measured (docs/remote.md).

Here a shard smaller than a part is one ``PutObject`` carrying the sha256
``UploadFile`` already computed for the record as ``ChecksumSHA256``; a larger
one is a multipart upload created with ``ChecksumAlgorithm=SHA256`` whose parts
(the bytes ``UploadFile`` hands over, sent as they are) each carry their own
SHA-256, computed in the sending thread (hashlib lets go of the GIL).
The store recomputes each and refuses a body that differs (AWS and MinIO do;
moto does not check), so the bytes stored are checked by SHA-256, a stronger
check than the CRC32 it replaces, and botocore computes no checksum of its own
when one is given. The payload is then sent unsigned (``UNSIGNED-PAYLOAD``):
the ``x-amz-checksum-sha256`` header is signed, so the signature binds the body
as a signed payload hash would. On ``https://`` botocore already does this by
itself; ``_unsigned_when_checksummed`` makes plain HTTP do the same for these
requests (a PUT that carries that header), and leaves a payload signing the user
configured (``s3.payload_signing_enabled``) as set.

A client told to compute checksums only when an operation requires them
(``AWS_REQUEST_CHECKSUM_CALCULATION=when_required``, or ``--storage-options``
``{"config_kwargs": {"request_checksum_calculation": "when_required"}}``: the
usual fix for S3-compatible stores that refuse checksum headers) sends none:
the bytes go as they are, signed the way botocore signs.

Bodies are bytes, never streams: s3fs retries some failures by calling again
with the same arguments, and a stream would be sent from where the failed
attempt left it (botocore rewinds only for its own retries); bytes are wrapped
afresh for every call. Other drivers (gcsfs, adlfs) are not S3:
``is_s3`` is False and ``UploadFile`` uses the driver's own file and ``pipe_file``.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from typing import Any

from fsspec.asyn import sync

_HANDLER_ID = "goldfish-prep-unsigned-when-checksummed"
#: bytes per part on S3 (unless ``--storage-options`` set ``default_block_size``): a shard's last part, sent after
#: the run has built it, is at most this; 10,000 parts make shards of up to 160 GiB
S3_PART_SIZE = 16 << 20
#: parts of one shard sent at once: a store far away is a round trip per part, which parts in flight overlap
S3_PARTS_IN_FLIGHT = 4


def is_s3(fs: Any) -> bool:
    """Whether ``fs`` is s3fs's file system (the only driver with ``call_s3``)."""
    return hasattr(fs, "call_s3")


def put_whole(fs: Any, path: str, body: bytes, sha256: bytes) -> None:
    """PUT ``body``, whose SHA-256 is ``sha256``, as the object at ``path``; failures are raised as s3fs raises them
    (the caller's ``translated`` makes them one line)."""
    bucket, key, _ = fs.split_path(path)
    checksum = _checksum(fs, bucket, sha256) if _checksums_on(fs) else {}
    fs.call_s3("put_object", Bucket=bucket, Key=key, Body=body, **checksum)
    fs.invalidate_cache(path)  # as pipe_file does: a listing cached before must show the new object


class S3Parts:
    """The store file ``UploadFile`` sends parts to on S3: ``write_part`` sends one, from any thread and in any order,
    ``close`` completes the upload, ``discard`` aborts it. The first part to be sent creates the upload."""

    def __init__(self, fs: Any, path: str) -> None:
        self._fs = fs
        self._path = path
        self._bucket, self._key, _ = fs.split_path(path)
        self._checked = _checksums_on(fs)
        self._upload_id: str | None = None
        self._parts: dict[int, dict[str, Any]] = {}
        self._creating = threading.Lock()  # one thread creates the upload, the others wait for its id
        self._lock = threading.Lock()  # ``discard`` may come from any thread
        self.closed = False
        self._discarded = False

    def write_part(self, number: int, part: bytes) -> None:
        """Upload ``part`` as part ``number`` (one ``UploadPart``, with its own SHA-256)."""
        upload_id = self._created()
        checksum = _checksum(self._fs, self._bucket, hashlib.sha256(part).digest()) if self._checked else {}
        sent = self._fs.call_s3(
            "upload_part", Bucket=self._bucket, Key=self._key, UploadId=upload_id, PartNumber=number, Body=part, **checksum
        )
        self._parts[number] = {"PartNumber": number, "ETag": sent["ETag"], **checksum}

    def _created(self) -> str:
        """The upload's id; the first caller creates the upload (``CreateMultipartUpload``)."""
        with self._creating:
            if self.closed:
                raise ValueError("the upload was completed or aborted")
            if self._upload_id is None:
                algorithm = {"ChecksumAlgorithm": "SHA256"} if self._checked else {}
                created = self._fs.call_s3("create_multipart_upload", Bucket=self._bucket, Key=self._key, **algorithm)
                with self._lock:
                    if self.closed:  # discarded while the upload was being created: it is aborted here
                        self._abort(created["UploadId"])
                        raise ValueError("the upload was aborted")
                    self._upload_id = created["UploadId"]
            return self._upload_id

    def close(self) -> None:
        """Complete the upload with its parts in order: the object appears whole now."""
        if self._discarded:  # from another thread (``UploadFile.cancel``): there is nothing left to complete
            raise ValueError("the upload was aborted")
        if self.closed:
            return
        parts = [self._parts[number] for number in sorted(self._parts)]
        self._fs.call_s3(
            "complete_multipart_upload", Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, MultipartUpload={"Parts": parts}
        )
        self.closed = True
        self._fs.invalidate_cache(self._path)

    def discard(self) -> None:
        """Abort the upload (its parts are dropped); a part still being sent fails against the aborted upload."""
        with self._lock:
            self.closed = self._discarded = True
            upload_id, self._upload_id = self._upload_id, None
        if upload_id is not None:
            self._abort(upload_id)

    def _abort(self, upload_id: str) -> None:
        self._fs.call_s3("abort_multipart_upload", Bucket=self._bucket, Key=self._key, UploadId=upload_id)


def _checksums_on(fs: Any) -> bool:
    """Whether the client computes checksums when supported (botocore's default), not only when required."""
    return getattr(fs.s3.meta.config, "request_checksum_calculation", None) != "when_required"  # fs.s3 connects


def _checksum(fs: Any, bucket: str, sha256: bytes) -> dict[str, str]:
    """``ChecksumSHA256`` for a request to ``bucket`` (``_checksums_on`` first), with the hook that sends its payload
    unsigned registered on the client that sends it: ``fs.s3``, or with ``cache_regions`` the bucket's own client,
    which s3fs makes apart (registering is idempotent: the hook has one id)."""
    client = sync(fs.loop, fs.get_s3, bucket) if getattr(fs, "cache_regions", False) else fs.s3
    client.meta.events.register("before-sign.s3", _unsigned_when_checksummed, unique_id=_HANDLER_ID)
    return {"ChecksumSHA256": base64.b64encode(sha256).decode("ascii")}


def _unsigned_when_checksummed(request: Any, **_: Any) -> None:
    """botocore's ``before-sign`` hook: a PUT whose body is bound by a signed ``x-amz-checksum-sha256`` header is sent
    with ``UNSIGNED-PAYLOAD`` also on plain HTTP (botocore would hash the body once more to sign it)."""
    if request.method != "PUT" or "x-amz-checksum-sha256" not in request.headers or str(request.url).startswith("https"):
        return
    config = request.context.get("client_config")
    s3 = dict(getattr(config, "s3", None) or {})
    if config is None or "payload_signing_enabled" in s3:
        return
    from botocore.config import Config

    s3["payload_signing_enabled"] = False
    request.context["client_config"] = config.merge(Config(s3=s3))
