"""Commits finished shards in order: each shard made visible, then its completion record written.

On a local disk a commit is an fsync and a rename, done in place. On an
object store it is the shard's upload (a PUT, or the last part and
``CompleteMultipartUpload``), which the run would otherwise wait for with its
workers idle once they have finished the batches they hold. There commits run
in background threads while the main process builds the next shard, up to
``IN_FLIGHT`` shards at once. Why more than one: a store's PUT of a 33 MB
shard takes about as long as the run takes to build the next shard (0.27 s on
the bench's moto server when nothing else runs), so with one commit at a time
the main process waited for the one before at almost every shard (0.05 to
0.25 s each, seen in ``bench/remote_outputs.py``'s x10 run). Two uploads now
overlap. Their records are still written in shard order, each only after its
own shard's upload completed *and* the record before it was written
(``_commit`` waits for the commit submitted before it), so the records on the
store always name a prefix of the shards, as ``--resume`` and ``finalize``
expect; the protocol is unchanged (``format.folder``). Memory grows by at most
``IN_FLIGHT`` shards' unsent bytes: a shard smaller than one part is held whole
until its PUT, a larger one the parts being sent plus two (on S3 six of 16 MiB: ``format.upload``).

Failures and interrupts: an upload that fails after the provider's retries
aborts itself (``UploadFile.commit``), and its error is raised in the main
process at the next ``commit`` or at ``wait``; the shard after a failed one
writes no record (its upload, if it completed, is a shard without a record,
which ``--resume`` deletes; the run's clean-up deletes temporaries only). ``abandon`` (an error or an
interrupt in the main process) first stops every commit in flight from writing
a record and cancels its upload (``UploadFile.cancel``: aborted now, so the
commit no longer waits for parts on their way to a store that may have
stalled: Ctrl-C ends the run in moments, not after the store's timeouts), then
waits for the commit threads to end before the run cleans up and lets go of
its lock, so nothing is written into the folder once the run has let go of it.
What it still waits for is a request a commit thread makes itself (a shard's
one PUT, a ``CompleteMultipartUpload``), which a store cannot take back: it
ends as the store answers or the client's timeout says. A SIGKILL ends the
threads with the process: each shard's upload is then either complete without
its record (``--resume`` deletes it) or invisible, as before.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from goldfish_prep.format.folder import OutputFolder
from goldfish_prep.pipeline._shard import ShardBuilder

#: shards being committed at once on a store, each on a thread of its own (a local disk commits in place)
IN_FLIGHT = 2


class ShardCommits:
    """Commit shards and write their records, in order; in the background where the folder asks for it."""

    def __init__(self, output: OutputFolder) -> None:
        self._output = output
        background = output.commits_in_background
        self._executor = ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="goldfish-prep-upload") if background else None
        self._pending: deque[tuple[Future[None], ShardBuilder]] = deque()  # oldest first
        self._abandoned = False

    def commit(self, builder: ShardBuilder) -> None:
        """Finish ``builder``'s shard, then commit it and write its record (in the background on a store)."""
        while len(self._pending) >= IN_FLIGHT:  # a failed commit is raised here
            self._pending[0][0].result()
            self._pending.popleft()
        record = builder.finish()
        if self._executor is None:
            builder.commit()
            self._output.write_shard_record(record)
        else:
            before = self._pending[-1][0] if self._pending else None
            self._pending.append((self._executor.submit(self._commit, builder, record, before), builder))

    def _commit(self, builder: ShardBuilder, record: dict[str, Any], before: Future[None] | None) -> None:
        builder.commit()  # the shard is whole on the store before its record exists
        if before is not None:  # submitted, so started, before this one: no thread here waits on a queued task
            before.result()  # its failure is this shard's too: no record may follow a missing one
        if self._abandoned:  # the run is ending: this shard stays without a record, which --resume deletes
            return
        self._output.write_shard_record(record)

    def wait(self) -> None:
        """Wait for every commit in flight; the first failure is raised (it stays pending until it has ended)."""
        while self._pending:
            self._pending[0][0].result()
            self._pending.popleft()

    def abandon(self) -> None:
        """After an error or an interrupt: no record from now on, every upload in flight cancelled, then wait for the
        commit threads to end (their errors are not news) and stop."""
        self._abandoned = True  # first: a commit that ends after the cancel below writes no record
        pending, self._pending = self._pending, deque()
        for _, builder in pending:
            builder.cancel()
        for future, _ in pending:
            try:
                future.result()
            except Exception:  # a failed or cancelled upload aborted itself; the error being handled is the one to report
                pass
        self.close()

    def close(self) -> None:
        """Stop the threads; ``shutdown`` waits for commits still running (ones an interrupt left unawaited too)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
