"""The commit protocol on a local disk, and the one place that hashes files: write aside, fsync, rename.

Every file goldfish-prep writes (shards, records, the manifest, exports,
checkpoints, ``show --html``, the tokenizer cache) is written under a temporary
name, made durable with ``fsync``, renamed into place with ``os.replace`` and
the rename itself made durable by an ``fsync`` of the folder. A reader, a
``--resume`` or a crash then sees either nothing or a complete file, never a
torn one (HF datasets' ``save_to_disk`` and pypa/build do the same).

Object stores have no rename; there the same role falls to files written once
and a completion marker written after them (``folder.OutputFolder`` states the
protocol both follow). This module is the local half.

Hashing lives here too: ``PendingFile`` hashes what it writes on the way out,
``HashingReader`` what a reader streams in, ``file_sha256`` a whole file, so a
checksum is computed the same way wherever it is written or checked.

A shard carries two checksums (``CHECKSUMS``), computed in the one pass that
writes it: xxh3-128, which readers check (about 13 GB/s here, so checking a
shard costs a few percent of even the cheapest read of it), and sha256, which
the format has always recorded and tools outside goldfish-prep may check.
Neither is a defence against someone who forges the manifest too; both catch
a shard that changed after it was written.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import xxhash

from goldfish_prep.errors import OutputError
from goldfish_prep.format.names import partial_path

#: read and hash in blocks of this many bytes (large enough that hashlib releases the GIL for long)
BLOCK = 1 << 22
#: a shard's checksums, by their key in its record and manifest entry; readers check the first one present
CHECKSUMS = ("xxh3_128", "sha256")


def _new_hash(algorithm: str) -> Any:
    """A fresh hash object (``update``, ``hexdigest``) for a name of ``CHECKSUMS``."""
    return xxhash.xxh3_128() if algorithm == "xxh3_128" else hashlib.new(algorithm)


class Checksums:
    """Several checksums of one byte stream, fed in one pass (a shard's ``CHECKSUMS`` as it is written).

    >>> hashes = Checksums(); hashes.update(b"ab"); hashes.update(b"c")
    >>> hashes.hexdigests()["sha256"][:12]
    'ba7816bf8f01'
    """

    def __init__(self, algorithms: tuple[str, ...] = CHECKSUMS) -> None:
        self._hashes = {algorithm: _new_hash(algorithm) for algorithm in algorithms}

    def update(self, data: bytes | memoryview) -> None:
        for digest in self._hashes.values():
            digest.update(data)

    def hexdigests(self) -> dict[str, str]:
        """``{algorithm: hex digest}`` of everything fed so far."""
        return {algorithm: digest.hexdigest() for algorithm, digest in self._hashes.items()}


def json_bytes(data: Any) -> bytes:
    """Stable, human-readable JSON (sorted keys: byte-identical reruns), as every JSON file of an output is written."""
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")


def temporary_path(path: Path, unique: bool = False) -> Path:
    """Where ``path`` is written before its rename; ``unique`` adds the pid, for files that several processes may
    write at once (identical ``--num-tasks`` metadata, a checkpoint, a cache entry)."""
    temporary = partial_path(path)
    return temporary.with_suffix(f".{os.getpid()}.partial") if unique else temporary


def fsync_file(path: Path) -> None:
    """Make a written file's bytes durable (before anything that depends on them, such as a rename)."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_and_rename(temporary: Path, final: Path) -> None:
    """Make ``temporary`` durable, then atomically give it the name ``final``."""
    fsync_file(temporary)
    os.replace(temporary, final)
    fsync_directory(final.parent)


def fsync_directory(folder: Path) -> None:
    """Make a rename inside ``folder`` durable: the new name survives a power loss."""
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_failure(path: Path, exc: OSError) -> OutputError:
    """The one-line error for a failed write (full disk, file size limit, permissions)."""
    cause = exc.strerror or str(exc).splitlines()[0]
    return OutputError(
        f"cannot write {path} ({cause}); completed shards are kept: free space or fix the location, then rerun with --resume"
    )


def cannot_write(what: str, path: Path | str, exc: OSError) -> OutputError:
    """The one-line error of a command whose output could not be written: what, where, why, and how to fix it.

    >>> str(cannot_write("the web page", Path("out/doc.html"), OSError(errno.ENOSPC, "No space left on device")))
    'cannot write the web page out/doc.html (No space left on device): free space there or choose another location, then rerun'
    """
    where = Path(path)
    code = exc.errno
    if code is None:  # pyarrow's writers raise OSError('... Detail: [errno 28] No space left on device')
        found = re.search(r"\[errno (\d+)\]", str(exc))
        code = int(found.group(1)) if found else None
    cause = os.strerror(code) if code else exc.strerror or str(exc).splitlines()[0]
    if code == errno.ENOENT and not where.parent.is_dir():
        fix = f"the folder {where.parent} does not exist: create it or choose another location, then rerun"
    elif code in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = "the location is not writable: choose a writable one (or fix its permissions), then rerun"
    elif code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        fix = "free space there or choose another location, then rerun"
    else:
        fix = "fix the location or choose another, then rerun"
    return OutputError(f"cannot write {what} {where} ({cause}): {fix}")


def write_bytes_atomic(path: Path, data: bytes, unique: bool = True) -> None:
    """Write ``data`` to ``path`` by the commit protocol; a failure leaves no temporary file and raises ``OSError``."""
    temporary = temporary_path(path, unique)
    try:
        temporary.write_bytes(data)
        fsync_and_rename(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as ``json_bytes`` atomically; an ``OutputError`` naming the file if it cannot be written."""
    try:
        write_bytes_atomic(path, json_bytes(data), unique=True)  # the pid: concurrent tasks write identical files
    except OSError as exc:
        raise write_failure(path, exc) from exc


def append_line(path: Path, line: str) -> None:
    """Append one line to a log (the trainer's ``metrics.jsonl``): the one kind of file that grows instead of
    being committed whole; each line is written by a single ``write``, so a crash loses at most the last one."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


class PendingFile:
    """A file being written under its temporary name, hashing every byte; ``commit`` gives it its final name.

    Hashing on the way out, rather than reading the finished file back, keeps
    the checksum off the end of a run (with ``--num-proc``, the workers would
    sit idle while the main process re-read the last shard). It is a plain
    binary sink, so pyarrow (``pa.PythonFile``), ``torch.save`` and numpy write to it.
    """

    def __init__(self, final: Path, unique: bool = False, hashed: bool = True) -> None:
        self.final = final
        self.temporary = temporary_path(final, unique)
        self._raw: BinaryIO = open(self.temporary, "wb", buffering=0)
        # shards are hashed (their records hold CHECKSUMS); exports and checkpoints need no checksum
        self._hashes = Checksums() if hashed else None
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        if self._hashes is not None:
            self._hashes.update(data)
        self.size += len(data)
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()

    def close(self) -> None:
        self._raw.close()

    @property
    def closed(self) -> bool:
        return self._raw.closed

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.size

    def hexdigest(self) -> str:
        """sha256 of everything written so far ('' for a file opened with ``hashed=False``)."""
        return self.checksums().get("sha256", "")

    def checksums(self) -> dict[str, str]:
        """Every checksum of ``CHECKSUMS`` of the bytes written so far ({} for a file opened with ``hashed=False``)."""
        return self._hashes.hexdigests() if self._hashes is not None else {}

    def commit(self) -> str:
        """Close, make durable under the final name, and return the sha256 of the bytes written (see ``hexdigest``)."""
        self._raw.close()
        fsync_and_rename(self.temporary, self.final)
        return self.hexdigest()

    def abort(self) -> None:
        """Drop the temporary file; the final name is never touched."""
        self._raw.close()
        self.temporary.unlink(missing_ok=True)

    def cancel(self) -> None:
        """Nothing to stop: a local commit (an fsync and a rename) runs in the thread that asks for it and waits on
        no store (``upload.UploadFile.cancel`` stops an upload another thread waits on)."""


@contextmanager
def committed_file(path: Path, unique: bool = False, hashed: bool = False) -> Iterator[PendingFile]:
    """A ``PendingFile`` for ``path``, committed when the block ends and dropped if it raises.

    >>> # with committed_file(Path("out/train.bin")) as out: out.write(ids.tobytes())
    """
    pending = PendingFile(path, unique, hashed)
    try:
        yield pending
    except BaseException:
        pending.abort()
        raise
    pending.commit()


class HashingReader:
    """A readable binary stream that hashes what passes through it (a shard read by ``pa.ipc.open_stream``),
    with sha256 unless other ``algorithms`` of ``CHECKSUMS`` are asked for (a reader checks xxh3_128)."""

    def __init__(self, raw: BinaryIO, algorithms: tuple[str, ...] = ("sha256",)) -> None:
        self._raw = raw
        self._algorithm = algorithms[0]
        self._hashes = Checksums(algorithms)

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._hashes.update(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()

    @property
    def closed(self) -> bool:
        return self._raw.closed

    def hexdigest(self) -> str:
        """The digest of the whole stream (sha256, or the first of ``algorithms``): what is left unread is read
        (and hashed) first."""
        return self.checksums()[self._algorithm]

    def checksums(self) -> dict[str, str]:
        """``{algorithm: hex digest}`` of the whole stream, what is left unread read (and hashed) first."""
        while self.read(BLOCK):
            pass
        return self._hashes.hexdigests()


def buffer_checksums(buffer: Any, algorithms: tuple[str, ...] = CHECKSUMS) -> dict[str, str]:
    """``{algorithm: hex digest}`` of a buffer (a memory-mapped shard), in blocks so the GIL is released while hashing.

    >>> buffer_checksums(b"abc", ("xxh3_128",))
    {'xxh3_128': '06b05ab6733a618578af5f94892f3950'}
    """
    hashes = Checksums(algorithms)
    view = memoryview(buffer)
    for start in range(0, len(view), BLOCK):
        hashes.update(view[start : start + BLOCK])
    return hashes.hexdigests()


def buffer_sha256(buffer: Any) -> str:
    """sha256 of a buffer (a memory-mapped shard)."""
    return buffer_checksums(buffer, ("sha256",))["sha256"]


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file, read in 4 MiB blocks."""
    with open(path, "rb") as handle:
        return HashingReader(handle).hexdigest()


def text_sha256(data: bytes) -> str:
    """sha256 hex digest of bytes held in memory (a run description, a manifest)."""
    return hashlib.sha256(data).hexdigest()
