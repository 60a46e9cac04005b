"""az:// inputs and outputs against a real Azure Blob protocol server (Azurite, ``tests/azure_server.py``).

The CLI reaches Azurite as a user reaches a storage account: through adlfs,
configured only by ``AZURE_STORAGE_CONNECTION_STRING``. ``mask -o az://...``
must write, blob for blob, the bytes a run into a local folder writes (the lock
file aside), every reading command must read that output as it reads the local
one, az:// inputs must give the shards of the same local files, a SIGKILLed run
must resume to the same bytes, the lock must be the store's conditional write
(of two writers that race, Azure lets exactly one create it), and a missing
container or a wrong key is one ``Error:`` line with no secret in it. What was
written is read back with azure-storage-blob, never through the code under test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import azure_server as fixtures
from tests import test_url_outputs as s3_outputs
from tests.azure_server import KEY, AzureServer
from tests.faults_support import start
from tests.s3_server import FaultyProxy, error_line, run
from tests.test_remote_inputs import manifest, shard_tables
from tests.test_url_faults import dead_pid, lock_object
from tests.test_url_outputs import LOCKS, OPTIONS, files

# the server (one per session) and the environment a user sets to reach it (see tests/azure_server.py)
azure_server = fixtures.azure_server
azure_env = fixtures.azure_env
# the corpus of the S3 output tests (about 600 kB of real texts) and a local run's files over it
corpus, reference = s3_outputs.corpus, s3_outputs.reference

CONTAINER = "outputs"
#: about 100 shards of ``corpus``: a run is still going well after its first few
KILL_OPTIONS = ("-q", "--shard-size", "6KB")
#: another account key, well formed (64 bytes in base64), that Azurite does not know
WRONG_KEY = "d3Jvbmcta2V5LWZvci1henVyaXRlLWdvbGRmaXNoLXByZXAtdGVzdHMtMDEyMzQ1Njc4OWFiY2RlZmdoaWprbA=="


@pytest.fixture
def container(azure_env: AzureServer) -> Iterator[AzureServer]:
    """An empty container for the test (emptied after it)."""
    azure_env.create_container(CONTAINER)
    yield azure_env
    azure_env.empty(CONTAINER)
    from goldfish_prep.readers.remote import use_storage_options

    use_storage_options(None)  # what a command set would stay for the next one in this process


@pytest.fixture(scope="module")
def kill_reference(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A local run's files over ``corpus`` in shards of 6 kB."""
    folder = tmp_path_factory.mktemp("kill-reference") / "out"
    assert run("mask", corpus, "-o", folder, *KILL_OPTIONS).exit_code == 0
    return files(folder)


# --- an az:// output: the bytes of a local run, read by every consumer ------------------------------


def test_an_az_output_holds_the_blobs_a_local_run_writes_and_every_reader_reads_it(
    container: AzureServer, corpus: Path, reference: dict[str, bytes], tmp_path: Path
) -> None:
    url = f"az://{CONTAINER}/shards"
    result = run("mask", corpus, "-o", url, *OPTIONS)
    assert result.exit_code == 0, result.output
    assert f"in {url}" in result.output
    written = container.blobs(CONTAINER, "shards")
    assert written == reference  # shards, records, run.json, dataset_info.json, manifest, state.json; no lock blob left
    assert sum(name.startswith("data-") for name in written) >= 10
    assert LOCKS == (".goldfish/writer.lock",)
    # the reading commands print for the blobs what they print for a local copy of them
    local = tmp_path / "local"
    local.mkdir()
    for name, data in written.items():
        (local / name).parent.mkdir(parents=True, exist_ok=True)
        (local / name).write_bytes(data)
    for args in (
        ["verify", "{}"],
        ["stats", "{}", "--json"],
        ["show", "{}", "--row", "3", "--no-color"],
        ["repeats", "{}", "--min-length", "12"],
    ):
        on_disk = run(*[str(local) if a == "{}" else a for a in args])
        on_store = run(*[url if a == "{}" else a for a in args])
        assert on_disk.exit_code == on_store.exit_code == 0, (args, on_disk.output, on_store.output)
        assert on_store.output.replace(url, str(local)) == on_disk.output, args
    assert "Checksums, counts and every label match" in run("verify", url).output
    # and exports the same files byte for byte, the source folder named in the export record aside
    for format_name in ("nanogpt", "parquet"):
        exported = {}
        for where, source in (("disk", str(local)), ("store", url)):
            out = tmp_path / f"{format_name}-{where}" / "export"
            out.parent.mkdir()
            result = run("export", source, "-o", out, "--format", format_name)
            assert result.exit_code == 0, result.output
            exported[where] = {p.relative_to(out.parent): p.read_bytes() for p in sorted(out.parent.rglob("*")) if p.is_file()}
        assert exported["store"].keys() == exported["disk"].keys() and exported["disk"]
        for name, data in exported["disk"].items():
            assert exported["store"][name].replace(url.encode(), str(local).encode()) == data, name


def test_resume_and_overwrite_on_an_az_output(container: AzureServer, corpus: Path, reference: dict[str, bytes]) -> None:
    url = f"az://{CONTAINER}/again"
    assert run("mask", corpus, "-o", url, *OPTIONS, "--k", "3").exit_code == 0
    line = error_line(run("mask", corpus, "-o", url, *OPTIONS))
    assert line == (
        f"Error: output folder {url} already exists and is not empty; pass --overwrite to replace it, "
        "or --resume to finish an interrupted run"
    )
    result = run("mask", corpus, "-o", url, *OPTIONS, "--overwrite")
    assert result.exit_code == 0, result.output
    assert container.blobs(CONTAINER, "again") == reference  # nothing of the replaced output is left


def test_tasks_then_finalize_on_an_az_output_give_the_bytes_of_one_run(
    container: AzureServer, corpus: Path, reference: dict[str, bytes]
) -> None:
    url = f"az://{CONTAINER}/split"
    for index in (1, 0):
        result = run("mask", corpus, "-o", url, *OPTIONS, "--num-tasks", 2, "--task-index", index)
        assert result.exit_code == 0, result.output
    result = run("finalize", url)
    assert result.exit_code == 0, result.output
    written = container.blobs(CONTAINER, "split")
    tasks = {name for name in written if name.startswith(".goldfish/task-")}
    assert tasks == {f".goldfish/task-0000{i}-of-00002.json" for i in range(2)}  # the tasks' end records, no lock blob
    assert {name: data for name, data in written.items() if name not in tasks} == reference


# --- az:// inputs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory: pytest.TempPathFactory, real_texts: list[str]) -> Path:
    """A folder: JSON lines (one gzipped, in a subfolder), a text file, and a hidden file a folder walk passes over."""
    import gzip

    folder = tmp_path_factory.mktemp("inputs") / "corpus"
    (folder / "sub").mkdir(parents=True)
    texts = [t for t in real_texts if 0 < len(t) < 12_000][:40]
    lines = "".join(json.dumps({"text": t}) + "\n" for t in texts[:25]).encode()
    (folder / "a.jsonl").write_bytes(lines)
    (folder / "sub" / "b.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps({"text": t}) + "\n" for t in texts[25:39]).encode()))
    (folder / "d.txt").write_text(texts[39], encoding="utf-8")
    (folder / ".hidden.jsonl").write_bytes(lines[:100])
    return folder


@pytest.mark.parametrize(
    ("local_spec", "url"),
    [
        ("corpus/", f"az://{CONTAINER}/corpus/"),
        ("corpus/**/*.jsonl*", f"az://{CONTAINER}/corpus/**/*.jsonl*"),
        ("corpus/", f"abfs://{CONTAINER}/corpus/"),
    ],
    ids=["prefix", "glob", "abfs-prefix"],
)
def test_az_inputs_give_the_shards_of_the_same_local_files(
    container: AzureServer, small_corpus: Path, tmp_path: Path, local_spec: str, url: str
) -> None:
    container.upload(CONTAINER, small_corpus, "corpus/")
    local, on_azure = tmp_path / "local-out", tmp_path / "azure-out"
    cwd = os.getcwd()
    os.chdir(small_corpus.parent)
    try:
        assert run("mask", local_spec, "-o", local, "-q", "--shard-size", "40KB").exit_code == 0
    finally:
        os.chdir(cwd)
    result = run("mask", url, "-o", on_azure, "-q", "--shard-size", "40KB")
    assert result.exit_code == 0, result.output
    base = url.split("corpus/")[0]  # az://outputs/ or abfs://outputs/
    local_tables, azure_tables = shard_tables(local), shard_tables(on_azure, base)
    assert len(azure_tables) == len(local_tables) >= 2
    for got, expected in zip(azure_tables, local_tables):
        assert got.equals(expected)
    recorded = manifest(on_azure)
    assert recorded["counts"] == manifest(local)["counts"]
    inputs = [{**entry, "path": entry["path"].removeprefix(base)} for entry in recorded["inputs"]]
    assert inputs == manifest(local)["inputs"]  # each input's size and hash: only the path differs
    if local_spec == "corpus/":
        assert [entry["path"] for entry in inputs] == ["corpus/a.jsonl", "corpus/d.txt", "corpus/sub/b.jsonl.gz"]
        assert recorded["ignored_inputs"] == [f"{base}corpus/.hidden.jsonl"]


# --- killed mid-run, then --resume -------------------------------------------------------------------


def wait_for_blob(server: AzureServer, name: str, process: subprocess.Popen[str] | None = None) -> None:
    """Until blob ``name`` exists; fails after 120 s, or when ``process`` ends first."""
    blob = server.client().get_blob_client(CONTAINER, name)
    deadline = time.monotonic() + 120
    while not blob.exists():
        assert process is None or process.poll() is None, f"the run ended before {name} appeared: {process.communicate()}"
        assert time.monotonic() < deadline, f"no {name} after 120 s"
        time.sleep(0.02)


def test_sigkill_mid_commit_then_resume_gives_the_bytes_of_an_uninterrupted_run(
    container: AzureServer, corpus: Path, kill_reference: dict[str, bytes]
) -> None:
    """SIGKILL while the request that makes shard 5 appear is on its way, held by a proxy (a shard smaller than a
    part is one Put Blob, a larger one staged blocks and a Put Block List): it lands after its sender died, so the
    store holds a whole shard without its record; `--resume` must not trust it."""
    url = f"az://{CONTAINER}/killed"
    committing = threading.Event()

    def stall_the_commit_of_shard_5(method: str, path: str, attempt: int) -> str | None:
        query = path.split("?", 1)[1] if "?" in path else ""
        if method == "PUT" and "/killed/data-00005.arrow" in path and ("comp=blocklist" in query or "comp=" not in query):
            committing.set()
            return "stall"
        return None

    proxy = FaultyProxy(container.address, stall_the_commit_of_shard_5, stall_s=2)
    # the account given as an option (not the environment): the lock blob names the command, never the key
    options = json.dumps({"connection_string": container.connection_string(endpoint=f"{proxy.endpoint}/{fixtures.ACCOUNT}")})
    try:
        process = start(corpus, "-o", url, *KILL_OPTIONS, "--storage-options", options, env={"AZURE_STORAGE_CONNECTION_STRING": ""})
        try:
            assert committing.wait(120), process.communicate()
            # a second writer refuses at once, naming the holder
            line = error_line(run("mask", corpus, "-o", url, *KILL_OPTIONS, "--resume"))
            assert line.startswith(f"Error: output folder {url} is being written by another run (pid {process.pid} on "), line
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.communicate(timeout=60)
        wait_for_blob(container, "killed/data-00005.arrow")  # the stalled commit reaches the store after its sender died
    finally:
        proxy.close()
    left = container.blobs(CONTAINER, "killed")
    assert "goldfish_manifest.json" not in left and "state.json" not in left
    assert left["data-00005.arrow"] == kill_reference["data-00005.arrow"] and ".goldfish/shard-00005.json" not in left
    assert str(process.pid).encode() in left[".goldfish/writer.lock"]
    assert not [name for name, data in left.items() if KEY.encode() in data]
    records = [json.loads(data) for name, data in left.items() if name.startswith(".goldfish/shard-")]
    assert records  # shards before 5 (and any the next upload finished meanwhile), each whole
    for record in records:
        assert left[record["filename"]] == kill_reference[record["filename"]]
    # the lock blob outlives its killed holder; a run on the same machine sees that its pid is gone and takes it over
    result = run("mask", corpus, "-o", url, *KILL_OPTIONS[1:], "--resume")
    assert result.exit_code == 0, result.output
    assert f"note: took over {url}/.goldfish/writer.lock, left by pid {process.pid} on " in result.output
    assert container.blobs(CONTAINER, "killed") == kill_reference


# --- the lock -----------------------------------------------------------------------------------------


def test_azure_refuses_a_second_create_of_the_lock_blob(container: AzureServer) -> None:
    """adlfs's exclusive mode commits the blob with If-None-Match: * (Put Block List), which Azure (and Azurite)
    answers 409 BlobAlreadyExists when the blob exists: the store itself refuses, whatever the client looked at."""
    import fsspec
    from azure.core.exceptions import ResourceExistsError

    fs = fsspec.filesystem("az", skip_instance_cache=True)
    with fs.open(f"{CONTAINER}/once/writer.lock", "xb") as handle:
        handle.write(b"first")
    with pytest.raises(FileExistsError) as refused, fs.open(f"{CONTAINER}/once/writer.lock", "xb") as handle:
        handle.write(b"second")
    assert isinstance(refused.value.__cause__, ResourceExistsError) and refused.value.__cause__.error_code == "BlobAlreadyExists"
    assert container.blobs(CONTAINER, "once") == {"writer.lock": b"first"}


def test_of_two_writers_racing_for_one_prefix_exactly_one_runs(container: AzureServer, corpus: Path, reference: dict[str, bytes]) -> None:
    """Two `mask` processes on one prefix, each held at its lock's create (the Put Block List that carries
    If-None-Match: *) until both have looked for a lock blob, found none and sent it: the store lets one create it,
    the other is refused in one line naming the winner."""
    url = f"az://{CONTAINER}/race"
    both = threading.Barrier(2, timeout=60)
    arrived: list[str] = []

    def hold_the_lock_creates(method: str, path: str, attempt: int) -> None:
        if method == "PUT" and "/race/.goldfish/writer.lock?" in path and "comp=blocklist" in path:
            arrived.append(path)
            both.wait()

    proxy = FaultyProxy(container.address, hold_the_lock_creates)
    env = container.env(endpoint=f"{proxy.endpoint}/{fixtures.ACCOUNT}")
    try:
        runs = [start(corpus, "-o", url, *OPTIONS[1:], env=env) for _ in range(2)]
        ended = [process.communicate(timeout=120) for process in runs]
    finally:
        proxy.close()
    assert len(arrived) == 2  # both sent their create: neither was refused by the look before it
    codes = sorted(process.returncode for process in runs)
    assert codes == [0, 1], ended
    winner, loser = (0, 1) if runs[0].returncode == 0 else (1, 0)
    lines = [line for line in ended[loser][1].splitlines() if line.strip()]
    assert len(lines) == 1, ended[loser]
    assert lines[0].startswith(f"Error: output folder {url} is being written by another run (pid {runs[winner].pid} on "), lines
    assert container.blobs(CONTAINER, "race") == reference  # the winner's output, untouched by the loser


def test_of_two_runs_taking_over_one_dead_lock_only_one_wins(container: AzureServer) -> None:
    """A lock blob left by a dead process of this machine is taken over with a PUT conditional on the ETag read
    before the holder was judged (If-Match): a run that judged it and comes second is refused (412), never
    overwriting the run that took it over first."""
    from goldfish_prep.format.folder import open_folder
    from goldfish_prep.format.lock import LockHeldError
    from goldfish_prep.format.object_lock import machine_id

    here = machine_id()
    if here is None:
        pytest.skip("needs Linux's boot id and pid namespace")
    folder = open_folder(f"az://{CONTAINER}/stale")
    container.client().get_blob_client(CONTAINER, "stale/.goldfish/writer.lock").upload_blob(lock_object(dead_pid(), here))
    late, first = folder.lock(".goldfish/writer.lock"), folder.lock(".goldfish/writer.lock")
    judged = late._stale()  # the late run has read the dead holder's blob and judged it ...
    assert judged is not None and judged[1]  # ... with its ETag
    first.acquire()  # ... when the first run takes it over
    assert first.taken_over is not None
    won = container.blobs(CONTAINER, "stale")[".goldfish/writer.lock"]
    assert json.loads(won)["pid"] == os.getpid()
    with pytest.raises(LockHeldError):
        late._take_over(b'{"late": true}\n', *judged)
    assert container.blobs(CONTAINER, "stale")[".goldfish/writer.lock"] == won
    first.release()
    assert container.blobs(CONTAINER, "stale") == {}


# --- one line for each way the store refuses ---------------------------------------------------------


def test_a_container_that_does_not_exist(azure_env: AzureServer, corpus: Path, tmp_path: Path) -> None:
    url = "az://no-such-container/shards"
    line = error_line(run("mask", corpus, "-o", url, *OPTIONS))
    assert line.startswith(f"Error: {url}"), line
    assert ": the container does not exist (" in line and "Create it first" in line, line
    assert "no-such-container" not in [c.name for c in azure_env.client().list_containers()]  # not created by the run
    line = error_line(run("mask", f"{url}/a.jsonl", "-o", tmp_path / "out", *OPTIONS))
    assert line.startswith(f"Error: {url}/a.jsonl: "), line


@pytest.mark.parametrize(
    ("where", "who"), [("output", "wrong-key"), ("input", "wrong-key"), ("output", "read-only-sas"), ("input", "list-only-sas")]
)
def test_credentials_the_account_refuses(container: AzureServer, corpus: Path, tmp_path: Path, where: str, who: str) -> None:
    """A wrong account key (403 AuthorizationFailure), or a SAS without the permission a run needs (403
    AuthorizationPermissionMismatch): one line naming the URL and where Azure credentials come from, no secret."""
    import datetime

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    container.upload(CONTAINER, corpus.parent, "in/")
    if who == "wrong-key":
        secret, env = WRONG_KEY, container.env(key=WRONG_KEY)
    else:
        permission = ContainerSasPermissions(read=who == "read-only-sas", list=True)
        expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
        secret = generate_container_sas(fixtures.ACCOUNT, CONTAINER, account_key=KEY, permission=permission, expiry=expiry)
        env = {"AZURE_STORAGE_CONNECTION_STRING": f"BlobEndpoint={container.endpoint};SharedAccessSignature={secret}"}
    if where == "output":
        url = f"az://{CONTAINER}/refused"
        result = run("mask", corpus, "-o", url, *OPTIONS, env=env)
    else:
        url = f"az://{CONTAINER}/in/{corpus.name}"
        result = run("mask", url, "-o", tmp_path / "out", *OPTIONS, env=env)
    line = error_line(result)
    assert line.startswith(f"Error: {url}") and "the store refused access (" in line, line
    assert "AZURE_STORAGE_CONNECTION_STRING" in line and "AWS_" not in line, line
    signature = secret.split("sig=")[-1]
    assert secret not in result.output and signature not in result.output and KEY not in result.output
    assert container.blobs(CONTAINER, "refused") == {}
