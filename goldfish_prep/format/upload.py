"""A shard being uploaded to an object store: its parts are sent by threads while the next ones are built.

A store file from fsspec (s3fs, gcsfs, adlfs) sends a part from inside the
``write`` that fills its buffer, and the caller waits for the request. Written
from the main process, that is every part of every shard but the last, with the
workers idle once they have finished the batches they hold. ``UploadFile``
writes behind instead: the main process hashes and copies each chunk the Arrow
writer hands it into a buffer, and once the buffer holds a part
(``part_size_of``) hands it over to a sending thread. Other drivers' store
files take parts in order, so one thread writes them there. On S3 the store
file is ``s3_upload.S3Parts``, which takes numbered parts in any order, each
sent as it is with its own SHA-256: ``S3_PARTS_IN_FLIGHT`` threads send parts
of ``S3_PART_SIZE`` at once, so a store far away costs a round trip per part
once, not once per part in turn. At most one part waits for the threads while
they send others, so memory is bounded by the parts being sent plus two (about
three parts elsewhere, six of 16 MiB on S3), whatever the shard's size; threads
that fall behind make the next hand-over wait (backpressure), never the buffer
grow.

Visibility is unchanged: the object appears only when ``commit`` closes the
store file (the last part, then ``CompleteMultipartUpload`` with the parts in
order, or one PUT for a shard smaller than a part, on S3 checked by the sha256
its record names); an upload that failed or was abandoned is aborted (at once:
``abort`` does not wait for a part's request, so Ctrl-C ends a run promptly
however slow the store), and one cut off by SIGKILL stays an invisible
incomplete upload (``url_folder``'s docstring: the commit protocol). The
checksums are computed in the caller's thread, from the bytes in the order
they were written, so the record (``ShardWriter.finish``) does not wait for
any upload.

A failed part (after the provider's retries) is kept by the thread and raised,
as the one-line ``StoreError``, at the caller's next ``write`` or at ``commit``.
"""

from __future__ import annotations

import contextlib
import io
import queue
import threading
from typing import Any

from goldfish_prep.errors import GoldfishError
from goldfish_prep.format.commit import Checksums
from goldfish_prep.format.s3_upload import S3_PART_SIZE, S3_PARTS_IN_FLIGHT, S3Parts, is_s3, put_whole
from goldfish_prep.format.store_errors import StoreError, store_failure, translated

#: bytes per part for a driver that names no block size of its own
PART_SIZE = 32 << 20
_END = None
#: seconds between looks at ``cancel`` while ``commit`` waits for the sending threads or the queue
_POLL = 0.05


def part_size_of(fs: Any) -> int:
    """The driver's own part size: its ``default_block_size`` (gcsfs: 5 MiB; what ``--storage-options`` set, if they
    did), else its ``blocksize`` (adlfs: 4 MiB), else ``PART_SIZE``; on S3, ``S3_PART_SIZE`` unless the options set
    one (s3fs's own 50 MiB, sent one part at a time, suits its file; ``s3_upload`` sends several at once)."""
    if is_s3(fs) and getattr(fs, "default_block_size", None) == getattr(type(fs), "default_block_size", None):
        return S3_PART_SIZE
    for name in ("default_block_size", "blocksize"):
        size = getattr(fs, name, None)
        if isinstance(size, int) and size > 0:
            return size
    return PART_SIZE


class UploadFile:
    """A file being uploaded, hashed on the way; it appears on the store only when ``commit`` closes it."""

    def __init__(self, fs: Any, path: str, where: str, part_size: int = PART_SIZE) -> None:
        self._fs = fs
        self._path = path
        self.temporary = where  # object stores write to the final name: nothing is visible before the commit
        self._part_size = part_size
        self._raw: Any = None  # the store file, opened with the first part: a shard of one part is one PUT
        self._hashes = Checksums()
        self._buffer = io.BytesIO()  # its getvalue() hands over the bytes without a copy
        self._parts: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize=1)
        self._on_s3 = is_s3(fs)  # S3 takes parts by number, in any order: several may be sent at once
        self._senders: list[threading.Thread] = []
        self._next_part = 1
        self._failed: GoldfishError | None = None
        self._abandoned = False
        self._cancelled = False  # by another thread (``cancel``): ``commit`` stops waiting and fails
        self._closed = False

    def write(self, data: bytes | memoryview) -> int:
        if self._failed is not None:  # a part failed: the Arrow stream's later writes must not reach the store
            raise self._failed
        self._hashes.update(data)
        self._buffer.write(data)  # the one copy: the caller may reuse its buffer once this returns
        if self._buffer.tell() >= self._part_size:
            self._hand_over()
        return len(data)

    def _hand_over(self) -> None:
        """Give the buffered part to the sending threads (started on the first part); waits while one is queued."""
        part, self._buffer = self._buffer.getvalue(), io.BytesIO()
        if not self._senders:
            if self._raw is None:
                with translated(self.temporary):
                    self._raw = (
                        S3Parts(self._fs, self._path) if self._on_s3 else self._fs.open(self._path, "wb", block_size=self._part_size)
                    )
            for _ in range(S3_PARTS_IN_FLIGHT if self._on_s3 else 1):
                sender = threading.Thread(target=self._send, name="goldfish-prep-parts", daemon=True)
                sender.start()
                self._senders.append(sender)
        self._put((self._next_part, part))
        self._next_part += 1

    def _put(self, item: tuple[int, bytes] | None) -> None:
        """Queue a part or the end, waiting while a part is queued, until ``cancel`` (then the item is dropped)."""
        while not self._cancelled:
            with contextlib.suppress(queue.Full):  # a part is queued while every thread sends one
                self._parts.put(item, timeout=_POLL)
                return

    def _send(self) -> None:
        """A sending thread: send each part it takes (a store file uploads a full part from inside ``write``).

        The end (``_END``) is put back for the next thread before this one ends, so one end ends them all."""
        while (item := self._parts.get()) is not _END:
            if self._failed is not None or self._abandoned or self._cancelled:
                continue  # keep taking parts, so that the caller never waits on a queue nobody empties
            number, part = item
            try:
                with translated(self.temporary):
                    if self._on_s3:
                        self._raw.write_part(number, part)
                    else:
                        self._raw.write(part)
            except GoldfishError as exc:
                self._failed = exc
            except BaseException as exc:  # kept, and raised in the caller's thread as one line
                self._failed = store_failure(self.temporary, exc)
            if (self._abandoned or self._cancelled) and _can_discard(self._raw):  # aborted while this part was on its way: drop what
                self._discard()  # its requests made meanwhile (``abort``)
        with contextlib.suppress(queue.Full):  # else an end is there already (``_stop_sending`` after an interrupted
            self._parts.put_nowait(_END)  # ``_sent``); the caller puts no part after the end

    def _sent(self) -> None:
        """Wait until every handed-over part has been sent, or until ``cancel`` aborted the upload: its parts no
        longer matter then, and the threads sending them end on their own (``abort`` puts the end for them)."""
        if not self._senders:
            return
        self._put(_END)
        for sender in self._senders:
            while sender.is_alive() and not self._cancelled:
                sender.join(_POLL)
        if self._cancelled:
            return
        self._senders = []
        with contextlib.suppress(queue.Empty):
            self._parts.get_nowait()  # the end the last thread put back

    def flush(self) -> None:
        """Buffered here and by the upload; the bytes are sent by parts, and the rest on ``commit``."""

    def close(self) -> None:
        """Closing the Arrow sink must not complete the upload: ``commit`` does."""

    @property
    def closed(self) -> bool:
        return self._closed

    def commit(self) -> str:
        """Complete the upload: the object appears whole now (the last part, then ``CompleteMultipartUpload``).

        A completion the store refuses aborts the upload, so its parts are not left behind."""
        try:
            if self._raw is not None and self._buffer.tell():
                self._hand_over()  # the last part, sent beside those still on their way (on S3), not after them
            self._sent()
            if self._failed is not None:
                raise self._failed
            self._refuse_if_cancelled()
            with translated(self.temporary):
                if self._raw is None:  # smaller than a part: one PUT, without a store file's copies
                    rest = self._buffer.getvalue()
                    if self._on_s3:  # with the sha256 computed for the record, checked by the store
                        put_whole(self._fs, self._path, rest, bytes.fromhex(self.checksums()["sha256"]))
                    else:
                        self._fs.pipe_file(self._path, rest)
                else:
                    self._raw.close()
            # a store file that ``cancel`` discarded closes without a word (fsspec's files are marked closed): the
            # object is not there, or is whole but its run was abandoned; either way no record may follow it
            self._refuse_if_cancelled()
            self._buffer = io.BytesIO()
            self._closed = True
        except BaseException:
            self.abort()
            raise
        return self.checksums()["sha256"]

    def _refuse_if_cancelled(self) -> None:
        if self._cancelled:
            raise StoreError(f"{self.temporary}: the upload was abandoned (the run was interrupted or failed)")

    def cancel(self) -> None:
        """Abandon the upload from another thread while ``commit`` may wait on it (an interrupt or an error in the
        main process while the shard uploads in the background, ``pipeline._commits``).

        The upload is aborted now, so the parts on their way no longer matter:
        ``commit`` stops waiting for them and fails, and the cleaning up
        (``abort``) stays with the thread that commits. A request ``commit``
        makes itself (the shard's one PUT, or ``CompleteMultipartUpload``) ends
        as the store answers it; the commit fails after it, so no record follows.
        A store file that cannot drop an upload (fsspec's ``memory://``) never
        waits on a store: there is nothing to cancel, and the commit runs its course."""
        if self._closed or (self._raw is not None and not _can_discard(self._raw)):
            return
        self._cancelled = True  # before the discard: a commit that sees the discard's effect sees this too
        if self._raw is not None:
            self._discard()

    def checksums(self) -> dict[str, str]:
        """Every checksum of ``commit.CHECKSUMS`` of the bytes written so far."""
        return self._hashes.hexdigests()

    def abort(self) -> None:
        """Abort the upload (its parts are dropped, nothing appears); never raises over the error being handled.

        It does not wait for the part being sent: Ctrl-C while a part's request
        is slow (a loaded store, a long way) must end the run now, not after
        the request, and the parts queued behind it are dropped unsent. The
        upload is aborted at once, so the request in flight fails against it;
        what that request made meanwhile (the upload itself, if it was the
        first part's ``CreateMultipartUpload``; on S3, a part that lands after
        the abort, which AWS allows) the sending thread aborts in turn once it
        ends, if the process still runs; else it stays an invisible incomplete
        upload, as after SIGKILL."""
        if self._closed:  # committed, or aborted already (``commit`` aborts what failed; its caller may abort again)
            return
        self._abandoned = True
        self._buffer = io.BytesIO()
        self._closed = True
        if self._raw is None:  # nothing was sent
            return
        if _can_discard(self._raw):
            self._stop_sending()
            self._discard()
            return
        # a file that can only be closed (fsspec's memory://): closing completes it, so only once the thread has
        # ended, and the file is removed then
        with contextlib.suppress(BaseException):  # an interrupt while waiting: the daemon thread ends with the process
            self._sent()
        with contextlib.suppress(Exception):
            self._raw.close()
            self._fs.rm_file(self._path)

    def _stop_sending(self) -> None:
        """Let the sending threads end after the parts they are sending, without waiting for them: the part queued
        behind them is taken back (only this thread puts parts, so the queue then has room for the end)."""
        if not self._senders:
            return
        with contextlib.suppress(queue.Empty):
            while True:
                self._parts.get_nowait()
        with contextlib.suppress(queue.Full):  # ``commit``, stopped by ``cancel``, may have put its end meanwhile
            self._parts.put_nowait(_END)
        self._senders = []

    def _discard(self) -> None:
        """Drop the upload the store file began (s3fs: ``AbortMultipartUpload``; gcsfs: the resumable upload
        deleted; adlfs: nothing, uncommitted blocks expire); both threads may call it, and it never raises: a store
        that fails now leaves an invisible incomplete upload."""
        with contextlib.suppress(Exception):
            self._raw.discard()
            # fsspec's __del__ closes a file not closed yet, which would try to send what is left: never
            # (s3fs's discard drops the buffer, so that close fails; a shard's upload is abandoned here for good)
            self._raw.closed = True


def _can_discard(raw: Any) -> bool:
    """Whether a store file can drop its upload unfinished (fsspec's buffered files can; a memory:// file cannot)."""
    return callable(getattr(raw, "discard", None))


__all__ = ["PART_SIZE", "UploadFile", "part_size_of"]
