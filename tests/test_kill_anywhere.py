"""``mask -o s3://...`` stopped at requests of every kind, then read and resumed (``tests/kill_probe.py``).

A small, deterministic subset of ``bench/kill_probe.py``'s sweep: each point
kills a real run at one request, seen by a proxy in front of moto's server
(SIGKILL before or after the store applied it, or SIGINT), and then
``check_point`` holds the run to the commit protocol of docs/remote.md: every
record names a whole shard; ``verify`` and ``stats`` refuse the folder in one
line (with its lock object, and without it, as a user who deleted it) unless it
is complete; after SIGINT, exit 130, no lock object and no open multipart
upload; ``--resume`` exits 0 with every object byte-identical to an
uninterrupted local run's file. The points are chosen to hit different kinds
of request, and one is the moment two shards' uploads run at once and the
later one is complete while the earlier is not.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests import s3_server as fixtures
from tests.kill_probe import KillPoint, check_point, jsonl_corpus, local_reference
from tests.s3_server import S3Server

s3_server = fixtures.s3_server
s3_env = fixtures.s3_env
BUCKET = "killed-anywhere"
bucket = fixtures.bucket_fixture(BUCKET)

#: about 7 shards of ~170 kB from ``corpus``, each one PUT
SMALL = ("--shard-size", "80KB")
#: one shard of about 5.7 MB from ``big_corpus``, sent in two parts of 5 MiB (the smallest S3 takes)
PARTS = ("--shard-size", "8MB", "--storage-options", json.dumps({"default_block_size": 5 << 20}))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, real_texts: list[str]) -> Path:
    return jsonl_corpus(tmp_path_factory.mktemp("kill-corpus") / "corpus.jsonl", real_texts, 600_000)


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory: pytest.TempPathFactory, real_texts: list[str]) -> Path:
    return jsonl_corpus(tmp_path_factory.mktemp("kill-big") / "big.jsonl", real_texts, 3_000_000)


@pytest.fixture(scope="module")
def reference(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    found = local_reference(corpus, tmp_path_factory.mktemp("kill-reference") / "out", ("-q", *SMALL))
    assert sum(1 for name in found if name.startswith("data-")) >= 6  # the points below stop between shards
    return found


@pytest.fixture(scope="module")
def parts_reference(big_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return local_reference(big_corpus, tmp_path_factory.mktemp("kill-parts-reference") / "out", ("-q", *PARTS[:2]))


@pytest.mark.parametrize(
    ("point", "shards", "records"),
    [
        # shard 2 whole on the store, shard 1 (in flight at the same time) not: neither has a record
        (KillPoint(signal.SIGKILL, 1, out_of_order=True), ["data-00000.arrow", "data-00002.arrow"], 1),
        # the store stored shard 3, the run died before it heard: whole shards without records, deleted by --resume
        (KillPoint(signal.SIGKILL, 4, "shard-put", "after"), None, None),
        (KillPoint(signal.SIGKILL, 2, "record", "before"), None, 1),
        # the manifest is there, state.json not: no reader may take the folder for finished, even without its lock
        (KillPoint(signal.SIGKILL, 1, "manifest", "after"), None, None),
        (KillPoint(signal.SIGINT, 4, "shard-put", "after"), None, None),
    ],
    ids=lambda value: value.label if isinstance(value, KillPoint) else None,
)
def test_a_run_stopped_at_a_request_is_never_read_as_complete_and_resumes_identical(
    bucket: S3Server, corpus: Path, reference: dict[str, bytes], point: KillPoint, shards: list[str] | None, records: int | None
) -> None:
    found = check_point(bucket, BUCKET, "small", corpus, SMALL, reference, point)
    assert found.failures == [], found
    assert found.killed_at is not None
    if shards is not None:
        assert [name for name in found.left if name.startswith("data-")] == shards
    if records is not None:
        assert sum(1 for name in found.left if name.startswith(".goldfish/shard-")) == records
    if point.kind == "manifest":
        assert "goldfish_manifest.json" in found.left and "state.json" not in found.left
        assert "no lock: verify refused, stats refused" in found.readers
    assert found.uploads_after_resume == []


def test_a_run_killed_between_the_parts_of_a_shard_leaves_only_an_invisible_upload(
    bucket: S3Server, big_corpus: Path, parts_reference: dict[str, bytes]
) -> None:
    """SIGKILL once the store has a shard's first part: no object appears; --resume aborts the cut upload (it holds
    the lock, so no live run is sending it: ``UrlFolder.abort_open_uploads``) and writes the shard anew."""
    found = check_point(bucket, BUCKET, "parts", big_corpus, PARTS, parts_reference, KillPoint(signal.SIGKILL, 1, "part", "after"))
    assert found.failures == [], found
    assert not [name for name in found.left if name.startswith("data-")]
    assert found.uploads_after_kill == 1
    assert found.uploads_after_resume == []
