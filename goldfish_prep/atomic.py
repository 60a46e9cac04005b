"""Crash-safe file writes: write to a temporary name, fsync, rename into place.

A reader (or ``--resume``) then sees either nothing or a complete file, never a
torn one (the pattern of HF datasets' ``save_to_disk`` and pypa/build).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from goldfish_prep.errors import OutputError
from goldfish_prep.format.names import partial_path


def fsync_and_rename(temporary: Path, final: Path) -> None:
    """Make ``temporary`` durable, then atomically give it the name ``final``."""
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, final)
    fsync_directory(final.parent)


def fsync_directory(folder: Path) -> None:
    """Make a rename inside ``folder`` durable: the new name survives a power loss."""
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as stable, human-readable JSON (sorted keys: byte-identical reruns), atomically."""
    # the pid keeps concurrent --num-tasks jobs writing the same (identical) file from colliding
    temporary = partial_path(path).with_suffix(f".{os.getpid()}.partial")
    try:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        fsync_and_rename(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise write_failure(path, exc) from exc


def write_failure(path: Path, exc: OSError) -> OutputError:
    """The one-line error for a failed write (full disk, file size limit, permissions)."""
    cause = exc.strerror or str(exc).splitlines()[0]
    return OutputError(
        f"cannot write {path} ({cause}); completed shards are kept: free space or fix the location, then rerun with --resume"
    )


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()
