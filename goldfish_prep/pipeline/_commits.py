"""Commits finished shards in order: each shard made visible, then its completion record written.

On a local disk a commit is an fsync and a rename, done in place. On an
object store it is the shard's upload (a PUT, or the last part and
``CompleteMultipartUpload``), which the run would otherwise wait for with its
workers idle once they have finished the batches they hold. There the commit
runs in one background thread while the main process builds the next shard:
at most one shard is being committed at a time (``commit`` waits for the one
before), so memory grows by at most one shard's unsent bytes (at most one part,
s3fs: 50 MiB). The protocol is unchanged (``format.folder``): the thread PUTs
a shard's record only after the shard's upload completed, and records are
written in shard order.

Failures and interrupts: an upload that fails after the provider's retries
aborts itself (``UploadFile.commit``), and its error is raised in the main
process at the next ``commit`` or at ``wait``. ``abandon`` (an error or an
interrupt in the main process) waits for the commit in flight to end before
the run cleans up and lets go of its lock, so nothing is written into the
folder once the run has let go of it. A SIGKILL ends the thread with the
process: the shard's upload is then either complete without its record
(``--resume`` deletes it) or invisible, as before.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from goldfish_prep.format.folder import OutputFolder
from goldfish_prep.pipeline._shard import ShardBuilder


class ShardCommits:
    """Commit shards and write their records, in order; in the background where the folder asks for it."""

    def __init__(self, output: OutputFolder) -> None:
        self._output = output
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="goldfish-prep-upload") if output.commits_in_background else None
        self._pending: Future[None] | None = None

    def commit(self, builder: ShardBuilder) -> None:
        """Finish ``builder``'s shard, then commit it and write its record (in the background on a store)."""
        self.wait()  # one commit at a time; a failed one is raised here
        record = builder.finish()
        if self._executor is None:
            builder.commit()
            self._output.write_shard_record(record)
        else:
            self._pending = self._executor.submit(self._commit, builder, record)

    def _commit(self, builder: ShardBuilder, record: dict[str, Any]) -> None:
        builder.commit()  # the shard is whole on the store before its record exists
        self._output.write_shard_record(record)

    def wait(self) -> None:
        """Wait for the commit in flight and raise its error, if it failed (it stays pending until it has ended)."""
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    def abandon(self) -> None:
        """After an error or an interrupt: wait for the commit in flight to end (its error is not news), then stop."""
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                pending.result()
            except Exception:  # a failed upload aborted itself; the error being handled is the one to report
                pass
        self.close()

    def close(self) -> None:
        """Stop the thread; ``shutdown`` waits for a commit still running (one an interrupt left unawaited too)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
