"""Inputs on object storage and the web, read through fsspec: ``s3://``, ``gs://``, ``az://``, ``hf://``, ``http(s)://``.

A URL is resolved as a local path is (``resolve``): one object, a prefix read
as a folder (every object below it, in the order a local walk of the same
tree gives), or a glob; formats and compression are told by name. Objects are
streamed in blocks of ``_BLOCK`` bytes (one ranged GET each), so memory does
not grow with the corpus and nothing is downloaded whole first.

Credentials and endpoints come from each provider's own chain (for S3:
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, profiles, instance roles, and
``AWS_ENDPOINT_URL`` for S3-compatible stores, all read by botocore), plus the
``storage_options`` of a run (``mask --storage-options``), passed as they are
to every URL's fsspec file system. Inputs are named by their shown form
(``redact.shown_url``); the URL to open, which may carry a signed query, stays
in this process (``_urls``). The provider packages are optional extras; a
missing one is one line naming the extra.
"""

from __future__ import annotations

import contextlib
import io
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pyarrow as pa

from goldfish_prep.errors import ConfigError, InputError
from goldfish_prep.readers.hub_urls import changed_on_the_hub, hub_error, no_match
from goldfish_prep.readers.redact import remember_options, scrub, shown_url

#: URL scheme -> (the package fsspec needs for it, the goldfish-prep extra that installs it).
PROVIDERS = {
    "s3": ("s3fs", "s3"),
    "s3a": ("s3fs", "s3"),
    "gs": ("gcsfs", "gcs"),
    "gcs": ("gcsfs", "gcs"),
    "az": ("adlfs", "azure"),
    "abfs": ("adlfs", "azure"),
    "abfss": ("adlfs", "azure"),
    "hf": ("huggingface_hub", "hf"),
    "http": ("aiohttp", "http"),
    "https": ("aiohttp", "http"),
}
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_NO_LISTING = ("http", "https")
# 8 MiB per ranged GET: about 128 requests per GB read, and one block of memory per open object.
_BLOCK = 8 << 20
_MAX_CAUSE = 240
_FIX_NETWORK = "Check the network and the store{endpoint} and run again; --resume keeps finished shards"
#: where each provider's credentials usually come from, for the message that says they were refused (GCS's:
#: ``format.store_errors.GCS_CREDENTIALS``, which outputs' refusals name too)
_CREDENTIALS = {
    "s3": "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile or a role",
    # what adlfs reads: a connection string, or an account name with its key or a SAS token; else Azure's default chain
    "az": "AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_TOKEN, or az login",
    "hf": "HF_TOKEN or hf auth login",
}
_FAMILY = {"s3a": "s3", "gcs": "gs", "abfs": "az", "abfss": "az"}

_options: dict[str, Any] = {}
_filesystems: dict[str, Any] = {}
#: shown URL -> (scheme, the path to open on that scheme's file system)
_urls: dict[str, tuple[str, str]] = {}
#: shown URL -> the object's ETag when the run resolved it: every open of the run must find that version
_versions: dict[str, str] = {}


def is_url(spec: str) -> bool:
    """Whether ``spec`` names an input by URL of a scheme goldfish-prep reads.

    >>> is_url("s3://bucket/a.jsonl"), is_url("data/a.jsonl"), is_url("ftp://host/a")
    (True, False, False)
    """
    match = _SCHEME.match(spec)
    return match is not None and match.group(1).lower() in PROVIDERS


def use_storage_options(options: Mapping[str, Any] | None) -> None:
    """Open the URLs of the runs that follow with these fsspec ``storage_options`` (and fresh connections).

    Either one set for every scheme (``{"anon": true}``), or one per scheme when
    every key is a scheme (``{"s3": {"anon": true}, "https": {}}``): options of one
    provider mean nothing, or something else, to another.
    """
    _options.clear()
    _options.update(options or {})
    remember_options(_options)
    _filesystems.clear()
    _versions.clear()


def options_for(scheme: str) -> dict[str, Any]:
    """The storage options that apply to ``scheme``.

    >>> use_storage_options({"s3": {"anon": True}, "https": {}}); options_for("s3"), options_for("gs")
    ({'anon': True}, {})
    >>> use_storage_options(None)
    """
    if _options and all(key in PROVIDERS for key in _options):
        chosen = _options.get(scheme, {})
        return dict(chosen) if isinstance(chosen, Mapping) else {}
    return dict(_options)


def name_of(path: str) -> str:
    """The last part of a path or URL, without a query string, to tell its format by.

    >>> name_of("https://host/data/a.jsonl.gz?sig=1"), name_of("corpus/b.txt")
    ('a.jsonl.gz', 'b.txt')
    """
    if is_url(path):
        path = shown_url(path)
    return posixpath.basename(path.rstrip("/"))


def expand_url(spec: str) -> tuple[list[str], list[str], bool]:
    """The objects a URL names, as shown URLs: (files in reading order, hidden ones passed over, whether it named one object).

    A prefix ("folder") yields every object below it, sorted part by part as a
    local folder walk sorts; a glob yields its sorted matches, prefixes walked.
    """
    scheme, fs_path = _split(spec)
    shown = shown_url(spec)
    fs = _filesystem(scheme, shown)
    if scheme in _NO_LISTING:
        if any(char in urlpath(spec) for char in "*?["):
            raise InputError(shown, "an HTTP server has no listing to match a pattern against", "Name each file's URL", "missing-input")
        info = _call(shown, lambda: fs.info(fs_path))
        return [_remember(scheme, fs_path, shown, info)], [], True
    if any(char in fs_path for char in "*?["):
        matches = _call(shown, lambda: fs.glob(fs_path, detail=True))
        if not matches:
            if scheme == "hf":  # a repository, not a bucket
                raise no_match(shown)
            raise InputError(shown, "the pattern matches no object", "Check the pattern and the bucket", "missing-input")
        files: list[str] = []
        hidden: list[str] = []
        literal = set(fs_path.split("/"))
        for name in sorted(matches):
            if any(part.startswith(".") and part not in literal for part in name.split("/")):
                continue  # as a local glob: wildcards do not match hidden names
            if matches[name].get("type") == "directory":
                found, passed = _walk(fs, scheme, name)
                files += found
                hidden += passed
            else:
                files.append(_remember(scheme, name, f"{scheme}://{name}", matches[name]))
        return files, hidden, False
    info = _call(shown, lambda: fs.info(fs_path))
    if info.get("type") != "directory":
        return [_remember(scheme, fs_path, shown, info)], [], True
    found, passed = _walk(fs, scheme, fs_path)
    return found, passed, False


def urlpath(url: str) -> str:
    """The path part of a URL (no query), where glob characters would be."""
    return shown_url(url).split("://", 1)[1]


def open_binary(path: str, whole: bool = False) -> io.BufferedIOBase:
    """A local file, or a shown URL's object streamed in blocks, open for binary reading.

    ``whole``: the caller reads the object from start to end (the masking pass,
    an input's hash). Then the next block is fetched in the background while this
    one is parsed (fsspec's ``background`` cache, at most two blocks held), which
    hides a GET's latency behind the parsing: 100 MB read with 3 ms of work per
    MiB took 0.69 to 0.71 s against 0.98 to 1.35 s block after block, on the
    tests' moto server (``python bench/url_prefetch.py``). A reader that stops early (a look at the first record,
    a Parquet file read by ranges) gets no prefetch: it would fetch a block it
    never reads."""
    if not is_url(path):
        return open(path, "rb")
    # a URL this process resolved (a signed one keeps its query here), or one read back from a manifest
    scheme, fs_path = _urls.get(path) or _split(path)
    fs = _filesystem(scheme, path)
    cache: dict[str, Any] = {"cache_type": "background", "cache_options": {"maxblocks": 2}} if whole else {"cache_type": "readahead"}
    handle = _call(path, lambda: fs.open(fs_path, "rb", block_size=_BLOCK, **cache))
    pinned, now = _versions.get(path), _version(getattr(handle, "details", None) or {})
    if pinned is not None and now is not None and now != pinned:  # replaced since the run resolved it
        handle.close()
        raise _changed(path)
    return _RemoteFile(handle, path)


@contextlib.contextmanager
def arrow_input(path: str) -> Iterator[str | pa.NativeFile]:
    """What pyarrow's Parquet reader opens: a local path as it is, a URL's object as a seekable file."""
    if not is_url(path):
        yield path
        return
    with pa.PythonFile(open_binary(path), mode="r") as handle:
        yield handle


def open_arrow(path: str) -> pa.NativeFile:
    """An Arrow IPC input: a local file memory-mapped, a URL's object as a seekable file."""
    return pa.PythonFile(open_binary(path), mode="r") if is_url(path) else pa.memory_map(path)


def object_state(path: str) -> tuple[int, int, str | None]:
    """An object's size, modification time (ns, 0 if the store gives none) and ETag, asked afresh (not from a listing)."""
    scheme, fs_path = _urls.get(path) or _split(path)
    fs = _filesystem(scheme, path)
    if hasattr(fs, "invalidate_cache"):
        fs.invalidate_cache(fs_path)
    info = _call(path, lambda: fs.info(fs_path))
    modified = info.get("LastModified") or info.get("last_modified") or info.get("updated")
    mtime_ns = int(modified.timestamp() * 1e9) if hasattr(modified, "timestamp") else 0
    return int(info.get("size") or 0), mtime_ns, _version(info)


def filesystem_of(url: str) -> Any:
    """This run's fsspec file system for ``url``'s scheme, with the run's storage options (``format.url_folder``
    reads output folders through it)."""
    return _filesystem(url.split("://", 1)[0].lower(), shown_url(url))


def failing_in_one_line(handle: Any, shown: str) -> io.BufferedIOBase:
    """An open fsspec file whose failed reads (after the provider's retries) are one ``InputError`` naming ``shown``."""
    return _RemoteFile(handle, shown)


def _split(spec: str) -> tuple[str, str]:
    """(scheme, the path the scheme's fsspec file system takes)."""
    scheme = spec.split("://", 1)[0].lower()
    return (scheme, spec) if scheme in _NO_LISTING else (scheme, spec.split("://", 1)[1])


def _remember(scheme: str, fs_path: str, shown: str, info: Mapping[str, Any]) -> str:
    """Note how to open ``shown``, and the version (ETag) the run resolved, which every later open must find."""
    _urls[shown] = (scheme, fs_path)
    version = _version(info)
    if version is not None:
        _versions[shown] = version
    return shown


def _version(info: Mapping[str, Any]) -> str | None:
    """An object's ETag as its store reports it (s3fs: ETag; gcsfs, adlfs: etag), if any; for a hub file, its git
    blob id (huggingface_hub's listings carry no ETag, and a commit to the branch changes the blob id, even when
    the size stays: without it such a file would pass for unchanged)."""
    value = info.get("ETag") or info.get("etag") or info.get("blob_id")
    return str(value) if value else None


def _walk(fs: Any, scheme: str, prefix: str) -> tuple[list[str], list[str]]:
    """Objects below ``prefix``, sorted part by part (as ``resolve`` walks a folder); hidden ones apart."""
    found = _call(f"{scheme}://{prefix}", lambda: fs.find(prefix, detail=True))
    names = [name for name in found if not name.endswith("/")]
    root = prefix.rstrip("/")
    files, hidden = [], []
    for name in sorted(names, key=lambda name: posixpath.relpath(name, root).split("/")):
        shown = f"{scheme}://{name}"
        if any(part.startswith(".") for part in posixpath.relpath(name, root).split("/")):
            hidden.append(shown)
        else:
            files.append(_remember(scheme, name, shown, found[name]))
    return files, hidden


def _filesystem(scheme: str, shown: str) -> Any:
    """This run's fsspec file system for ``scheme`` (created once per run, with the run's storage options)."""
    if scheme in _filesystems:
        return _filesystems[scheme]
    from goldfish_prep.format.store_errors import quiet_gcsfs

    quiet_gcsfs()  # before the first request: gcsfs would print its traceback of a refused one above the line
    package, extra = PROVIDERS[scheme]
    try:
        import fsspec

        fs = fsspec.filesystem(scheme, skip_instance_cache=True, **options_for(scheme))
    except ImportError:
        raise ConfigError(
            f"{shown}: {scheme}:// URLs need the Python package {package!r}, which is not installed. Fix: pip install 'goldfish-prep[{extra}]'"
        ) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"--storage-options do not fit the {scheme}:// file system: {_short(exc)}") from None
    except Exception as exc:  # a provider that checks its credentials as it starts: gcsfs asks Google about a raw token
        raise ConfigError(
            f"{shown}: the {scheme}:// file system could not start ({_short(exc)}). "
            f"Check the credentials ({credentials_for(shown)}; or --storage-options) and the network"
        ) from None
    _filesystems[scheme] = fs
    return fs


def _call(shown: str, operation: Callable[[], Any]) -> Any:
    """Run a file-system operation; turn what the store says into one ``InputError`` line."""
    try:
        return operation()
    except (InputError, ConfigError):
        raise
    except TypeError as exc:  # an option the provider's client does not take (it creates that client on first use)
        if not _options:
            raise
        raise ConfigError(f"--storage-options do not fit the file system of {shown}: {_short(exc)}") from None
    except Exception as exc:  # providers raise many types: OSError subclasses, botocore, aiohttp, their own
        raise store_error(shown, exc) from None


def store_error(shown: str, exc: BaseException) -> InputError:
    """The one line for a failed request to a store: what it said (scrubbed of secrets) and what to check."""
    from goldfish_prep.format.store_errors import bucket_cause, bucket_is_missing, store_answer

    cause = _short(exc)
    lowered = cause.lower()
    scheme = shown.split("://", 1)[0].lower()
    family = _FAMILY.get(scheme, scheme)
    credentials = credentials_for(shown)
    if family == "hf" and (refused := hub_error(shown, exc)) is not None:  # a repository, a revision, offline
        return refused
    status = store_answer(exc)[1]
    denied = status in (401, 403)
    if bucket_is_missing(exc, shown, cause, status):
        where = "STORAGE_EMULATOR_HOST for an emulator" if family == "gs" else "AWS_ENDPOINT_URL for an S3-compatible store"
        return InputError(
            shown, f"the bucket does not exist ({bucket_cause(exc, shown, cause)})", f"Check the bucket name, and {where}", "missing-input"
        )
    if type(exc).__name__ == "FileExpired" or "no longer exists" in lowered:  # s3fs: the ETag it listed no longer matches
        return _changed(shown)
    if isinstance(exc, FileNotFoundError):
        return InputError(shown, "no such object or prefix", "Check the URL; a prefix must hold at least one object", "missing-input")
    if (
        isinstance(exc, PermissionError)
        or denied  # 401: no credentials, or ones the store does not know (GCS's anonymous caller)
        or any(word in lowered for word in ("forbidden", "access denied", "signature", "credentials"))
    ):
        return InputError(
            shown,
            f"the store refused access ({cause})",
            f"Check the credentials ({credentials}; or --storage-options) and their permission to read it",
            "remote-denied",
        )
    endpoint = " (and AWS_ENDPOINT_URL for an S3-compatible store)" if family == "s3" else ""
    return InputError(shown, f"the request failed after retries ({cause})", _FIX_NETWORK.format(endpoint=endpoint), "remote-unavailable")


def credentials_for(url: str) -> str:
    """Where the credentials for ``url``'s store usually come from, for a message that says they were refused.

    >>> credentials_for("abfs://container/prefix")
    'AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_TOKEN, or az login'
    >>> credentials_for("gs://bucket/corpus/")
    "GOOGLE_APPLICATION_CREDENTIALS, or `gcloud auth application-default login`, or the VM's service account"
    """
    scheme = url.split("://", 1)[0].lower()
    family = _FAMILY.get(scheme, scheme)
    if family == "gs":  # one wording for inputs and outputs, kept with the outputs' refusals
        from goldfish_prep.format.store_errors import GCS_CREDENTIALS

        return GCS_CREDENTIALS
    return _CREDENTIALS.get(family, "the credentials in the URL")


def _changed(shown: str) -> InputError:
    """The one line for an object that is no longer the version the run listed (for a hub file: its blob id)."""
    if shown.lower().startswith("hf://"):
        return changed_on_the_hub(shown)
    return InputError(
        shown,
        "the object changed while mask read it (its ETag is not the one listed at the start of the run)",
        "Rerun once the object holds still; --resume keeps the shards made from it only if its bytes are as they were",
        "remote-changed",
    )


def _short(exc: BaseException) -> str:
    text = scrub(" ".join(str(exc).split())) or type(exc).__name__
    return text if len(text) <= _MAX_CAUSE else text[: _MAX_CAUSE - 3] + "..."


class _RemoteFile(io.BufferedIOBase):
    """An fsspec file whose failures (after the provider's own retries) are one ``InputError`` line."""

    def __init__(self, handle: Any, shown: str) -> None:
        super().__init__()
        self._handle = handle
        self._shown = shown

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        data: bytes = _call(self._shown, lambda: self._handle.read(-1 if size is None else size))
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        position: int = self._handle.seek(offset, whence)
        return position

    def tell(self) -> int:
        position: int = self._handle.tell()
        return position

    def close(self) -> None:
        if not self.closed:
            self._handle.close()
        super().close()
