"""Keep credentials out of everything goldfish-prep writes or prints.

A URL can carry a secret (a signed URL's query string, a password before
``@``), and so can ``--storage-options`` and the provider's environment
variables. Inputs are named everywhere (manifest, run description, document
ids, error lines) by their *shown* form, which has none of these; messages
that quote a provider's own error go through ``scrub``, which replaces every
secret it was told about, and every URL query string, by ``<redacted>``.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

REDACTED = "<redacted>"
#: Environment variables whose values are secrets for the providers fsspec reaches.
SECRET_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_CLIENT_SECRET",
)
# Option names that hold secrets (s3fs: key/secret/token; adlfs: account_key/sas_token/connection_string; gcsfs: token).
_SECRET_NAMES = re.compile(r"^sig$|secret|token|password|passwd|key|credential|sas|signature|connection_string", re.IGNORECASE)
_URL_QUERY = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s?#'\"]+)\?[^\s'\"]*")
# A secret-named parameter of a query whose URL is quoted without its scheme and host (urllib3's "Max retries
# exceeded with url: /tokeninfo?access_token=..." when gcsfs checks a raw token from FSSPEC_GS_TOKEN).
_SECRET_PARAMETER = re.compile(r"([?&][A-Za-z0-9_.-]*(?:token|sig|secret|key|password|credential)[A-Za-z0-9_.-]*=)[^\s&#'\"()]+", re.I)
# Values shorter than this are not scrubbed one by one (replacing "1" everywhere would garble messages).
_SHORTEST_SECRET = 6

_secrets: set[str] = set()


def shown_url(url: str) -> str:
    """``url`` as messages and the manifest show it: no query string, fragment or password.

    >>> shown_url("https://user:pw@host/a.jsonl.gz?X-Amz-Signature=abc#top")
    'https://user@host/a.jsonl.gz'
    >>> shown_url("s3://bucket/corpus/a.jsonl")
    's3://bucket/corpus/a.jsonl'
    """
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, has_password, password = userinfo.partition(":")
        if has_password:
            remember_secret(urllib.parse.unquote(password))
            remember_secret(password)
        netloc = f"{user}@{host}" if user else host
    if parts.query:
        remember_secret(parts.query)
        for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
            if _SECRET_NAMES.search(name):
                remember_secret(value)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def remember_options(options: Mapping[str, Any]) -> None:
    """Remember the secret-looking values of storage options (nested dictionaries included)."""
    for name, value in options.items():
        if isinstance(value, Mapping):
            remember_options(value)
        elif isinstance(value, str) and _SECRET_NAMES.search(str(name)):
            remember_secret(value)


def remember_secret(value: str) -> None:
    """Have ``scrub`` replace ``value`` from now on."""
    if len(value) >= _SHORTEST_SECRET:
        _secrets.add(value)


def scrub(text: str) -> str:
    """``text`` with every known secret, every URL query string, and every secret-named query parameter replaced
    by ``<redacted>``.

    >>> remember_secret("hunter22")
    >>> scrub("denied for key hunter22 at https://h/x?sig=1")
    'denied for key <redacted> at https://h/x?<redacted>'
    >>> scrub("Max retries exceeded with url: /tokeninfo?access_token=ya29.x1 (Caused by ...)")
    'Max retries exceeded with url: /tokeninfo?access_token=<redacted> (Caused by ...)'
    """
    secrets = set(_secrets)
    secrets.update(value for name in SECRET_VARIABLES if len(value := os.environ.get(name, "")) >= _SHORTEST_SECRET)
    for secret in sorted(secrets, key=len, reverse=True):  # longest first: a query string before its values
        text = text.replace(secret, REDACTED)
    text = _URL_QUERY.sub(lambda match: f"{match.group(1)}?{REDACTED}", text)
    return _SECRET_PARAMETER.sub(lambda match: f"{match.group(1)}{REDACTED}", text)
