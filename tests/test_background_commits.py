"""``pipeline._commits.ShardCommits`` on a URL folder: a shard's upload runs while the next shard is built, and the
commit protocol holds (a record only once its shard is whole, records in order, a failed upload raised, nothing
written after an abandon). The folder is a real ``UrlFolder`` on fsspec's in-memory file system; the shards are
stand-ins whose commit the test holds back, so the order of events is forced rather than timed.
``tests/test_url_outputs.py`` runs whole ``mask -o s3://`` runs through the same code against a real S3 server."""

from __future__ import annotations

import threading
import uuid
from typing import Any, cast

import pytest

from goldfish_prep.format.url_folder import UrlFolder
from goldfish_prep.pipeline._commits import ShardCommits
from goldfish_prep.pipeline._shard import ShardBuilder


class HeldShard:
    """Writes a tiny shard object when committed, once the test lets it (``release``)."""

    def __init__(self, folder: UrlFolder, index: int, fail: bool = False) -> None:
        self.folder, self.index, self.fail = folder, index, fail
        self.started, self.released = threading.Event(), threading.Event()
        self.finished = False

    def finish(self) -> dict[str, Any]:
        self.finished = True
        return {"index": self.index, "filename": f"data-{self.index:05d}.arrow"}

    def commit(self) -> None:
        self.started.set()
        assert self.released.wait(30), "the test never let the upload go"
        if self.fail:
            raise OSError(f"the upload of shard {self.index} failed")
        self.folder.write_bytes(f"data-{self.index:05d}.arrow", b"shard %d" % self.index)

    def release(self) -> None:
        self.released.set()


def folder() -> UrlFolder:
    return UrlFolder(f"memory://background-commits/{uuid.uuid4().hex}", writing=True)


def records(out: UrlFolder) -> list[int]:
    return sorted(int(name.split("-")[1].split(".")[0]) for name in out.shard_record_names())


def test_the_next_shard_is_built_while_an_upload_runs_and_its_record_comes_after_it() -> None:
    out = folder()
    commits = ShardCommits(out)
    first, second = HeldShard(out, 0), HeldShard(out, 1)
    commits.commit(cast(ShardBuilder, first))
    assert first.started.wait(30)
    # the main process is free while shard 0 uploads: it goes on (here: nothing of shard 0 is visible yet)
    assert not out.has_file("data-00000.arrow") and records(out) == []
    first.release()
    commits.commit(cast(ShardBuilder, second))  # waits for shard 0 (upload, then record) before handing over shard 1
    assert out.has_file("data-00000.arrow") and records(out) == [0]
    second.release()
    commits.wait()
    commits.close()
    assert records(out) == [0, 1]


def test_a_failed_upload_is_raised_at_the_next_shard_and_leaves_no_record() -> None:
    out = folder()
    commits = ShardCommits(out)
    failing, nxt = HeldShard(out, 0, fail=True), HeldShard(out, 1)
    commits.commit(cast(ShardBuilder, failing))
    failing.release()
    with pytest.raises(OSError, match="upload of shard 0 failed"):
        commits.commit(cast(ShardBuilder, nxt))
    assert not nxt.finished  # the next shard was not handed over: the caller still holds it, and aborts it
    commits.abandon()
    assert records(out) == [] and not out.has_file("data-00000.arrow")


def test_abandon_waits_for_the_upload_in_flight_before_the_run_lets_go() -> None:
    out = folder()
    commits = ShardCommits(out)
    shard = HeldShard(out, 0)
    commits.commit(cast(ShardBuilder, shard))
    assert shard.started.wait(30)
    threading.Timer(0.2, shard.release).start()
    commits.abandon()  # an interrupt in the main process: returns only once the commit in flight has ended
    assert shard.released.is_set() and records(out) == [0]  # it completed: a whole shard with its record


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
