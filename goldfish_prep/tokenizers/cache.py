"""A content-keyed on-disk cache for what is slow to work out about a tokenizer.

Deciding whether a ``tokenizer.json`` maps exactly onto tiktoken means loading
it with HF ``tokenizers`` (about 1 s for Llama 3), serialising it and checking
400k merges (another second or so). The answer depends only on the tokenizer
files' bytes and the library versions that read them, so it is stored under a
key that hashes exactly those: a changed file or an upgraded library is a
different key, never a stale answer. Entries are written atomically and read
defensively: anything unreadable is a miss, and the caller recomputes.

Location: ``$GOLDFISH_PREP_CACHE`` if set, else ``$XDG_CACHE_HOME/goldfish-prep``
(``~/.cache/goldfish-prep``). ``GOLDFISH_PREP_CACHE=off`` disables it.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: bump when what an entry means changes (the analysis, the file layout)
CACHE_FORMAT = "tokenizer-plan-1"
_RANK_HEADER = struct.Struct("<IH")


def cache_dir() -> Path | None:
    """The cache folder, or None when caching is off."""
    override = os.environ.get("GOLDFISH_PREP_CACHE")
    if override is not None:
        return None if override.strip().lower() in ("", "off", "0", "none") else Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "goldfish-prep"


def content_key(parts: Iterable[bytes]) -> str:
    """sha256 over length-prefixed parts, the cache format first."""
    digest = hashlib.sha256()
    for part in (CACHE_FORMAT.encode(), *parts):
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()


def read_entry(key: str) -> tuple[dict[str, Any], dict[bytes, int] | None] | None:
    """The facts stored under ``key`` and its ranks (None if it has none), or None on a miss."""
    folder = cache_dir()
    if folder is None:
        return None
    try:
        facts = json.loads((folder / f"{key}.json").read_text(encoding="utf-8"))
        if not isinstance(facts, dict) or facts.get("format") != CACHE_FORMAT:
            return None
        if facts.get("ranks_sha256") is None:
            return facts, None
        blob = (folder / f"{key}.ranks").read_bytes()
        if hashlib.sha256(blob).hexdigest() != facts["ranks_sha256"]:
            return None
        return facts, _unpack_ranks(blob)
    except (OSError, ValueError, KeyError, struct.error):
        return None


def write_entry(key: str, facts: dict[str, Any], ranks: dict[bytes, int] | None) -> None:
    """Store ``facts`` (JSON-able) and ``ranks`` under ``key``; a cache that cannot be written is skipped."""
    folder = cache_dir()
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        record = {**facts, "format": CACHE_FORMAT, "ranks_sha256": None}
        if ranks is not None:
            blob = _pack_ranks(ranks)
            record["ranks_sha256"] = hashlib.sha256(blob).hexdigest()
            _write_atomic(folder / f"{key}.ranks", blob)
        _write_atomic(folder / f"{key}.json", json.dumps(record, sort_keys=True).encode())
    except OSError:
        return  # a read-only or full cache folder costs speed, never correctness


def _pack_ranks(ranks: dict[bytes, int]) -> bytes:
    # per token: uint32 rank, uint16 length, bytes (tokens are at most a few hundred bytes)
    return b"".join(_RANK_HEADER.pack(rank, len(token)) + token for token, rank in ranks.items())


def _unpack_ranks(blob: bytes) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    offset, size, header = 0, len(blob), _RANK_HEADER.size
    while offset < size:
        rank, length = _RANK_HEADER.unpack_from(blob, offset)
        offset += header
        ranks[blob[offset : offset + length]] = rank
        offset += length
    if offset != size:
        raise ValueError("truncated ranks")
    return ranks


def _write_atomic(path: Path, data: bytes) -> None:
    # imported here: the format package imports pyarrow, which loading a tokenizer does not need
    from goldfish_prep.format.commit import write_bytes_atomic

    write_bytes_atomic(path, data, unique=True)  # processes may fill the same entry at once
