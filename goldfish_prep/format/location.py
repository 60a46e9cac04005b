"""Where a file of an output folder is, for a folder on a local disk (a ``Path``) or at a URL (a ``UrlPath``).

Readers name shards in messages (``s3://bucket/shards/data-00003.arrow row
17``) and hand their locations around (``ShardBatch.path``,
``Manifest.shard_paths``). ``pathlib`` cannot hold a URL: ``Path("s3://b/x")``
is ``s3:/b/x``, a local path that names nothing. ``UrlPath`` is the small part of
``Path``'s interface those readers use (``/``, ``name``, ``parent``, ``str``),
spelled as the user spelled the URL. It has no ``__fspath__`` on purpose: a
local file function handed one fails at once instead of creating ``s3:/``.
Reading goes through the folder object (``open_folder``), never through a location.
"""

from __future__ import annotations

import re
from pathlib import Path

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def is_folder_url(location: str | Path) -> bool:
    """Whether ``location`` names a folder by URL (any fsspec scheme but ``file://``), not a local path.

    >>> is_folder_url("s3://bucket/shards"), is_folder_url("shards/"), is_folder_url("file:///data/shards")
    (True, False, False)
    """
    return isinstance(location, str) and _SCHEME.match(location) is not None and not location.startswith("file://")


class UrlPath:
    """A file or folder at a URL, as ``Path`` is one on a local disk.

    >>> shard = UrlPath("s3://bucket/shards/") / "data-00000.arrow"
    >>> str(shard), shard.name, str(shard.parent)
    ('s3://bucket/shards/data-00000.arrow', 'data-00000.arrow', 's3://bucket/shards')
    """

    __slots__ = ("url",)

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/") if not url.endswith("://") else url

    def __truediv__(self, name: str) -> UrlPath:
        return UrlPath(f"{self.url}/{name}")

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1] if "/" in self.url.split("://", 1)[1] else ""

    @property
    def parent(self) -> UrlPath:
        return UrlPath(self.url.rsplit("/", 1)[0]) if self.name else self

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"UrlPath({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UrlPath) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __reduce__(self) -> tuple[type[UrlPath], tuple[str]]:
        return (UrlPath, (self.url,))


#: a file or folder of an output: local, or at a URL
Location = Path | UrlPath


def location(spelled: str | Path | UrlPath) -> Location:
    """``spelled`` as a ``UrlPath`` when it is a URL, else as a ``Path``.

    >>> location("s3://bucket/shards"), location("shards")
    (UrlPath('s3://bucket/shards'), PosixPath('shards'))
    """
    if isinstance(spelled, (Path, UrlPath)):
        return spelled
    return UrlPath(spelled) if is_folder_url(spelled) else Path(spelled.removeprefix("file://"))


__all__ = ["Location", "UrlPath", "is_folder_url", "location"]
