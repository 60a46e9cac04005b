"""Crash-safe folders of files made for others (exports): written under ``OUT.partial/``, renamed to ``OUT`` when complete.

A trainer pointed at ``OUT`` then sees either nothing or a whole export whose
record (``goldfish_export.json``) was written last. Inside the staging folder
each file is itself written under a ``.partial`` name and renamed once closed,
so even a glob over the staging folder of a killed export finds no torn file
that loads. The next export to the same ``OUT`` clears such a leftover (it is
recognised by a tag file, so a folder of the user's is never deleted).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from goldfish_prep.errors import OutputError
from goldfish_prep.format.commit import PendingFile, committed_file, fsync_and_rename, fsync_directory, json_bytes
from goldfish_prep.format.names import partial_path

RECORD_NAME = "goldfish_export.json"
_TAG = ".goldfish-export-staging"


class Staging:
    """The staging folder of one export; ``path(name)`` is where a file is written before ``commit(name)``."""

    def __init__(self, out: Path, root: Path) -> None:
        self.out = out
        self.root = root

    def path(self, name: str) -> Path:
        """Where the file ``name`` (relative to OUT) is written; it becomes visible on ``commit``."""
        final = self.root / name
        final.parent.mkdir(parents=True, exist_ok=True)
        return partial_path(final)

    def commit(self, name: str) -> None:
        """The file written at ``path(name)`` is complete: give it its name."""
        fsync_and_rename(self.path(name), self.root / name)

    @contextmanager
    def open(self, name: str) -> Iterator[PendingFile]:
        """A binary file ``name``, committed when the block ends (dropped if it raises)."""
        self.path(name)  # makes its folder
        with committed_file(self.root / name) as out:
            yield out

    @contextmanager
    def scratch(self, name: str) -> Iterator[PendingFile]:
        """A file the export writes for itself and reads back (``read_scratch``); never committed, removed with the folder."""
        pending = PendingFile(self.root / name, hashed=False)
        try:
            yield pending
        finally:
            pending.close()

    def read_scratch(self, name: str, dtype: str) -> npt.NDArray[Any]:
        """A scratch file's values, memory-mapped (its ``.partial`` name: scratch files are never committed)."""
        return np.memmap(partial_path(self.root / name), dtype=dtype, mode="r")

    def discard_scratch(self, name: str) -> None:
        partial_path(self.root / name).unlink(missing_ok=True)

    def write_record(self, record: dict[str, Any]) -> None:
        """Write ``goldfish_export.json``: the last file, whose presence means the export is whole."""
        with self.open(RECORD_NAME) as out:
            out.write(json_bytes(record))


@contextmanager
def staged_folder(out: Path, overwrite: bool) -> Iterator[Staging]:
    """Stage an export for ``out``; on success the staging folder replaces ``out``, on error it is removed."""
    _check_destination(out, overwrite)
    root = partial_path(out)
    _clear_leftover(root)
    root.mkdir(parents=True)
    (root / _TAG).write_bytes(b"")
    try:
        yield Staging(out, root)
        if not (root / RECORD_NAME).is_file():
            raise AssertionError("an export must write its record before it is moved into place")
        (root / _TAG).unlink()
        _move_into_place(root, out)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def _check_destination(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not overwrite:
        raise OutputError(f"{out} already exists; pass --overwrite to replace it, or choose another -o folder")
    if not out.is_dir() or not ((out / RECORD_NAME).is_file() or not any(out.iterdir())):
        raise OutputError(f"{out} is not an export of goldfish-prep (no {RECORD_NAME}); refusing to replace it: choose another -o folder")


def _clear_leftover(root: Path) -> None:
    if not root.exists():
        return
    if not (root / _TAG).is_file():
        raise OutputError(f"{root} exists and was not made by goldfish-prep export; move it away or choose another -o folder")
    shutil.rmtree(root)


def _move_into_place(root: Path, out: Path) -> None:
    """Rename the finished staging folder to ``out``, replacing a previous export there."""
    old = out.with_name(out.name + ".replaced")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(root, out)
    fsync_directory(out.parent)
    shutil.rmtree(old, ignore_errors=True)
