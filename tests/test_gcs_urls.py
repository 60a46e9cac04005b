"""gs:// inputs and outputs against a real GCS-protocol server (fake-gcs-server, ``tests/gcs_server.py``).

The S3 suites (test_url_outputs.py, test_url_reads.py, test_remote_inputs.py)
test the URL code over s3fs; this one runs the same routes over gcsfs, which
the code reaches through the same fsspec calls but which speaks another API,
words its errors otherwise and makes its create-once write another way. The CLI
reaches the emulator as a user reaches one, configured only by environment
variables; what the store holds is read with its JSON API, never through the
code under test.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import gcs_server as fixtures
from tests.faults_support import ROOT, start
from tests.gcs_server import GcsServer
from tests.output_tables import shard_tables
from tests.s3_server import FaultyProxy, error_line, free_port, run
from tests.test_url_faults import dead_pid, lock_object

# the server (one per session) and the environment a user sets to reach it (see tests/gcs_server.py)
gcs_server = fixtures.gcs_server
gcs_env = fixtures.gcs_env

BUCKET = "outputs"
OPTIONS = ("-q", "--shard-size", "24KB")
#: dozens of shards of ``big_corpus``: a run is still going well after its first two
KILL_OPTIONS = ("-q", "--shard-size", "40KB")
LOCK = ".goldfish/writer.lock"


def files(folder: Path) -> dict[str, bytes]:
    """Every file of a local output, by its path relative to it, lock files left out (a store deletes its lock)."""
    found = {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}
    return {name: data for name, data in found.items() if not name.endswith(".lock")}


def jsonl(texts: list[str], limit: int) -> bytes:
    out, size = [], 0
    for number, text in enumerate(texts):
        line = json.dumps({"text": f"{number}\n{text}"}) + "\n"
        out.append(line)
        size += len(line)
        if size > limit:
            break
    return "".join(out).encode()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, real_texts: list[str]) -> Path:
    """About 300 kB of real texts as JSON lines: a dozen shards of 24 kB."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_bytes(jsonl([text for text in real_texts if 0 < len(text) < 20_000], 300_000))
    return path


@pytest.fixture(scope="module")
def reference(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local run's output folder over ``corpus``."""
    folder = tmp_path_factory.mktemp("reference") / "out"
    result = run("mask", corpus, "-o", folder, *OPTIONS)
    assert result.exit_code == 0, result.output
    assert sum(1 for _ in folder.glob("data-*.arrow")) >= 8
    return folder


@pytest.fixture
def bucket(gcs_env: GcsServer) -> GcsServer:
    """An empty bucket for the test."""
    gcs_env.make_bucket(BUCKET)
    gcs_env.empty(BUCKET)
    return gcs_env


# --- outputs: the bytes of a local run, read back by every consumer ---------------------------------


def test_a_gcs_output_holds_the_objects_a_local_run_writes_and_the_readers_read_it(
    bucket: GcsServer, corpus: Path, reference: Path, tmp_path: Path
) -> None:
    url = f"gs://{BUCKET}/shards"
    result = run("mask", corpus, "-o", url, *OPTIONS)
    assert result.exit_code == 0, result.output
    assert f"in {url}" in result.output
    assert bucket.objects(BUCKET, "shards") == files(reference)  # shards, records, manifest, state.json; no lock left
    for args in (
        ["stats", "{}", "--json"],
        ["show", "{}", "--row", "5", "--no-color"],
        ["verify", "{}"],
        ["repeats", "{}", "--min-length", "12"],
    ):
        on_disk = run(*[str(reference) if a == "{}" else a for a in args])
        on_store = run(*[url if a == "{}" else a for a in args])
        assert on_disk.exit_code == on_store.exit_code == 0, on_store.output
        assert on_store.output.replace(url, str(reference)) == on_disk.output
    written = {}
    for where, source in (("disk", str(reference)), ("store", url)):
        out = tmp_path / where / "export"
        out.parent.mkdir()
        result = run("export", source, "-o", out, "--format", "parquet")
        assert result.exit_code == 0, result.output
        written[where] = {path.relative_to(out.parent): path.read_bytes() for path in sorted(out.parent.rglob("*")) if path.is_file()}
    assert written["store"].keys() == written["disk"].keys() and written["disk"]
    for name, data in written["disk"].items():
        assert written["store"][name].replace(url.encode(), str(reference).encode()) == data, name  # the record names its source


def test_overwrite_and_tasks_then_finalize_on_gcs(bucket: GcsServer, corpus: Path, reference: Path) -> None:
    url = f"gs://{BUCKET}/split"
    assert run("mask", corpus, "-o", url, *OPTIONS, "--k", "3").exit_code == 0
    line = error_line(run("mask", corpus, "-o", url, *OPTIONS))
    assert line == (
        f"Error: output folder {url} already exists and is not empty; pass --overwrite to replace it, "
        "or --resume to finish an interrupted run"
    )
    for index in (1, 0):  # --overwrite on every task replaces the earlier run (docs/performance.md)
        result = run("mask", corpus, "-o", url, *OPTIONS, "--num-tasks", 2, "--task-index", index, "--overwrite")
        assert result.exit_code == 0, result.output
    result = run("finalize", url)
    assert result.exit_code == 0, result.output
    written = bucket.objects(BUCKET, "split")
    tasks = {name for name in written if name.startswith(".goldfish/task-")}
    assert tasks == {f".goldfish/task-0000{i}-of-00002.json" for i in range(2)}
    assert {name: data for name, data in written.items() if name not in tasks} == files(reference)


def test_datasets_loads_the_output_from_gcs(bucket: GcsServer, corpus: Path, reference: Path, tmp_path: Path) -> None:
    """``load_from_disk`` (a copy of the shards in a temporary folder) and ``load_dataset("arrow", streaming=True)``
    give the rows of the local run, gcsfs reaching the emulator by ``STORAGE_EMULATOR_HOST`` as for the CLI."""
    import datasets

    url = f"gs://{BUCKET}/hf"
    assert run("mask", corpus, "-o", url, *OPTIONS).exit_code == 0
    tempfile.tempdir, before = str(tmp_path), tempfile.tempdir  # load_from_disk copies the shards to a temporary folder
    try:
        loaded = datasets.load_from_disk(url, storage_options={"token": "anon"})
    finally:
        tempfile.tempdir = before
    local = datasets.load_from_disk(str(reference))
    assert loaded.column_names == local.column_names and loaded.num_rows == local.num_rows > 0
    assert loaded.to_dict() == local.to_dict()
    streamed = datasets.load_dataset(
        "arrow", data_files=f"{url}/data-*.arrow", split="train", streaming=True, storage_options={"token": "anon"}
    )
    assert list(streamed) == list(local)


# --- inputs: the shards of the same local files ------------------------------------------------------


@pytest.fixture(scope="module")
def input_folder(tmp_path_factory: pytest.TempPathFactory, real_texts: list[str]) -> Path:
    """JSON lines plain and gzipped, in a folder and a subfolder, with a hidden file a walk passes over."""
    folder = tmp_path_factory.mktemp("inputs") / "corpus"
    (folder / "sub").mkdir(parents=True)
    texts = [text for text in real_texts if 0 < len(text) < 12_000]
    (folder / "a.jsonl").write_bytes(jsonl(texts[:20], 60_000))
    (folder / "sub" / "b.jsonl.gz").write_bytes(gzip.compress(jsonl(texts[20:40], 60_000)))
    (folder / "c.jsonl").write_bytes(jsonl(texts[40:50], 30_000))
    (folder / ".hidden.jsonl").write_bytes(jsonl(texts[:2], 1))
    return folder


@pytest.mark.parametrize(
    ("local_spec", "url"),
    [
        ("corpus/", f"gs://{BUCKET}/in/corpus/"),
        ("corpus/**/*.jsonl*", f"gs://{BUCKET}/in/corpus/**/*.jsonl*"),
        ("corpus/sub/b.jsonl.gz", f"gs://{BUCKET}/in/corpus/sub/b.jsonl.gz"),
    ],
    ids=["prefix", "glob", "gzip-object"],
)
def test_gcs_inputs_give_the_shards_of_the_same_local_files(
    bucket: GcsServer, input_folder: Path, tmp_path: Path, local_spec: str, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket.upload(BUCKET, input_folder, "in/corpus/")
    local, remote = tmp_path / "local", tmp_path / "remote"
    monkeypatch.chdir(input_folder.parent)
    assert run("mask", local_spec, "-o", local, *OPTIONS).exit_code == 0
    result = run("mask", url, "-o", remote, *OPTIONS)
    assert result.exit_code == 0, result.output
    local_tables, remote_tables = shard_tables(local), shard_tables(remote, f"gs://{BUCKET}/in/")
    assert len(remote_tables) == len(local_tables) >= 1
    for got, expected in zip(remote_tables, local_tables):
        assert got.equals(expected)
    local_manifest = json.loads((local / "goldfish_manifest.json").read_text())
    remote_manifest = json.loads((remote / "goldfish_manifest.json").read_text())
    assert remote_manifest["counts"] == local_manifest["counts"]
    inputs = [{**entry, "path": entry["path"].removeprefix(f"gs://{BUCKET}/in/")} for entry in remote_manifest["inputs"]]
    assert inputs == local_manifest["inputs"]  # each input's size and hash as on disk: only the path differs


# --- killed mid-run, --resume, and the lock --------------------------------------------------------


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory: pytest.TempPathFactory, real_texts: list[str]) -> Path:
    """About 2 MB: some fifty shards of 40 kB, so a run is still going when a test stops it after its second."""
    path = tmp_path_factory.mktemp("big") / "big.jsonl"
    texts = [text for text in real_texts if 0 < len(text) < 20_000]
    path.write_bytes(jsonl(texts * (1 + 2_000_000 // sum(len(t) for t in texts)), 2_000_000))
    return path


def wait_for_object(server: GcsServer, name: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while not server.exists(BUCKET, name):
        assert process.poll() is None, f"the run ended before {name} appeared: {process.communicate()}"
        assert time.monotonic() < deadline, f"no {name} after 120 s"
        time.sleep(0.02)


def test_sigkill_mid_run_then_resume_gives_the_bytes_of_an_uninterrupted_run(bucket: GcsServer, big_corpus: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    assert run("mask", big_corpus, "-o", reference, *KILL_OPTIONS).exit_code == 0
    expected = files(reference)
    url = f"gs://{BUCKET}/killed"
    process = start(big_corpus, "-o", url, *KILL_OPTIONS, env=bucket.env())
    try:
        wait_for_object(bucket, "killed/.goldfish/shard-00001.json", process)
        # a second writer refuses at once, naming the holder
        line = error_line(run("mask", big_corpus, "-o", url, *KILL_OPTIONS, "--resume"))
        assert line.startswith(f"Error: output folder {url} is being written by another run (pid {process.pid} on "), line
        assert line.endswith(f"delete the lock object {url}/{LOCK} (`gcloud storage rm {url}/{LOCK}`) and rerun with --resume"), line
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=60)
    left = bucket.objects(BUCKET, "killed")
    assert "goldfish_manifest.json" not in left and "state.json" not in left
    assert str(process.pid).encode() in left[LOCK]
    records = [json.loads(data) for name, data in left.items() if name.startswith(".goldfish/shard-")]
    assert records and len(records) < sum(name.startswith("data-") for name in expected)
    for record in records:  # every shard with a completion record is whole
        assert left[record["filename"]] == expected[record["filename"]]
    # the lock object outlives its killed holder; a run on this machine sees its pid gone and takes it over
    result = run("mask", big_corpus, "-o", url, *KILL_OPTIONS[1:], "--resume")
    assert result.exit_code == 0, result.output
    assert f"note: took over {url}/{LOCK}, left by pid {process.pid} on " in result.output
    assert bucket.objects(BUCKET, "killed") == expected


def test_the_create_once_write_the_lock_sends_is_enforced_by_the_store(bucket: GcsServer) -> None:
    """gcsfs's ``open(path, "xb")`` puts ``ifGenerationMatch=0`` on a resumable upload session, which
    fake-gcs-server ignores (the object is replaced); ``pipe_file(mode="create")``, one multipart upload with the
    precondition, it refuses with 412 (FileExistsError). The lock sends the latter (``ObjectLock``)."""
    import fsspec

    fs = fsspec.filesystem("gs", skip_instance_cache=True)
    bucket.put(BUCKET, "x/taken", b"first")
    with fs.open(f"{BUCKET}/x/taken", "xb") as handle:
        handle.write(b"second")
    assert bucket.get(BUCKET, "x/taken") == b"second"  # the emulator ignored the session's precondition
    with pytest.raises(FileExistsError):
        fs.pipe_file(f"{BUCKET}/x/taken", b"third", mode="create")
    assert bucket.get(BUCKET, "x/taken") == b"second"
    fs.pipe_file(f"{BUCKET}/x/new", b"made", mode="create")
    assert bucket.get(BUCKET, "x/new") == b"made"


def test_a_writer_that_missed_the_holder_is_refused_by_the_store(bucket: GcsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lock looks for a holder before it creates its object; a writer that looked just before the holder's
    object appeared sends its create all the same, and the store must refuse it."""
    from goldfish_prep.format.folder import open_folder
    from goldfish_prep.format.lock import LockHeldError
    from goldfish_prep.format.object_lock import ObjectLock

    folder = open_folder(f"gs://{BUCKET}/locked")
    first, late = folder.lock(LOCK), folder.lock(LOCK)
    assert isinstance(late, ObjectLock)
    first.acquire()
    held = bucket.get(BUCKET, f"locked/{LOCK}")
    looked: list[bool] = []
    real = late._content

    def blind_once() -> bytes | None:
        if not looked:  # the look before the create: made before the holder's object appeared
            looked.append(True)
            return None
        return real()

    monkeypatch.setattr(late, "_content", blind_once)
    with pytest.raises(LockHeldError) as refused:
        late.acquire()
    assert isinstance(refused.value.__context__, FileExistsError)  # the store's 412, not the lock's own look
    assert refused.value.holder is not None and refused.value.holder.pid == os.getpid()
    assert bucket.get(BUCKET, f"locked/{LOCK}") == held  # the holder's object, untouched
    first.release()
    assert bucket.objects(BUCKET, "locked") == {}


def test_two_writers_racing_on_one_prefix_one_wins(bucket: GcsServer, corpus: Path, reference: Path) -> None:
    url = f"gs://{BUCKET}/race"
    command = [sys.executable, "-m", "goldfish_prep_cli", "mask", str(corpus), "-o", url, *OPTIONS]
    env = {**os.environ, **bucket.env()}
    racers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env) for _ in range(2)]
    answers = [racer.communicate(timeout=120) for racer in racers]
    codes = sorted(racer.returncode for racer in racers)
    assert codes == [0, 1], answers
    loser = answers[[racer.returncode for racer in racers].index(1)][1].strip().splitlines()
    assert len(loser) == 1 or print("\n".join(loser[-8:])), loser
    assert len(loser) == 1 and loser[0].startswith(f"Error: output folder {url} "), loser
    # refused by the lock, or (when the winner had finished first) by the finished output it found
    assert "is being written by another run" in loser[0] or "already exists and is not empty" in loser[0], loser
    assert bucket.objects(BUCKET, "race") == files(reference)


def test_the_emulator_refuses_a_write_conditional_on_a_generation_it_no_longer_holds(bucket: GcsServer) -> None:
    """What the take-over of a dead holder's lock relies on (``ObjectLock._take_over``): a multipart upload with
    ``ifGenerationMatch=N``, N the object's generation, replaces it once; sent again with the same N (the object
    replaced since) or for an object that no longer exists, it is refused with 412 and nothing changes."""
    bucket.put(BUCKET, "x/lock", b"dead")
    first = bucket.generation(BUCKET, "x/lock")
    assert bucket.put_if_generation(BUCKET, "x/lock", b"wrong", str(int(first) + 1)) == 412
    assert bucket.get(BUCKET, "x/lock") == b"dead"
    assert bucket.put_if_generation(BUCKET, "x/lock", b"mine", first) == 200
    assert bucket.get(BUCKET, "x/lock") == b"mine" and bucket.generation(BUCKET, "x/lock") != first
    assert bucket.put_if_generation(BUCKET, "x/lock", b"late", first) == 412
    assert bucket.get(BUCKET, "x/lock") == b"mine"
    bucket.delete(BUCKET, "x/lock")
    assert bucket.put_if_generation(BUCKET, "x/lock", b"late", first) == 412
    assert not bucket.exists(BUCKET, "x/lock")


def test_of_two_runs_taking_over_one_dead_lock_only_one_wins(bucket: GcsServer) -> None:
    """Both judge the holder dead; the take-over is a write conditional on the generation each read with the
    holder's bytes, so the store lets the first replace the object and refuses the second (412): it never
    overwrites the new holder. (A delete and a create, as before, let the second delete the first's object.)"""
    from goldfish_prep.format.folder import open_folder
    from goldfish_prep.format.lock import LockHeldError
    from goldfish_prep.format.object_lock import machine_id

    here = machine_id()
    if here is None:
        pytest.skip("needs Linux's boot id and pid namespace")
    folder, key = open_folder(f"gs://{BUCKET}/race"), f"race/{LOCK}"
    bucket.put(BUCKET, key, lock_object(dead_pid(), here))
    dead = bucket.generation(BUCKET, key)
    late, first = folder.lock(LOCK), folder.lock(LOCK)
    judged = late._stale()  # the late run has read the dead holder's object and judged it ...
    assert judged is not None
    first.acquire()  # ... when the first run takes it over
    assert first.taken_over is not None
    won = bucket.get(BUCKET, key)
    assert json.loads(won)["pid"] == os.getpid()
    with pytest.raises(LockHeldError) as refused:
        late._take_over(b'{"late": true}\n', *judged)
    assert bucket.get(BUCKET, key) == won  # the first run's object stays
    assert refused.value.holder is not None and refused.value.holder.pid == os.getpid()
    assert judged[1] == dead  # the generation of the bytes that were judged
    first.release()
    assert bucket.objects(BUCKET, "race") == {}


def test_of_two_mask_runs_taking_over_one_dead_lock_exactly_one_runs(gcs_env: GcsServer, big_corpus: Path, tmp_path: Path) -> None:
    """Two real ``mask`` processes find the lock object of a dead run of this machine. Run B judges it first and
    its take-over write is held by a proxy; run A takes the lock over meanwhile and is held by its own proxy
    once it holds it. B's write, let go, reaches the store: B must refuse in one line naming A, and A must finish
    (with a delete and a create, as before, B deleted A's object and both ran)."""
    from goldfish_prep.format.object_lock import machine_id

    here = machine_id()
    if here is None:
        pytest.skip("needs Linux's boot id and pid namespace")
    gcs_env.make_bucket(BUCKET)
    gcs_env.empty(BUCKET)
    url, key = f"gs://{BUCKET}/takeover", f"takeover/{LOCK}"
    gcs_env.put(BUCKET, key, lock_object(dead_pid(), here))
    b_writes, let_b_go, a_holds, let_a_go = threading.Event(), threading.Event(), threading.Event(), threading.Event()
    runs: dict[str, subprocess.Popen[str]] = {}

    def holder_pid() -> int | None:
        try:
            return int(json.loads(gcs_env.get(BUCKET, key))["pid"])
        except (OSError, ValueError, KeyError):  # urllib's 404 is an OSError: no object
            return None

    def hold_b(method: str, path: str, attempt: int) -> str | None:
        path = urllib.parse.unquote(path)
        # B's take-over write: the conditional upload, or (before) the delete of the dead holder's object
        if (method == "POST" and re.search(r"ifGenerationMatch=[1-9]", path)) or (method == "DELETE" and path.endswith(key)):
            b_writes.set()
            let_b_go.wait(120)
        return None

    def hold_a(method: str, path: str, attempt: int) -> str | None:
        # A has taken the lock and read it back (the requests about the lock object pass): A holds it
        if not let_a_go.is_set() and key not in urllib.parse.unquote(path) and "a" in runs and holder_pid() == runs["a"].pid:
            a_holds.set()
            let_a_go.wait(120)
        return None

    proxies = [FaultyProxy(gcs_env.endpoint, hold_b), FaultyProxy(gcs_env.endpoint, hold_a)]
    try:
        runs["b"] = start(big_corpus, "-o", url, *KILL_OPTIONS[1:], env=gcs_env.env(endpoint=proxies[0].endpoint))
        assert b_writes.wait(120), runs["b"].communicate()
        runs["a"] = start(big_corpus, "-o", url, *KILL_OPTIONS[1:], env=gcs_env.env(endpoint=proxies[1].endpoint))
        assert a_holds.wait(120), runs["a"].communicate()
        let_b_go.set()
        b_out, b_err = runs["b"].communicate(timeout=120)
        let_a_go.set()
        a_out, a_err = runs["a"].communicate(timeout=300)
    finally:
        let_b_go.set()
        let_a_go.set()
        for process in runs.values():
            if process.poll() is None:
                process.kill()
                process.communicate()
        for proxy in proxies:
            proxy.close()
    assert (runs["b"].returncode, runs["a"].returncode) == (1, 0), (b_err, a_err)
    line = b_err.strip().splitlines()
    assert len(line) == 1 and line[0].startswith(f"Error: output folder {url} is being written by another run (pid {runs['a'].pid} on "), (
        line
    )
    reference = tmp_path / "reference"
    assert run("mask", big_corpus, "-o", reference, *KILL_OPTIONS).exit_code == 0
    assert gcs_env.objects(BUCKET, "takeover") == files(reference)


# --- a shard sent in chunks (a resumable upload session) -------------------------------------------

CHUNKED = ("--shard-size", "1MB", "--storage-options", json.dumps({"block_size": 256 << 10}))  # 256 KiB: gcsfs's smallest chunk


class WatchingProxy(FaultyProxy):
    """``FaultyProxy`` that also shows ``watch`` each request's ``Content-Range`` (a chunk of an upload session)."""

    def __init__(self, target: str, fail: Any, watch: Any, stall_s: float = 0.0) -> None:
        self.watch = watch
        super().__init__(target, fail, stall_s)

    def _forward(self, handler: Any) -> None:
        self.watch(handler.command, urllib.parse.unquote(handler.path), handler.headers.get("Content-Range"))
        super()._forward(handler)


@pytest.fixture
def behind_a_proxy(gcs_env: GcsServer) -> Iterator[tuple[GcsServer, WatchingProxy]]:
    """An emulator of its own whose upload sessions are sent through a proxy (its ``-external-url``), and the proxy;
    the proxy's ``fail`` and ``watch`` do nothing until a test sets them."""
    port = free_port()
    proxy = WatchingProxy(f"http://127.0.0.1:{port}", lambda method, path, attempt: None, lambda method, path, sent: None)
    server = GcsServer(port, external=proxy.endpoint)
    try:
        server.make_bucket(BUCKET)
        yield server, proxy
    finally:
        proxy.close()
        server.stop()


@pytest.fixture(scope="module")
def chunked_reference(big_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("chunked-reference") / "out"
    assert run("mask", big_corpus, "-o", folder, "-q", "--shard-size", "1MB").exit_code == 0
    return files(folder)


def test_a_shard_sent_in_chunks_appears_only_when_its_last_chunk_arrives(
    behind_a_proxy: tuple[GcsServer, WatchingProxy], big_corpus: Path, chunked_reference: dict[str, bytes]
) -> None:
    server, proxy = behind_a_proxy
    seen: list[tuple[bool, bool]] = []
    chunks: list[str] = []

    def watch(method: str, path: str, sent: str | None) -> None:
        if "upload_id=" in path and "name=chunks/data-00000.arrow" in path:
            chunks.append(sent or "")
            if sent and not sent.endswith("/*"):  # "bytes A-B/TOTAL": the last chunk, which completes the object
                seen.append((server.exists(BUCKET, "chunks/data-00000.arrow"), server.exists(BUCKET, "chunks/.goldfish/shard-00000.json")))

    proxy.watch = watch
    result = run("mask", big_corpus, "-o", f"gs://{BUCKET}/chunks", "-q", *CHUNKED, env=server.env(endpoint=proxy.endpoint))
    assert result.exit_code == 0, result.output
    assert len(chunks) >= 3, chunks  # a shard of about 1 MB in chunks of 256 KiB
    assert seen == [(False, False)]  # every chunk but the last sent, yet neither the shard nor its record visible
    assert server.objects(BUCKET, "chunks") == chunked_reference


def test_sigkill_while_a_chunk_is_on_its_way_leaves_no_shard(
    behind_a_proxy: tuple[GcsServer, WatchingProxy], big_corpus: Path, chunked_reference: dict[str, bytes]
) -> None:
    server, proxy = behind_a_proxy
    url, sending = f"gs://{BUCKET}/cut", threading.Event()

    def stall_the_first_chunk(method: str, path: str, attempt: int) -> str | None:
        if "upload_id=" in urllib.parse.unquote(path) and "name=cut/data-00000.arrow" in urllib.parse.unquote(path):
            sending.set()
            return "stall"  # the chunk is on its way when the process dies
        return None

    proxy.fail, proxy.stall_s = stall_the_first_chunk, 2
    process = start(big_corpus, "-o", url, *CHUNKED, env=server.env(endpoint=proxy.endpoint))
    try:
        assert sending.wait(120), process.communicate()
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=60)
    time.sleep(2.5)  # the stalled chunk reaches the store after its sender died
    proxy.fail = lambda method, path, attempt: None
    assert sorted(server.objects(BUCKET, "cut")) == [".goldfish/run.json", LOCK]  # no shard, no record
    result = run("mask", big_corpus, "-o", url, *CHUNKED, "--resume", env=server.env(endpoint=proxy.endpoint))
    assert result.exit_code == 0, result.output
    assert server.objects(BUCKET, "cut") == chunked_reference


def test_uploads_answered_503_are_retried_without_corrupting_anything(
    behind_a_proxy: tuple[GcsServer, WatchingProxy], big_corpus: Path, chunked_reference: dict[str, bytes]
) -> None:
    """gcsfs's own retries (503 is retried, after 1 to 2 s) under the lock's create, a session's start and a chunk."""
    server, proxy = behind_a_proxy

    def fail(method: str, path: str, attempt: int) -> str | None:
        path = urllib.parse.unquote(path)
        first_create = "uploadType=multipart" in path and "ifGenerationMatch=0" in path  # the lock object
        start_or_chunk = "name=retried/data-00001.arrow" in path
        return "503" if method == "POST" and attempt == 0 and (first_create or start_or_chunk) else None

    proxy.fail = fail
    result = run("mask", big_corpus, "-o", f"gs://{BUCKET}/retried", "-q", *CHUNKED, env=server.env(endpoint=proxy.endpoint))
    assert result.exit_code == 0, result.output
    assert proxy.faults == 3  # the lock's create, the start of shard 1's session, its first chunk
    assert server.objects(BUCKET, "retried") == chunked_reference


def test_a_lost_answer_to_the_lock_s_create_is_not_taken_for_another_writer(
    behind_a_proxy: tuple[GcsServer, WatchingProxy], corpus: Path, reference: Path
) -> None:
    """The store stores the lock object but the connection is cut before its answer; gcsfs retries the create,
    which the store refuses (412: the object exists). The run must see its own object there, not another run's."""
    server, proxy = behind_a_proxy

    def cut_the_first_create(method: str, path: str, attempt: int) -> str | None:
        return "cut" if method == "POST" and attempt == 0 and "ifGenerationMatch=0" in path else None

    proxy.fail = cut_the_first_create
    result = run("mask", corpus, "-o", f"gs://{BUCKET}/lost", *OPTIONS, env=server.env(endpoint=proxy.endpoint))
    assert result.exit_code == 0, result.output
    assert proxy.faults == 1
    assert server.objects(BUCKET, "lost") == files(reference)  # the lock object deleted at the end, as always


def test_a_slow_store_still_gives_the_bytes_of_a_local_run(
    behind_a_proxy: tuple[GcsServer, WatchingProxy], big_corpus: Path, chunked_reference: dict[str, bytes]
) -> None:
    """Every request (the lock's, listings, each chunk of each shard's upload session) answered late, and the
    first chunk of shard 0 and the lock's create very late: shard 1 is built while shard 0 is still on its way."""
    server, proxy = behind_a_proxy
    delays: list[float] = []

    def slow(method: str, path: str, attempt: int) -> str | None:
        path = urllib.parse.unquote(path)
        very = attempt == 0 and ("ifGenerationMatch=0" in path or ("name=slow/data-00000.arrow" in path and "upload_id=" in path))
        delays.append(2.0 if very else 0.1)
        time.sleep(delays[-1])
        return None

    proxy.fail = slow
    result = run("mask", big_corpus, "-o", f"gs://{BUCKET}/slow", "-q", *CHUNKED, env=server.env(endpoint=proxy.endpoint))
    assert result.exit_code == 0, result.output
    assert delays.count(2.0) == 2 and len(delays) > 20, delays  # the lock's create and one chunk; every request late
    assert server.objects(BUCKET, "slow") == chunked_reference


class RefusingProxy(FaultyProxy):
    """A proxy that answers every request as GCS answers credentials it refuses: ``status`` with its JSON error."""

    def __init__(self, target: str, status: int, message: str, reason: str) -> None:
        super().__init__(target, lambda method, path, attempt: None)
        error = {"code": status, "message": message, "errors": [{"message": message, "domain": "global", "reason": reason}]}
        self.payload, self.status, self.refused = json.dumps({"error": error}).encode(), status, list[str]()
        self.authorizations = set[str]()  # the Authorization headers the requests carried

    def _forward(self, handler: Any) -> None:
        self.refused.append(f"{handler.command} {urllib.parse.unquote(handler.path)}")
        self.authorizations.add(handler.headers.get("Authorization") or "")
        handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        handler.send_response(self.status)
        handler.send_header("Content-Type", "application/json; charset=UTF-8")
        handler.send_header("Content-Length", str(len(self.payload)))
        handler.end_headers()
        handler.wfile.write(self.payload if handler.command != "HEAD" else b"")


#: what GCS answers a service account without the permission (403), and a request with no credentials (401)
_REFUSALS = {
    "403-no-permission": (
        403,
        "runner@project.iam.gserviceaccount.com does not have storage.objects.list access to the Google Cloud Storage "
        "bucket. Permission 'storage.objects.list' denied on resource (or it may not exist).",
        "forbidden",
    ),
    "401-anonymous": (
        401,
        "Anonymous caller does not have storage.objects.get access to the Google Cloud Storage object. "
        "Permission 'storage.objects.get' denied on resource (or it may not exist).",
        "required",
    ),
}


@pytest.mark.parametrize("refusal", sorted(_REFUSALS))
def test_credentials_the_store_refuses_are_one_line(gcs_env: GcsServer, corpus: Path, refusal: str) -> None:
    """A real process, as a user runs it: gcsfs logs a refusal it gives up on with its traceback, which only a
    process without logging handlers prints (pytest's own handlers would swallow it in this one)."""
    proxy = RefusingProxy(gcs_env.endpoint, *_REFUSALS[refusal])
    url = f"gs://{BUCKET}/denied"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "goldfish_prep_cli", "mask", str(corpus), "-o", url, *OPTIONS],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            env={**os.environ, **gcs_env.env(endpoint=proxy.endpoint)},
        )
    finally:
        proxy.close()
    assert result.returncode == 1 and result.stdout == "", result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line, no traceback
    line = lines[0]
    assert line.startswith(f"Error: {url}: the store refused access ("), line
    assert "GOOGLE_APPLICATION_CREDENTIALS" in line and "gcloud auth application-default login" in line, line
    assert proxy.refused and len(set(proxy.refused)) == len(proxy.refused), proxy.refused  # no request retried
    assert not gcs_env.exists(BUCKET, f"denied/{LOCK}")


#: what `gcloud auth application-default login` writes (google.auth reads it through GOOGLE_APPLICATION_CREDENTIALS),
#: with an access token good until 2099: sent as it is, so no request goes to Google to refresh it
_LOGIN = {
    "type": "authorized_user",
    "client_id": "764086051850-test.apps.googleusercontent.com",
    "client_secret": "d-FL95Q19q7MQmFpd7hHD0Ty",
    "refresh_token": "1//0g-refresh-token-never-shown",
    "token": "ya29.access-token-never-shown",
    "expiry": "2099-01-01T00:00:00Z",
}


@pytest.mark.parametrize("spec", ["in/a.jsonl", "in/", "in/*.jsonl"], ids=["object", "prefix", "glob"])
@pytest.mark.parametrize("refusal", sorted(_REFUSALS))
def test_credentials_the_store_refuses_for_an_input_are_one_line(gcs_env: GcsServer, tmp_path: Path, refusal: str, spec: str) -> None:
    """The same refusals for a gs:// input (resolved, listed, then opened: another path through gcsfs than an
    output's), in a real process with the user's own credentials: one line naming the input, GCS's credentials
    fix, never a missing bucket (GCS's message ends "(or it may not exist)") nor a network failure, no traceback
    (gcsfs logs a 401 before the run's first output request), and no token, though the requests carried one."""
    gcs_env.make_bucket(BUCKET)
    gcs_env.put(BUCKET, "in/a.jsonl", b'{"text": "a document the store will not show"}\n')
    login = tmp_path / "application_default_credentials.json"
    login.write_text(json.dumps(_LOGIN))
    env = {**os.environ, **gcs_env.env(), "GOOGLE_APPLICATION_CREDENTIALS": str(login)}
    env.pop("FSSPEC_GS_TOKEN")  # gcsfs's default chain, as a user's
    proxy = RefusingProxy(gcs_env.endpoint, *_REFUSALS[refusal])
    url = f"gs://{BUCKET}/{spec}"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "goldfish_prep_cli", "mask", url, "-o", str(tmp_path / "out"), *OPTIONS],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            env={**env, "STORAGE_EMULATOR_HOST": proxy.endpoint},
        )
    finally:
        proxy.close()
    assert proxy.authorizations == {f"Bearer {_LOGIN['token']}"}, proxy.authorizations  # the login's token was sent
    assert result.returncode == 1 and result.stdout == "", result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line, no traceback
    line = lines[0]
    assert line.startswith(f"Error: {url}: the store refused access ("), line
    assert line.endswith(
        "Check the credentials (GOOGLE_APPLICATION_CREDENTIALS, or `gcloud auth application-default login`, or the VM's "
        "service account; or --storage-options) and their permission to read it"
    ), line
    assert not any(secret in result.stderr for name, secret in _LOGIN.items() if name != "type"), line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("given", ["storage-options", "FSSPEC_GS_TOKEN"])
@pytest.mark.parametrize("where", ["input", "output"])
def test_a_raw_token_gcsfs_cannot_check_is_one_line_without_the_token(
    gcs_env: GcsServer, corpus: Path, tmp_path: Path, where: str, given: str
) -> None:
    """An access token passed as it is (``--storage-options '{"token": "ya29..."}'``, or fsspec's own variable
    ``FSSPEC_GS_TOKEN``, which goldfish-prep does not know to be a secret): gcsfs first asks Google's
    tokeninfo about it, with the token in the query. Here that request fails as it does on a machine without a
    way out (HTTPS_PROXY names a closed port: nothing leaves this machine), which gcsfs raises while the file
    system starts, before any request to the store: one line, with neither a traceback nor the token."""
    gcs_env.make_bucket(BUCKET)
    gcs_env.put(BUCKET, "in/a.jsonl", b'{"text": "a document"}\n')
    token = "ya29.a-raw-access-token-never-shown"
    url = f"gs://{BUCKET}/in/a.jsonl" if where == "input" else f"gs://{BUCKET}/raw"
    args = [url, "-o", str(tmp_path / "out")] if where == "input" else [str(corpus), "-o", url]
    env = {**os.environ, **gcs_env.env(), "HTTPS_PROXY": f"http://127.0.0.1:{free_port()}", "NO_PROXY": "127.0.0.1,localhost"}
    if given == "FSSPEC_GS_TOKEN":
        env["FSSPEC_GS_TOKEN"] = token
    else:
        env.pop("FSSPEC_GS_TOKEN")
        args += ["--storage-options", json.dumps({"token": token})]
    result = subprocess.run(
        [sys.executable, "-m", "goldfish_prep_cli", "mask", *args, *OPTIONS],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 1 and result.stdout == "", result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line, no traceback
    assert lines[0].startswith(f"Error: {url}: the gs:// file system could not start ("), lines[0]
    assert lines[0].endswith(
        "Check the credentials (GOOGLE_APPLICATION_CREDENTIALS, or `gcloud auth application-default login`, or the VM's "
        "service account; or --storage-options) and the network"
    ), lines[0]
    assert "tokeninfo?access_token=<redacted>" in lines[0] and token not in result.stderr, lines[0]
    assert not (tmp_path / "out").exists() and gcs_env.objects(BUCKET, "raw") == {}


# --- a bucket that does not exist ------------------------------------------------------------------


def test_a_bucket_that_does_not_exist_is_one_line(gcs_env: GcsServer, corpus: Path, tmp_path: Path) -> None:
    url = "gs://no-such-bucket-here/shards"
    line = error_line(run("mask", corpus, "-o", url, *OPTIONS))
    assert line == (
        f"Error: {url}: the bucket does not exist (404 Not Found for the objects of bucket no-such-bucket-here). "
        "Create it first (`gcloud storage buckets create gs://BUCKET`), or check the bucket name (and STORAGE_EMULATOR_HOST for an emulator)"
    )
    assert "no-such-bucket-here" not in gcs_env.buckets()  # not created
    line = error_line(run("mask", "gs://no-such-bucket-here/corpus/", "-o", tmp_path / "out", *OPTIONS))
    assert line.startswith("Error: gs://no-such-bucket-here/corpus/: the bucket does not exist (404 Not Found for the objects of bucket"), (
        line
    )
    assert "STORAGE_EMULATOR_HOST" in line, line
    line = error_line(run("stats", url))
    assert line.startswith(f"Error: {url}: the bucket does not exist ("), line


def test_a_prefix_that_holds_nothing_is_not_a_missing_bucket(bucket: GcsServer, tmp_path: Path) -> None:
    """gcsfs's "not found" of a key names its path too (``b/BUCKET/o/KEY``): only the bucket's own collection is
    read as a missing bucket."""
    url = f"gs://{BUCKET}/nothing-here"
    line = error_line(run("mask", f"{url}/", "-o", tmp_path / "out", *OPTIONS))
    assert line.startswith(f"Error: {url}/: no such object or prefix"), line
    line = error_line(run("stats", url))
    assert line == f"Error: {url}: no such folder. Pass the output folder of `goldfish-prep mask`"
