"""What a local input was when it was read: the size and xxh3-128 of the bytes parsed, and proof it held still.

The manifest records each input's size and hash so that anyone can later tell
whether an output was made from a given file. Those figures must describe the
very bytes the readers parsed. Hashing the inputs in a pass of their own before
reading them records a file as it was then; a file still being written (or
rewritten) is parsed as it is later, and the run ends with a hash that matches
none of its rows. So the text readers hand every raw byte they read to
``InputSnapshot.update`` (one pass: the bytes are read once), and the snapshot
compares each file's size and modification time at the start of the run with
what they are once the file has been read (GNU tar's "file changed as we read
it"); the pipeline compares them once more at the end of the run.

Parquet and Arrow files are read by pyarrow out of order (the footer first, only
the columns needed), so no reader can hand their bytes over in order. A local
Arrow file (or ``save_to_disk`` folder), which pyarrow reads memory-mapped, is
mapped here instead (``map_whole``): the mapping is hashed in order, and pyarrow
then parses that same mapping, so the bytes hashed are the bytes parsed and the
file is read from disk once. A Parquet file is not mapped (a mapped file cut
short while it is parsed kills the process with SIGBUS; read through ``read`` it
fails with one line): pyarrow reads it through ``InOrderFile``, which hashes in
order what pyarrow reads and what it skips, so it too is read once (its small
footer twice). A URL's object can be neither: it is hashed in one sequential
read just before pyarrow reads it, and the same size and time check covers
the time between.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from typing import Any

import xxhash

from goldfish_prep.errors import InputError
from goldfish_prep.readers.options import InputSource
from goldfish_prep.readers.remote import is_url, object_state, open_binary

_BLOCK = 1 << 22
_FIX = "Copy it and mask the copy, or wait until it is complete; then rerun with --overwrite"


@dataclasses.dataclass(frozen=True)
class FileState:
    """What ``stat`` says of a file: enough to notice that it was written to."""

    size: int
    mtime_ns: int
    #: an object's ETag (URL inputs): a rewrite of the same size within the same second still shows
    version: str | None = None
    #: a local file's inode number and inode change time (``st_ino``, ``st_ctime_ns``; 0 for a URL's object).
    #: No call sets the change time back (``utime`` moves it too), so a rewrite whose size and modification
    #: time were put back still shows; a file replaced by a rename is another inode. They go into what a
    #: shard record saw (``seen``) only: the check during the run compares size and time as before, so a
    #: chmod while the run reads a file does not fail it.
    ino: int = dataclasses.field(default=0, compare=False)
    ctime_ns: int = dataclasses.field(default=0, compare=False)


class InputSnapshot:
    """One input, observed from the start of the run to the end of its reading.

    Made at the start of a run (it stats the files then); ``update`` takes the raw
    bytes a reader reads, in file order; ``finish`` hashes whatever the reader left
    unread and raises ``InputError`` (``input-changed``) if a file changed.

    >>> InputSnapshot(InputSource("user/data", "hub", local=False)).recorded()
    {'path': 'user/data', 'kind': 'hub'}
    """

    def __init__(self, source: InputSource) -> None:
        self.source = source
        # local files and URL objects are observed; hub datasets are not (their bytes are not in reach)
        self._tracked = source.local or is_url(source.path)
        self.files = input_files(source)
        self.before: dict[str, FileState] = {}
        self.unreadable: str | None = None
        self._digest = xxhash.xxh3_128()
        self._size = 0
        for path in self.files:
            try:
                self.before[path] = _state(path)
            except OSError as exc:
                self.unreadable = exc.strerror or str(exc)

    def recorded(self) -> dict[str, Any]:
        """The input as the run description records it before reading: size and modification time.

        ``--resume`` compares these (a file of the same path, size and time is taken
        as the same file; its hash is checked against an earlier finished run's once read).
        """
        entry: dict[str, Any] = {"path": self.source.path, "kind": self.source.kind}
        if not self._tracked:
            return entry
        if self.unreadable is not None:
            return {**entry, "unreadable": self.unreadable}
        states = self.before.values()
        return {**entry, "size": sum(s.size for s in states), "mtime_ns": max((s.mtime_ns for s in states), default=0)}

    def seen(self) -> dict[str, Any]:
        """The input as a shard record saw it (``ownership.inputs_seen``): ``recorded`` and, for local files,
        each file's inode number and inode change time, in ``files`` order; for URL objects, each one's ETag
        (a store's modification time has whole seconds, S3's at least: an object rewritten to the same size
        within the second it was written would pass for unchanged).

        Not in ``recorded``, so neither ``run.json`` nor the manifest holds them
        (they differ between two copies of one corpus, and outputs stay
        identical). Whatever moves them without changing the bytes (a chmod, a
        copy restored from a backup, a corpus copied to another disk) only makes
        a resumed task redo its shards.

        >>> InputSnapshot(InputSource("user/data", "hub", local=False)).seen()
        {'path': 'user/data', 'kind': 'hub'}
        """
        entry = self.recorded()
        if "size" not in entry:  # hub datasets, unreadable inputs
            return entry
        if is_url(self.source.path):  # an object on a store (``local`` is False only for hub datasets)
            versions = [state.version for state in self.before.values()]
            return {**entry, "versions": versions} if any(versions) else entry
        return {**entry, "inodes": [[state.ino, state.ctime_ns] for state in self.before.values()]}

    def result(self) -> dict[str, Any]:
        """The input as the manifest records it: the size and xxh3-128 of the bytes read (after ``finish``)."""
        entry: dict[str, Any] = {"path": self.source.path, "kind": self.source.kind}
        if not self._tracked:
            return entry
        if self.unreadable is not None:
            return {**entry, "unreadable": self.unreadable}
        return {**entry, "size": self._size, "xxh3_128": self._digest.hexdigest()}

    def update(self, data: bytes | memoryview) -> None:
        """Raw bytes of the (single) file, as the reader reads them, in order."""
        self._digest.update(data)
        self._size += len(data) if isinstance(data, bytes) else data.nbytes

    def hash_whole(self) -> None:
        """Hash every file now, in order (Parquet files and columnar inputs at a URL, which pyarrow reads out of order)."""
        for path in self.files:
            self._hash_from(path, 0)

    def in_order(self) -> InOrderFile | None:
        """The single local file open for pyarrow, hashed in order as pyarrow reads it (``InOrderFile``, Parquet).

        None when there is nothing to hash or no such file: an untracked or unreadable input, or a URL's
        object, which is hashed here by a read of its own (``hash_whole``) for pyarrow to read after."""
        if not self._tracked or self.unreadable is not None:
            return None
        if not self.source.local or len(self.files) != 1:
            self.hash_whole()
            return None
        try:
            return InOrderFile(self.files[0], self)
        except OSError as exc:  # the reader reports it as a bad record; the manifest notes it here
            self.unreadable = exc.strerror or str(exc)
            return None

    def map_whole(self) -> dict[str, Any]:
        """Memory-map every local file, hash the mappings in order, and return them (``pa.Buffer``) by
        ``os.path.normpath`` of their path, for the columnar readers to parse instead of the files.

        The order is the folder order of ``input_files``, which the recorded hash has always followed (a
        ``save_to_disk`` folder is parsed in ``state.json`` order, hashed in this one). A URL's object is
        hashed by a read of its own (``hash_whole``) and {} returned: the reader then opens it itself.

        >>> InputSnapshot(InputSource("user/data", "hub", local=False)).map_whole()
        {}
        """
        if not self._tracked or self.unreadable is not None:
            return {}
        if not self.source.local:
            self.hash_whole()
            return {}
        import pyarrow as pa  # here: the text readers' runs need no pyarrow for their snapshots

        mapped: dict[str, Any] = {}
        for path in self.files:
            try:
                with pa.memory_map(path) as source:
                    buffer = source.read_buffer()  # the buffer keeps the mapping alive after the file is closed
            except OSError as exc:  # the reader reports it as a bad record; the manifest notes it here
                self.unreadable = exc.strerror or str(exc)
                return {}
            view = memoryview(buffer)
            for start in range(0, len(view), _BLOCK):
                self.update(view[start : start + _BLOCK])
            mapped[os.path.normpath(path)] = buffer
        return mapped

    def finish(self) -> None:
        """Hash what the reader left unread (after an error, or a sniff that stopped early); check nothing changed."""
        if not self._tracked or self.unreadable is not None:
            return
        if len(self.files) == 1 and self._size < self.before[self.files[0]].size:
            self._hash_from(self.files[0], self._size)
        self.check_unchanged()

    def check_unchanged(self) -> None:
        """Raise ``InputError`` (``input-changed``) if a file's size or modification time is not what it was."""
        if not self._tracked or self.unreadable is not None:
            return
        for path, before in self.before.items():
            try:
                now: FileState | None = _state(path)
            except OSError:
                now = None
            if now != before:
                raise changed_error(path, before, now)
        if self.files and self._size != sum(s.size for s in self.before.values()):
            raise changed_error(self.files[0] if len(self.files) == 1 else self.source.path, None, None)

    def _hash_from(self, path: str, offset: int) -> None:
        try:
            with open_binary(path, whole=True) as handle:  # a local file or a URL's object, read to its end
                handle.seek(offset)
                while block := handle.read(_BLOCK):
                    self.update(block)
        except OSError as exc:  # the reader reports it as a bad record; the manifest notes it here
            self.unreadable = exc.strerror or str(exc)


class InOrderFile:
    """A local Parquet file that pyarrow reads out of order, hashed in order by the same reads.

    pyarrow reads the footer first, then the column chunks it needs, row group by
    row group, at rising offsets. A read from at or beyond where the hash stands
    reads on from there: the bytes pyarrow skips (other columns) are hashed and
    dropped, its own are hashed and returned, so every byte before the footer is
    read once and the data pyarrow parses is the data hashed. The footer (the last
    8 bytes give its length) and anything pyarrow reads a second time are read
    again with ``pread``; the snapshot's ``finish`` hashes the footer, in order,
    and its size and time check covers those re-reads. No memory map: a file cut
    short while it is read gives a short read and a one-line error, not SIGBUS.
    """

    def __init__(self, path: str, snapshot: InputSnapshot) -> None:
        self._raw = open(path, "rb")  # noqa: SIM115 - closed by close(), as pyarrow's PythonFile calls it
        self._fd = self._raw.fileno()
        self._snapshot = snapshot
        self._size = os.fstat(self._fd).st_size
        self._position = 0
        tail = os.pread(self._fd, 8, max(0, self._size - 8))  # Parquet ends with the footer's length and b"PAR1"
        footer = int.from_bytes(tail[:4], "little") + 8 if len(tail) == 8 and tail[4:] == b"PAR1" else 0
        self._footer = max(0, self._size - footer)

    def read(self, size: int | None = -1) -> bytes:
        start = self._position
        end = self._size if size is None or size < 0 else min(self._size, start + size)
        hashed = self._snapshot._size
        if hashed <= start and end <= self._footer:
            self._raw.seek(hashed)
            skip = start - hashed
            while skip > 0 and (block := self._raw.read(min(_BLOCK, skip))):
                self._snapshot.update(block)
                skip -= len(block)
            data = self._raw.read(end - start) if skip == 0 else b""
            self._snapshot.update(data)
        else:  # the footer, or a range pyarrow reads again
            data = os.pread(self._fd, end - start, start)
        self._position = start + len(data)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._size}[whence]
        self._position = base + offset
        return self._position

    def tell(self) -> int:
        return self._position

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self._raw.close()

    @property
    def closed(self) -> bool:
        return self._raw.closed


def input_files(source: InputSource) -> list[str]:
    """The regular files an input consists of, in hashing order (a folder: all its files, sorted; a URL: its object)."""
    if is_url(source.path):
        return [source.path]
    if not source.local:
        return []
    if os.path.isdir(source.path):
        found: list[str] = []
        for folder, _, names in os.walk(source.path):
            found.extend(os.path.join(folder, name) for name in names)
        # the order ``sorted(Path.rglob("*"))`` gave, which earlier manifests' folder hashes follow
        return sorted((p for p in found if os.path.isfile(p)), key=lambda p: os.path.relpath(p, source.path).split(os.sep))
    return [source.path]


def changed_error(path: str, before: FileState | None, now: FileState | None) -> InputError:
    """The one line for an input that changed while the run read it."""
    if before is None:
        what = "the bytes read differ in number from its size at the start of the run"
    elif now is None:
        what = "it was removed or became unreadable"
    elif now.size != before.size:
        what = f"{before.size:,} bytes at the start of the run, {now.size:,} now"
    else:
        what = "same size, but modified after the start of the run"
    return InputError(path, f"the file changed while mask read it ({what}), so the output would not match it", _FIX, "input-changed")


def _state(path: str) -> FileState:
    if is_url(path):
        return FileState(*object_state(path))
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):
        raise OSError(0, "not a regular file")
    return FileState(info.st_size, info.st_mtime_ns, ino=info.st_ino, ctime_ns=info.st_ctime_ns)
