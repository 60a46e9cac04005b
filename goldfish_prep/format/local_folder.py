"""An output folder on a local (or mounted, shared POSIX) disk: the storage primitives with ``os`` calls.

Reads are memory-mapped (a shard's columns are views of the page cache, no
copy), commits are ``commit.py``'s write aside, ``fsync``, ``os.replace``,
``fsync`` of the folder, locks are ``lock.py``'s ``flock``s. Every rule is in ``folder.OutputFolder``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa

from goldfish_prep.errors import OutputError
from goldfish_prep.format.commit import PendingFile, file_sha256, write_bytes_atomic
from goldfish_prep.format.folder import OutputFolder
from goldfish_prep.format.lock import FileLock, Holder, held_by
from goldfish_prep.format.names import PROGRESS_DIR


class LocalFolder(OutputFolder):
    """An output folder on a local (or shared POSIX) disk: memory-mapped reads, ``os.replace`` commits, ``fsync``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._spelling = str(path)  # as the user wrote it (``shards/``), for messages about the folder itself

    def where(self, name: str = "") -> str:
        return str(self.path / name) if name else self._spelling

    def file(self, name: str) -> Path:
        """The local path of a file of the folder (for the few callers that hand a path to another library)."""
        return self.path / name

    def exists(self) -> bool:
        return self.path.exists()

    def is_folder(self) -> bool:
        return self.path.is_dir()

    def has_file(self, name: str) -> bool:
        return (self.path / name).is_file()

    def entries(self, under: str = "") -> list[str]:
        folder = self.path / under
        return sorted(entry.name for entry in folder.iterdir()) if folder.is_dir() else []

    def read_bytes(self, name: str) -> bytes:
        return (self.path / name).read_bytes()

    def write_bytes(self, name: str, data: bytes) -> None:
        write_bytes_atomic(self.path / name, data, unique=True)  # the pid: concurrent tasks write identical files

    def pending(self, name: str) -> PendingFile:
        return PendingFile(self.path / name)

    def remove(self, name: str) -> None:
        path = self.path / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    def move(self, name: str, to: str) -> None:
        target = self.path / to
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path / name, target)

    def admit(self, existing: str) -> None:
        """Also refuse a progress folder that is a symbolic link: the lock (taken next) and every record would be
        written through it, outside the output folder."""
        progress = self.path / PROGRESS_DIR
        if progress.is_symlink():
            raise OutputError(
                f"output folder {self.where()}: {PROGRESS_DIR} is a symbolic link (to {os.readlink(progress)}); goldfish-prep "
                "never writes through links in an output folder. Remove the link, or choose a new folder with -o"
            )
        super().admit(existing)

    def make_progress_folder(self) -> None:
        (self.path / PROGRESS_DIR).mkdir(parents=True, exist_ok=True)

    def lock(self, name: str, shared: bool = False) -> FileLock:
        return FileLock(self.path / name, shared)

    def lock_holder(self, name: str) -> Holder | None:
        return held_by(self.path / name)

    def shard_buffer(self, name: str) -> pa.Buffer:
        with pa.memory_map(str(self.path / name), "r") as source:
            return source.read_buffer()  # the buffer keeps the map alive after the file is closed

    def sha256(self, name: str) -> str:
        return file_sha256(self.path / name)


__all__ = ["LocalFolder"]
