"""What a store's refusals become: one line naming the object, the cause and the fix (``StoreError``).

Why a module of its own: every request ``UrlFolder``, its uploads and its lock
objects send can fail in the provider's own exception types (OSError
subclasses, botocore, aiohttp ...); this is the one place that tells a full
store or quota, a missing bucket, options that do not fit the driver, and any
other refusal apart, and words each as the house's ``Error:`` line, with secrets
scrubbed (``readers.redact``). A missing key and the lock's refusal stay as they
are: callers act on them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

from goldfish_prep.errors import ConfigError, GoldfishError
from goldfish_prep.readers.redact import scrub

_MAX_CAUSE = 240


def quiet_gcsfs() -> None:
    """Keep gcsfs's logged traceback of a refused request off the terminal (idempotent).

    gcsfs logs each request it gives up on (``logger.exception``: its traceback) before raising the error that
    becomes the one line; in a process that set up no logging, Python's last-resort handler printed that traceback
    above the line (a 401, tests/test_gcs_urls.py). A handler of the library's own keeps it quiet there, and a
    program that configures logging still gets the record through its own handlers. Called here for outputs, and
    by ``readers.remote`` before its first request (an input's refusal comes before this module is imported).
    """
    logger = logging.getLogger("gcsfs")
    if not any(isinstance(handler, logging.NullHandler) for handler in logger.handlers):
        logger.addHandler(logging.NullHandler())


quiet_gcsfs()


class StoreError(GoldfishError, RuntimeError):
    """A request to the store that holds the output failed (after the provider's retries): one line.

    Not an ``OSError`` on purpose: the folder's local wording of a failed write
    ("free space ...") does not fit, and nothing may take it for a missing file.
    """


def short_cause(exc: BaseException) -> str:
    """What an exception says, on one line, scrubbed of secrets, at most ``_MAX_CAUSE`` characters."""
    cause = scrub(" ".join(str(exc).split())) or type(exc).__name__
    return cause if len(cause) <= _MAX_CAUSE else cause[: _MAX_CAUSE - 3] + "..."


#: what stores answer when a bucket, account or drive is full: AWS-style and S3-compatible codes (MinIO, Ceph RGW
#: answers QuotaExceeded with 403), matched lower-cased; HTTP 507 Insufficient Storage whatever the code
_FULL_CODES = frozenset(
    {"quotaexceeded", "insufficientstorage", "xminiostoragefull", "xminioadminbucketquotaexceeded", "storagequotaexceeded"}
)
#: where gcsfs's default chain (google.auth's) finds credentials: the key file the variable names, then the file
#: `gcloud auth application-default login` writes (`gcloud auth login` alone writes none it reads), then a VM's account
GCS_CREDENTIALS = "GOOGLE_APPLICATION_CREDENTIALS, or `gcloud auth application-default login`, or the VM's service account"
_FULL_WORDS = ("quota", "insufficient storage", "storage full", "no space left", "minimum free drive")
#: a body that arrived other than its checksum says (S3's codes): damaged on the way
_MISMATCH_CODES = frozenset({"baddigest", "invaliddigest", "xamzcontentchecksummismatch", "xamzcontentsha256mismatch"})
#: what to set for a store that refuses the checksum headers botocore (and ``s3_upload``) send
CHECKSUMS_WHEN_REQUIRED = (
    "AWS_REQUEST_CHECKSUM_CALCULATION=when_required "
    """(or --storage-options '{"config_kwargs": {"request_checksum_calculation": "when_required"}}')"""
)


def store_answer(exc: BaseException) -> tuple[str, int | None]:
    """(error code, HTTP status) of the store's answer behind ``exc`` (a botocore ``ClientError`` that s3fs wraps
    as its ``__cause__``), or ("", None): s3fs keeps only the message, which need not name the code."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            break
        if (answer := azure_answer(seen) or gcs_answer(seen)) is not None:
            return answer
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return code, status if isinstance(status, int) else None
        seen = seen.__cause__ or seen.__context__
    return "", None


def azure_answer(exc: BaseException) -> tuple[str, int | None] | None:
    """(error code, HTTP status) of an azure-core ``HttpResponseError`` (adlfs raises them as they are, or as the
    cause of its own ``RuntimeError``), or None for an exception of any other kind."""
    if not type(exc).__module__.startswith("azure.") or not hasattr(exc, "status_code"):
        return None
    code, status = getattr(exc, "error_code", None), getattr(exc, "status_code", None)
    return str(getattr(code, "value", code) or ""), status if isinstance(status, int) else None


def gcs_answer(exc: BaseException) -> tuple[str, int | None] | None:
    """("", HTTP status) of what gcsfs raises for a refusal it does not map to a built-in exception (its
    ``HttpError``: a 401 among others), or of its plain ``OSError("Forbidden: ...")`` for a 403; None otherwise.

    >>> gcs_answer(OSError("Forbidden: b/outputs/o\\nno storage.objects.list access")), gcs_answer(OSError("Forbidden"))
    (('', 403), None)
    """
    if type(exc).__name__ == "HttpError" and type(exc).__module__.startswith("gcsfs"):
        code = getattr(exc, "code", None)
        return "", code if isinstance(code, int) else None
    if type(exc) is OSError and str(exc).startswith("Forbidden: "):  # gcsfs.retry.validate_response's 403
        return "", 403
    return None


def azure_cause(exc: BaseException) -> str | None:
    """What the Azure error behind ``exc`` says, its first line only (the rest is a request id, a time and the XML
    of the answer), scrubbed of secrets; None when no Azure error is behind it."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if azure_answer(seen) is not None:
            lines = str(seen).strip().splitlines()
            return short_cause(Exception(lines[0] if lines else ""))
        seen = seen.__cause__ or seen.__context__
    return None


def store_failure(where: str, exc: BaseException) -> StoreError:
    """The one line for a failed request about ``where``: what the store said (scrubbed of secrets), and the fix."""
    from goldfish_prep.readers.remote import credentials_for

    cause = azure_cause(exc) or short_cause(exc)
    code, status = store_answer(exc)
    if code and code not in cause:
        cause = f"{code}: {cause}"
    lowered = cause.lower()
    if status == 507 or code.lower() in _FULL_CODES or any(word in lowered for word in _FULL_WORDS):
        return StoreError(
            f"{where}: the store is full or over its quota ({cause}). Free space under the bucket or raise its quota, "
            "then rerun with --resume, which keeps finished shards"
        )
    if code.lower() in _MISMATCH_CODES or ("checksum" in lowered and ("did not match" in lowered or "mismatch" in lowered)):
        return StoreError(
            f"{where}: the store received bytes that differ from their checksum ({cause}): they were damaged on the way. "
            "Rerun with --resume, which keeps finished shards"
        )
    if "checksum" in lowered and status in (400, 501):  # an S3-compatible store that does not take checksum headers
        return StoreError(
            f"{where}: the store does not take the checksum sent with each request ({cause}). "
            f"Set {CHECKSUMS_WHEN_REQUIRED} and rerun with --resume"
        )
    if code == "EntityTooLarge":
        return StoreError(
            f"{where}: the store refused the object as too large ({cause}). Rerun with --overwrite and a smaller "
            "--shard-size, or raise the store's limit on an object's size"
        )
    if bucket_is_missing(exc, where, cause, status):
        return StoreError(f"{where}: the bucket does not exist ({bucket_cause(exc, where, cause)}). {bucket_fix(where)}")
    if code == "ContainerNotFound":  # Azure
        return StoreError(
            f"{where}: the container does not exist ({cause}). Create it first (az storage container create), or check "
            "the container name and the account (AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT_NAME)"
        )
    if (
        isinstance(exc, PermissionError)
        or status in (401, 403)  # 401: no credentials, or ones the store does not know (GCS's anonymous caller)
        or any(word in lowered for word in ("forbidden", "access denied", "signature", "credentials"))
    ):
        credentials = GCS_CREDENTIALS if where.lower().startswith(("gs://", "gcs://")) else credentials_for(where)
        return StoreError(
            f"{where}: the store refused access ({cause}). Check the credentials ({credentials}; or --storage-options) "
            "and their permission to list, read, write and delete under the prefix"
        )
    return StoreError(
        f"{where}: the request failed after retries ({cause}). Check the network and the store and rerun with --resume, "
        "which keeps finished shards"
    )


#: gcsfs's "not found" names the request's path alone; a 404 for a bucket's object collection (``b/NAME/o``: a
#: listing, or an upload, with its query) can only mean that the bucket does not exist
_GCS_COLLECTION = re.compile(r"(?:^|/)b/([^/?\s]+)/o(?:\?\S*)?$")


def bucket_is_missing(exc: BaseException, where: str, cause: str, status: int | None) -> bool:
    """Whether a failed request (``cause``: what it said; ``status``: ``store_answer``'s) means the bucket does not
    exist: gcsfs's "not found" about a bucket (``missing_bucket``), or words that say so (S3's ``NoSuchBucket``).
    A refusal (401, 403) never is, whatever its words: GCS's end "(or it may not exist)". For outputs
    (``store_failure``) and inputs (``readers.remote.store_error``) alike.

    >>> bucket_is_missing(OSError(), "s3://b/x", "NoSuchBucket: The specified bucket does not exist", 404)
    True
    >>> bucket_is_missing(OSError(), "gs://b/x", "denied on resource (or it may not exist): bucket b", 403)
    False
    """
    lowered = cause.lower()
    said_missing = "bucket" in lowered and ("not exist" in lowered or "nosuchbucket" in lowered)
    return missing_bucket(exc, where) is not None or (said_missing and status not in (401, 403))


def missing_bucket(exc: BaseException, where: str) -> str | None:
    """The bucket of gcsfs's "not found" about a bucket rather than a key, else None; ``where``: the shown URL
    the request was about (only a gs:// one: s3fs's missing key "b/x/o" is a key of a bucket named "b").

    >>> missing_bucket(FileNotFoundError("b/nobucket/o"), "gs://nobucket/out")
    'nobucket'
    >>> missing_bucket(FileNotFoundError("http://127.0.0.1:9/upload/storage/v1/b/x/o?name=a%2Fb"), "gs://x/a")
    'x'
    >>> missing_bucket(FileNotFoundError("b/outputs/o/shards"), "gs://outputs/shards"), missing_bucket(FileNotFoundError("b/x/o"), "s3://b/x/o")
    (None, None)
    """
    if not isinstance(exc, FileNotFoundError) or not where.lower().startswith(("gs://", "gcs://")):
        return None
    match = _GCS_COLLECTION.search(str(exc).strip())
    return match.group(1) if match else None


def bucket_cause(exc: BaseException, where: str, cause: str) -> str:
    """What the store said of a missing bucket: gcsfs's bare request path would say nothing to a user."""
    bucket = missing_bucket(exc, where)
    return f"404 Not Found for the objects of bucket {bucket}" if bucket else cause


def bucket_fix(where: str) -> str:
    """How to make the missing bucket of ``where`` (a shown URL), in its provider's words."""
    if where.lower().startswith(("gs://", "gcs://")):
        return "Create it first (`gcloud storage buckets create gs://BUCKET`), or check the bucket name (and STORAGE_EMULATOR_HOST for an emulator)"
    return "Create it first, or check the bucket name (and AWS_ENDPOINT_URL for an S3-compatible store)"


def speaks_of_a_bucket(exc: FileNotFoundError, where: str = "") -> bool:
    """Whether a store's "not found" about ``where`` (a shown URL) is about the bucket rather than a key: s3fs
    says "The specified bucket does not exist", gcsfs names the bucket's object collection (``missing_bucket``).
    Words with a "/" are left out: s3fs's missing key says only its path, and a bucket may well be named
    "bucket" (docs/remote.md's examples are): `mask -o s3://bucket/shards` once failed on the new prefix.

    >>> speaks_of_a_bucket(FileNotFoundError("bucket/shards")), speaks_of_a_bucket(FileNotFoundError(2, "The specified bucket does not exist"))
    (False, True)
    """
    if missing_bucket(exc, where) is not None:
        return True
    return "bucket" in " ".join(word for word in str(exc).lower().split() if "/" not in word)


@contextmanager
def translated(where: str) -> Iterator[None]:
    """Turn a store's exception into a ``StoreError``; a missing key (``FileNotFoundError``) and the lock's
    refusal (``FileExistsError``) stay as they are, since callers act on them."""
    try:
        yield
    except (GoldfishError, FileExistsError, NoCreateOnce):
        raise
    except FileNotFoundError as exc:
        if speaks_of_a_bucket(exc, where):
            raise store_failure(where, exc) from None
        raise
    except TypeError as exc:  # the driver makes its client on first use, with every option it was given
        raise ConfigError(f"--storage-options do not fit the file system of {where}: {short_cause(exc)}") from None
    except Exception as exc:  # providers raise many types: OSError subclasses, botocore, aiohttp, their own
        raise store_failure(where, exc) from None


class NoCreateOnce(Exception):
    """The fsspec driver has no exclusive-create mode."""
