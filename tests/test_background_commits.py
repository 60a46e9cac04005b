"""``pipeline._commits.ShardCommits`` on a URL folder: two shards' uploads run while the next shard is built, and the
commit protocol holds (a record only once its shard is whole, records in order even when a later upload completes
first, a failed upload raised with no record after it, nothing written after an abandon, which cancels the uploads in flight). The folder is a real ``UrlFolder`` on fsspec's in-memory file system; the shards are
stand-ins whose commit the test holds back, so the order of events is forced rather than timed.
``tests/test_url_outputs.py`` runs whole ``mask -o s3://`` runs through the same code against a real S3 server."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, cast

import pytest

from goldfish_prep.format.url_folder import UrlFolder
from goldfish_prep.pipeline._commits import IN_FLIGHT, ShardCommits
from goldfish_prep.pipeline._shard import ShardBuilder


class HeldShard:
    """Writes a tiny shard object when committed, once the test lets it (``release``). ``cancel`` (an upload aborted
    from the main thread) lets it go at once and makes it fail, as ``UploadFile.cancel`` does to parts on their way;
    ``cancellable=False`` is a commit in a request of its own (a PUT, a completion), which a cancel cannot stop."""

    def __init__(self, folder: UrlFolder, index: int, fail: bool = False, cancellable: bool = True) -> None:
        self.folder, self.index, self.fail, self.cancellable = folder, index, fail, cancellable
        self.started, self.released = threading.Event(), threading.Event()
        self.finished = self.cancelled = False

    def finish(self) -> dict[str, Any]:
        self.finished = True
        return {"index": self.index, "filename": f"data-{self.index:05d}.arrow"}

    def commit(self) -> None:
        self.started.set()
        assert self.released.wait(30), "the test never let the upload go"
        if self.fail:
            raise OSError(f"the upload of shard {self.index} failed")
        if self.cancelled and self.cancellable:
            raise OSError(f"the upload of shard {self.index} was abandoned")
        self.folder.write_bytes(f"data-{self.index:05d}.arrow", b"shard %d" % self.index)

    def release(self) -> None:
        self.released.set()

    def cancel(self) -> None:
        self.cancelled = True
        if self.cancellable:
            self.released.set()


def folder() -> UrlFolder:
    return UrlFolder(f"memory://background-commits/{uuid.uuid4().hex}", writing=True)


def records(out: UrlFolder) -> list[int]:
    return sorted(int(name.split("-")[1].split(".")[0]) for name in out.shard_record_names())


def test_the_next_shards_are_built_while_uploads_run_and_each_record_comes_after_its_shard() -> None:
    out = folder()
    commits = ShardCommits(out)
    assert IN_FLIGHT == 2  # what the steps below are written for
    first, second, third = HeldShard(out, 0), HeldShard(out, 1), HeldShard(out, 2)
    commits.commit(cast(ShardBuilder, first))
    commits.commit(cast(ShardBuilder, second))  # handed over while shard 0 still uploads: the two overlap
    assert first.started.wait(30) and second.started.wait(30)
    # the main process is free while both upload: nothing of either is visible yet
    assert not out.has_file("data-00000.arrow") and records(out) == []
    second.release()  # shard 1's upload completes first ...
    time.sleep(0.2)
    assert out.has_file("data-00001.arrow")
    assert records(out) == []  # ... but its record waits for shard 0's: records only ever name a prefix
    third_handed = threading.Event()

    def hand_over_third() -> None:
        commits.commit(cast(ShardBuilder, third))  # two in flight: waits for shard 0
        third_handed.set()

    threading.Thread(target=hand_over_third, daemon=True).start()
    time.sleep(0.2)
    assert not third_handed.is_set() and not third.finished
    first.release()
    assert third_handed.wait(30)
    third.release()
    commits.wait()
    commits.close()
    assert records(out) == [0, 1, 2]


def test_a_failed_upload_is_raised_and_no_record_follows_it() -> None:
    out = folder()
    commits = ShardCommits(out)
    failing, nxt, last = HeldShard(out, 0, fail=True), HeldShard(out, 1), HeldShard(out, 2)
    commits.commit(cast(ShardBuilder, failing))
    commits.commit(cast(ShardBuilder, nxt))
    nxt.release()  # shard 1 uploads whole ...
    deadline = time.monotonic() + 30
    while not out.has_file("data-00001.arrow"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    failing.release()
    with pytest.raises(OSError, match="upload of shard 0 failed"):
        commits.commit(cast(ShardBuilder, last))
    assert not last.finished  # the last shard was not handed over: the caller still holds it, and aborts it
    commits.abandon()
    # ... and gets no record after the missing one (the run's clean-up, or --resume, deletes such a shard)
    assert records(out) == [] and not out.has_file("data-00000.arrow") and out.has_file("data-00001.arrow")


def test_abandon_cancels_the_uploads_in_flight_at_once_and_writes_no_record() -> None:
    """Ctrl-C while two uploads wait on a store that has stalled: both are cancelled, so ``abandon`` returns without
    waiting for the store (the test never lets them go), and no shard or record appears."""
    out = folder()
    commits = ShardCommits(out)
    shards = [HeldShard(out, 0), HeldShard(out, 1)]
    for shard in shards:
        commits.commit(cast(ShardBuilder, shard))
    assert all(shard.started.wait(30) for shard in shards)
    started = time.monotonic()
    commits.abandon()
    assert time.monotonic() - started < 10  # HeldShard waits 30 s for a release that only the cancel gives
    assert all(shard.cancelled for shard in shards)
    assert records(out) == [] and not out.has_file("data-00000.arrow") and not out.has_file("data-00001.arrow")


def test_abandon_waits_for_a_request_it_cannot_cancel_and_no_record_follows_it() -> None:
    """A commit inside a request of its own (a completion already sent) cannot be cancelled: ``abandon`` returns only
    once it has ended, so nothing lands after the run lets go of its lock; its shard, whole, gets no record (the
    next --resume deletes it), and the record of the shard before it, whose commit had ended, stays."""
    out = folder()
    commits = ShardCommits(out)
    done, completing = HeldShard(out, 0), HeldShard(out, 1, cancellable=False)
    done.release()
    commits.commit(cast(ShardBuilder, done))
    commits.commit(cast(ShardBuilder, completing))
    assert completing.started.wait(30)
    deadline = time.monotonic() + 30
    while records(out) != [0]:  # shard 0's record is written by its thread
        assert time.monotonic() < deadline
        time.sleep(0.01)
    threading.Timer(0.3, completing.release).start()
    commits.abandon()
    assert completing.released.is_set() and completing.cancelled  # waited for, though cancelled
    assert out.has_file("data-00001.arrow") and records(out) == [0]


def test_a_local_folder_commits_in_place(tmp_path: Any) -> None:
    from goldfish_prep.format.local_folder import LocalFolder

    out = LocalFolder(tmp_path / "out")
    out.make_progress_folder()
    commits = ShardCommits(out)
    shard = HeldShard(cast(UrlFolder, out), 0)
    shard.release()
    commits.commit(cast(ShardBuilder, shard))
    assert (tmp_path / "out" / "data-00000.arrow").is_file() and out.shard_record_names() == ["shard-00000.json"]
    commits.close()
