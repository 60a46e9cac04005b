"""One writer per output folder: lock files that name their holder, on a local or mounted POSIX disk.

Two runs writing one folder interleave shards of different settings into an
output that looks complete, so a writer holds the folder for its whole run and
a second one refuses at once, naming the holder (git's ``index.lock`` does the
same). The locks live in the progress folder (``.goldfish/``):

* ``writer.lock``: a plain ``mask`` run and ``finalize`` hold it exclusively;
  each ``--num-tasks`` task and a Ray driver hold it shared, so tasks run side by
  side while a plain run or ``finalize`` refuses until every task has ended.
* ``task-IIIII-of-NNNNN.lock``: task I of N holds its own exclusively (a second
  copy of the same task refuses); ``ray-driver.lock``: a Ray driver's.

Each lock is a ``fcntl.flock`` on the file, taken without waiting. The kernel
drops a flock when its holder dies, SIGKILL included, so a dead holder never
blocks anyone. An exclusive holder writes who it is into the file (host, pid,
process start time, command line) and empties it when it lets go: a file still
naming someone when the lock is free was left by a process that died, and the
new holder says it took it over. Where the file system has no flock (Lustre
mounted ``noflock``), the lock falls back to the file's content: a holder on
this host whose pid is gone, or whose pid now belongs to a process started at
another time (pid reuse), is dead and taken over; a holder on another host is
trusted until the user removes the file. docs/format.md states the guarantees
per file system.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path

from goldfish_prep.errors import OutputError
from goldfish_prep.format.names import LOCK_SUFFIX, RAY_DRIVER_LOCK, WRITER_LOCK, is_lock_name, task_lock_name

#: errors that mean "this file system offers no flock", not "someone holds it"
_NO_FLOCK = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL})

try:
    import fcntl
except ImportError:  # Windows: no flock; the content-based lock below is used
    fcntl = None  # type: ignore[assignment]


def process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch, to a clock tick), or None when it does not exist.

    Linux: field 22 of ``/proc/PID/stat`` (ticks since boot) plus the boot time;
    a pid reused by a later process gives another start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(line for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
    except (OSError, StopIteration):
        return _start_elsewhere(pid)
    ticks = int(stat.rsplit(")", 1)[1].split()[19])
    return int(boot.split()[1]) + ticks / os.sysconf("SC_CLK_TCK")


def _start_elsewhere(pid: int) -> float | None:
    """Without /proc: whether the pid exists (its start time is unknown, so 0.0 for any live one)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except OSError:
        return 0.0  # it exists, owned by someone else
    return 0.0


@dataclasses.dataclass(frozen=True)
class Holder:
    """Who holds a lock: written into the lock file as JSON."""

    host: str
    pid: int
    started: float
    command: str

    @classmethod
    def me(cls) -> Holder:
        pid = os.getpid()
        started = process_start(pid) or time.time()
        return cls(socket.gethostname(), pid, started, _command())

    @classmethod
    def parse(cls, data: bytes) -> Holder | None:
        try:
            fields = json.loads(data.decode("utf-8"))
            return cls(str(fields["host"]), int(fields["pid"]), float(fields["started"]), str(fields["command"]))
        except (ValueError, KeyError, TypeError):
            return None

    def to_bytes(self) -> bytes:
        return (json.dumps(dataclasses.asdict(self), sort_keys=True) + "\n").encode("utf-8")

    def describe(self) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        return f"pid {self.pid} on {self.host}, started {started}: {self.command}"

    def is_dead(self) -> bool:
        """True only when this host can tell: the pid is gone, or was reused by a process started at another time."""
        if self.host != socket.gethostname():
            return False
        started = process_start(self.pid)
        if started is None:
            return True
        return started != 0.0 and abs(started - self.started) > 1.0


def _command() -> str:
    """The command line as the user typed it: ``goldfish-prep ARGS`` for the CLI (also run as ``python -m``),
    with every secret it may carry (``--storage-options``, a signed URL's query) replaced (``redact.scrub``)."""
    from goldfish_prep.readers.redact import scrub  # stdlib only; imported here to keep this module's imports flat

    argv = sys.argv or ["python"]
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if Path(argv[0]).name == "goldfish-prep" or (spec is not None and spec.name.startswith("goldfish_prep_cli")):
        return scrub(shlex.join(["goldfish-prep", *argv[1:]]))
    return scrub(shlex.join(argv))


class LockHeldError(OutputError):
    """Another process holds the lock file ``lock``; ``OutputFolder`` words the one-line refusal."""

    def __init__(self, lock: str, holder: Holder | None) -> None:
        self.lock = lock
        self.holder = holder
        super().__init__(f"{lock} is held" + (f" by {holder.describe()}" if holder else ""))


class FileLock:
    """A flock on one lock file, exclusive or shared, taken without waiting (see the module docstring)."""

    def __init__(self, path: Path, shared: bool = False) -> None:
        self.path = path
        self.shared = shared
        self._fd: int | None = None
        self._by_content = False
        #: the holder a dead process left in the file, when this lock took it over
        self.taken_over: Holder | None = None

    def acquire(self) -> None:
        """Take the lock or raise ``LockHeldError``; an ``OSError`` when the file cannot be created."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:
            os.close(fd)
            return self._acquire_by_content()
        mode = (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        for attempt in range(40):
            try:
                fcntl.flock(fd, mode)
                break
            except BlockingIOError:
                holder = read_holder(self.path)
                # no live holder named: a reader's shared check for an instant, or a writer taking the lock
                # over that has not written itself in yet; look again before refusing
                if (holder is not None and not holder.is_dead()) or attempt == 39:
                    os.close(fd)
                    raise LockHeldError(str(self.path), holder) from None
                time.sleep(0.005)  # held shared for an instant (a reader's check, a task starting): look again
            except OSError as exc:
                os.close(fd)
                if exc.errno in _NO_FLOCK:
                    return self._acquire_by_content()
                raise
        self._fd = fd
        if not self.shared:
            self.taken_over = Holder.parse(os.pread(fd, 4096, 0))
            _write_holder(fd)

    def _acquire_by_content(self) -> None:
        """No flock: the file's content is the lock (an exclusive holder only; shared holders hold nothing)."""
        self._by_content = True
        holder = read_holder(self.path)
        if holder is not None and not holder.is_dead() and holder.pid != os.getpid():
            raise LockHeldError(str(self.path), holder)
        if self.shared:
            return
        self.taken_over = holder
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _write_holder(fd)
        finally:
            os.close(fd)

    def release(self) -> None:
        """Empty the file (an exclusive holder) and let go; the file stays, so no one locks a file being deleted."""
        if self._by_content and not self.shared:
            try:
                os.truncate(self.path, 0)
            except OSError:
                pass
        if self._fd is None:
            return
        try:
            if not self.shared:
                os.ftruncate(self._fd, 0)
        except OSError:
            pass  # a read-only remount after the run started: the lock is let go all the same
        finally:
            if fcntl is not None:
                # explicitly: a process forked while the lock was held would keep it open past close
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _write_holder(fd: int) -> None:
    data = Holder.me().to_bytes()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)


def read_holder(path: Path) -> Holder | None:
    try:
        return Holder.parse(path.read_bytes())
    except OSError:
        return None


def held_by(path: Path) -> Holder | None:
    """The holder of the lock file ``path`` while a live process holds it exclusively; None when it is free.

    Used by readers: it takes a shared flock for an instant and lets go at once.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return None
            except BlockingIOError:
                return read_holder(path) or Holder("?", 0, 0.0, "unknown")
            except OSError:
                pass  # no flock here: judge by the content
        holder = Holder.parse(os.pread(fd, 4096, 0))
        return None if holder is None or holder.is_dead() else holder
    finally:
        os.close(fd)


def holder_line(folder: str, lock: str, holder: Holder | None, what: str = "run") -> str:
    """The one-line refusal of a second writer."""
    who = f" ({holder.describe()})" if holder is not None else ""
    return (
        f"output folder {folder} is being written by another {what}{who}; wait for it to end "
        f"(if it died on another machine, or this file system has no flock, remove {lock} and rerun)"
    )


def describe_takeover(lock: str, holder: Holder) -> str:
    return f"note: took over {lock}, left by {holder.describe()}, which ended without releasing it"


__all__ = [
    "LOCK_SUFFIX",
    "RAY_DRIVER_LOCK",
    "WRITER_LOCK",
    "FileLock",
    "Holder",
    "LockHeldError",
    "describe_takeover",
    "held_by",
    "holder_line",
    "is_lock_name",
    "process_start",
    "read_holder",
    "task_lock_name",
]
