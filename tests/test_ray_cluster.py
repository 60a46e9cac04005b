"""``mask --ray-address`` on a real multi-node Ray cluster that shares no disk, against a real S3 server.

The cluster is started as a user starts one: ``ray start --head`` and ``ray
start --address=HEAD`` (a second raylet: a second node), each from a working
folder of its own, with a Ray temp folder of its own and the store's
credentials in its environment (as an instance role or the node's environment
gives them on a cloud cluster). The driver is ``goldfish-prep mask`` as a
subprocess in a third folder, with inputs and output on the S3 server (moto's
server mode, ``tests/s3_server.py``), reached through ``AWS_ENDPOINT_URL`` and
the credentials variables only. Every node runs on this one machine, so the
test cannot hide a disk from a task; what it checks is that nothing in the job
names one (``ray_backend.driver_disk``: tasks then run in temporary folders of
their own), that tasks ran on both nodes, and that the objects are a local
single-process run's bytes, also when the worker node is killed mid-run
(every process of that node SIGKILLed: raylet, its agents and its task
workers, as when a machine goes away) and Ray retries its task on the head.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import s3_server as fixtures
from tests.s3_server import S3Server, free_port
from tests.test_url_outputs import files, objects

pytestmark = pytest.mark.slow

s3_server = fixtures.s3_server

INPUTS, OUTPUTS = "cluster-in", "cluster-out"
#: about 60 shards over 4 tasks: a task on the worker node is still going after its second shard
OPTIONS = ("-q", "--shard-size", "40KB")
TASKS = 4
RAY = (sys.executable, "-m", "ray.scripts.scripts")  # the `ray` command, with this interpreter's Ray
#: how fast the head tells a node is gone (Ray's defaults take about 30 s)
FAST_HEALTH_CHECKS = {"RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "3"}


@dataclass
class Node:
    """One ``ray start --block`` process (its own session: the node's processes are its group or below it)."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def pids(self) -> set[int]:
        """Every process of this node: Ray's task workers start sessions of their own, so walk the tree."""
        psutil = pytest.importorskip("psutil")
        try:
            root = psutil.Process(self.process.pid)
            return {root.pid, *(child.pid for child in root.children(recursive=True))}
        except psutil.NoSuchProcess:
            return set()

    def kill(self) -> None:
        """SIGKILL every process of the node at once, as when its machine is lost."""
        pids = self.pids()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=30)


@dataclass
class Cluster:
    address: str
    head: Node
    worker: Node
    env: dict[str, str]
    temp_dirs: list[str] = field(default_factory=list)

    def node_of(self, pid: int) -> str | None:
        for node in (self.head, self.worker):
            if pid in node.pids():
                return node.name
        return None


def _start_node(name: str, args: list[str], folder: Path, temp_dir: str, env: dict[str, str]) -> Node:
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "ray-start.log"
    # free ports for what Ray otherwise binds at fixed defaults, so that another Ray on this machine (a test
    # running beside this one) cannot collide with these nodes, nor these two nodes with each other
    fixed = ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port")
    ports = [f"--{name}={free_port()}" for name in fixed]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *RAY,
                "start",
                "--block",
                *args,
                "--num-cpus=1",
                f"--temp-dir={temp_dir}",
                "--object-store-memory=80000000",
                "--disable-usage-stats",
                *ports,
            ],
            cwd=folder,
            env=env,
            start_new_session=True,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    node = Node(name, process, log)
    deadline = time.monotonic() + 120
    while b"Ray runtime started" not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"`ray start` for the {name} node failed:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)
    return node


def _alive_nodes(cluster_env: dict[str, str], address: str) -> int:
    status = subprocess.run([*RAY, "status", f"--address={address}"], env=cluster_env, capture_output=True, text=True, timeout=60)
    active = status.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
    return active.count("node_")


@pytest.fixture(scope="module")
def cluster(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A head and a worker node, each from its own working folder, torn down (every process killed) after the module."""
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'goldfish-prep[ray]'")
    pytest.importorskip("psutil", reason="finding a node's processes needs psutil (installed with Ray)")
    from ray.util import get_node_ip_address

    folders = tmp_path_factory.mktemp("nodes")
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "RAY_"))}
    env.update(s3_server.env(), AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    # a test cluster on one machine: no token to hand around (Ray >= 2.59 turns it on for `ray start`)
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    port = free_port()
    node_ip: Any = get_node_ip_address  # untyped in Ray; the address `ray start --head` binds
    address = f"{node_ip()}:{port}"
    # short temp folders: Ray's socket paths below them must stay under the OS's 107 characters
    temp_dirs = [tempfile.mkdtemp(prefix="gfray-"), tempfile.mkdtemp(prefix="gfray-")]
    nodes: list[Node] = []
    try:
        head_args = ["--head", f"--port={port}", "--include-dashboard=false"]
        nodes.append(_start_node("head", head_args, folders / "head", temp_dirs[0], {**env, **FAST_HEALTH_CHECKS}))
        nodes.append(_start_node("worker", [f"--address={address}"], folders / "worker", temp_dirs[1], env))
        deadline = time.monotonic() + 60
        while _alive_nodes(env, address) < 2:
            assert time.monotonic() < deadline, "the worker node never joined the head"
            time.sleep(1)
        del ray
        yield Cluster(address, nodes[0], nodes[1], env, temp_dirs)
    finally:
        for node in reversed(nodes):
            if node.process.poll() is None:
                node.kill()
        for folder in temp_dirs:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def corpus_url(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory, real_texts: list[str]) -> str:
    """About 2.4 MB of real texts as JSON lines, on the store only."""
    folder = tmp_path_factory.mktemp("cluster-corpus")
    texts = [text for text in real_texts if 0 < len(text) < 20_000]
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as out:
        number = 0
        while out.tell() < 2_400_000:
            out.write(json.dumps({"text": f"{number}\n{texts[number % len(texts)]}"}) + "\n")
            number += 1
    s3_server.upload(INPUTS, folder)
    return f"s3://{INPUTS}/corpus.jsonl"


@pytest.fixture(scope="module")
def reference(cluster: Cluster, corpus_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A local single-process run over the same input (read from the store), into a local folder."""
    folder = tmp_path_factory.mktemp("cluster-reference") / "out"
    done = subprocess.run(
        [sys.executable, "-m", "goldfish_prep_cli", "mask", corpus_url, "-o", str(folder), *OPTIONS],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return files(folder)


class TaskWatcher:
    """Polls the task lock objects while a run goes: which process (and so which node) holds each task."""

    def __init__(self, server: S3Server, cluster: Cluster, prefix: str) -> None:
        self.s3, self.cluster, self.prefix = server.client(), cluster, prefix
        self.holders: dict[str, set[str]] = {}  # task lock -> the nodes its attempts ran on
        self.folders: set[str] = set()  # the working folders of the processes seen holding a task
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.stop.is_set():
            self.poll()
            time.sleep(0.05)

    def poll(self) -> dict[str, int]:
        """``task lock name -> holder pid`` now, noting each holder's node."""
        held: dict[str, int] = {}
        listing = self.s3.list_objects_v2(Bucket=OUTPUTS, Prefix=f"{self.prefix}/.goldfish/task-")
        for entry in listing.get("Contents", []):
            if not entry["Key"].endswith(".lock"):
                continue
            with contextlib.suppress(self.s3.exceptions.NoSuchKey, ValueError, KeyError):
                pid = int(json.loads(self.s3.get_object(Bucket=OUTPUTS, Key=entry["Key"])["Body"].read())["pid"])
                held[entry["Key"]] = pid
                with contextlib.suppress(OSError):  # a task that has just ended
                    self.folders.add(os.readlink(f"/proc/{pid}/cwd"))
                node = self.cluster.node_of(pid)
                if node is not None:
                    self.holders.setdefault(entry["Key"].rsplit("/", 1)[1], set()).add(node)
        return held

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def run_on_cluster(cluster: Cluster, corpus_url: str, prefix: str, folder: Path, *more: str) -> subprocess.Popen[str]:
    """The driver: `goldfish-prep mask` from a folder of its own, reaching the store and the cluster by env and flags only."""
    folder.mkdir()
    command = [sys.executable, "-m", "goldfish_prep_cli", "mask", corpus_url, "-o", f"s3://{OUTPUTS}/{prefix}", *OPTIONS, *more]
    command += ["--ray-address", cluster.address, "--ray-tasks", str(TASKS)]
    return subprocess.Popen(command, cwd=folder, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished(process: subprocess.Popen[str]) -> str:
    try:
        output, _ = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    return output


def same_as_reference(server: S3Server, prefix: str, reference: dict[str, bytes]) -> None:
    written = objects(server, prefix, bucket=OUTPUTS)
    tasks = {name for name in written if name.startswith(".goldfish/task-")}
    assert tasks == {f".goldfish/task-{i:05d}-of-{TASKS:05d}.json" for i in range(TASKS)}  # no lock object left
    assert {name: data for name, data in written.items() if name not in tasks} == reference


def test_tasks_on_two_nodes_write_the_bytes_of_one_local_run(
    cluster: Cluster, s3_server: S3Server, corpus_url: str, reference: dict[str, bytes], tmp_path: Path
) -> None:
    s3_server.client().create_bucket(Bucket=OUTPUTS)
    driver = run_on_cluster(cluster, corpus_url, "two-nodes", tmp_path / "driver")
    watcher = TaskWatcher(s3_server, cluster, "two-nodes")
    try:
        finished(driver)
    finally:
        watcher.close()
    same_as_reference(s3_server, "two-nodes", reference)
    ran_on = set().union(*watcher.holders.values())
    assert ran_on == {"head", "worker"}, watcher.holders
    assert not list((tmp_path / "driver").iterdir())  # the driver's folder: nothing written there either
    # the tasks ran in temporary folders of their own (the driver's folder is on this machine's disk, so a task that
    # changed into it would work here and fail on a real cluster); /proc/PID/cwd of each lock holder while it held it
    temporary = {folder for folder in watcher.folders if Path(folder).name.startswith("goldfish-prep-ray-")}
    assert temporary and not any(folder.startswith(str(tmp_path / "driver")) for folder in watcher.folders), watcher.folders


def test_the_driver_killed_mid_run_then_resume_gives_the_bytes_of_one_run(
    cluster: Cluster, s3_server: S3Server, corpus_url: str, reference: dict[str, bytes], tmp_path: Path
) -> None:
    """SIGKILL to the driver once tasks have written shards: Ray ends the job's task workers, the lock objects stay
    (the driver's and the tasks'), and the same command rerun with --resume takes each over, since the cluster's job
    table says their job ended (each names it), keeps the finished shards and writes one local run's bytes."""
    with contextlib.suppress(Exception):
        s3_server.client().create_bucket(Bucket=OUTPUTS)
    driver = run_on_cluster(cluster, corpus_url, "driver-lost", tmp_path / "driver")
    watcher = TaskWatcher(s3_server, cluster, "driver-lost")
    s3 = s3_server.client()
    try:
        deadline = time.monotonic() + 180
        while True:  # two shards with their records, and tasks still holding their locks
            assert driver.poll() is None and time.monotonic() < deadline, "the run ended before two shards"
            with contextlib.suppress(s3.exceptions.ClientError):
                s3.head_object(Bucket=OUTPUTS, Key="driver-lost/.goldfish/shard-00001.json")
                if watcher.poll():
                    break
            time.sleep(0.05)
        driver.kill()
        driver.communicate(timeout=60)
        holders = watcher.poll()
    finally:
        watcher.close()
    left = objects(s3_server, "driver-lost", bucket=OUTPUTS)
    assert ".goldfish/ray-driver.lock" in left and holders and "state.json" not in left
    deadline = time.monotonic() + 60  # Ray kills the workers of a job whose driver died
    while any(Path(f"/proc/{pid}").exists() for pid in holders.values()):
        assert time.monotonic() < deadline, f"task workers still running 60 s after their driver died: {holders}"
        time.sleep(0.2)
    # as if every holder had run on another machine (the nodes of a real cluster): only the cluster's word that the
    # job ended can free the locks now (the machine check would take over a dead holder of the rerun's own machine)
    for name, data in left.items():
        if name.endswith(".lock"):
            fields = json.loads(data)
            assert " of job " in fields["owner"], fields  # the job, by its id and start time in the cluster's job table
            moved = {**fields, "machine": "another machine", "host": "another-host"}
            s3.put_object(Bucket=OUTPUTS, Key=f"driver-lost/{name}", Body=json.dumps(moved).encode())
    rerun = run_on_cluster(cluster, corpus_url, "driver-lost", tmp_path / "rerun", "--resume")
    finished(rerun)
    same_as_reference(s3_server, "driver-lost", reference)


def test_a_worker_node_lost_mid_run_is_retried_and_the_output_is_the_same(
    cluster: Cluster, s3_server: S3Server, corpus_url: str, reference: dict[str, bytes], tmp_path: Path
) -> None:
    """Every process of the worker node is killed while it holds a task that has written shards; Ray sees the node
    die, retries that task on the head (same task id: it takes over the lock object its dead attempt left and
    resumes the task's finished shards), and the output is still one local run's bytes."""
    with contextlib.suppress(Exception):
        s3_server.client().create_bucket(Bucket=OUTPUTS)
    driver = run_on_cluster(cluster, corpus_url, "node-lost", tmp_path / "driver")
    watcher = TaskWatcher(s3_server, cluster, "node-lost")
    s3, lost = s3_server.client(), ""
    try:
        deadline = time.monotonic() + 180
        while not lost and driver.poll() is None and time.monotonic() < deadline:
            for key, pid in watcher.poll().items():
                task = key.rsplit("/", 1)[1].removesuffix(".lock")  # task-0000I-of-0000N
                index = int(task.split("-")[1])
                second_shard = index + TASKS  # shards are dealt round-robin (Task.owns_shard)
                if cluster.node_of(pid) != "worker":
                    continue
                with contextlib.suppress(s3.exceptions.ClientError):
                    s3.head_object(Bucket=OUTPUTS, Key=f"node-lost/.goldfish/shard-{second_shard:05d}.json")
                    cluster.worker.kill()
                    lost = task
                    break
            time.sleep(0.05)
        output = finished(driver)
    finally:
        watcher.close()
    assert lost, f"no task on the worker node had written two shards before the run ended: {watcher.holders}"
    assert watcher.holders[f"{lost}.lock"] == {"worker", "head"}, watcher.holders  # its retry ran on the head
    # Ray saw a node die (not only a worker), said so on the driver's terminal, and retried the task
    assert "node" in output and "dead" in output and "retried" in output and "Traceback" not in output, output
    same_as_reference(s3_server, "node-lost", reference)


def test_a_node_that_does_not_see_a_local_path_of_the_job_stops_the_run_in_one_line(tmp_path: Path) -> None:
    """A tokenizer file given as a path on the driver's machine, on a node without that disk: the task says what a
    cluster without a shared disk needs instead (runs in the task's own code, no cluster needed)."""
    from goldfish_prep.errors import ConfigError
    from goldfish_prep.pipeline.job import MaskJob
    from goldfish_prep.pipeline.ray_backend import _working_folder, driver_disk

    (tmp_path / "tok.json").write_text("{}")
    before = os.getcwd()
    os.chdir(tmp_path)
    try:
        disk = driver_disk(MaskJob(("s3://in/corpus.jsonl",), "s3://out/run", tokenizer="tok.json"))
    finally:
        os.chdir(before)
    assert disk.paths == ("tok.json",) and not disk.local_output
    on_other_node = type(disk)(str(tmp_path / "not-on-this-node"), disk.paths, disk.local_output)
    with pytest.raises(ConfigError) as refused, _working_folder(on_other_node):
        pass
    message = str(refused.value)
    assert "\n" not in message and "does not see tok.json (relative to the driver's working folder" in message
    assert "give the inputs and -o as URLs (s3://...) and --tokenizer as an encoding name (cl100k_base)" in message
    assert os.getcwd() == before
    # with URLs only, a task needs nothing of the driver's disk: it runs in a temporary folder of its own
    urls_only = driver_disk(MaskJob(("s3://in/corpus.jsonl",), "s3://out/run"))
    assert urls_only.paths == () and not urls_only.local_output
    with _working_folder(urls_only):
        own = os.getcwd()
        assert Path(own).name.startswith("goldfish-prep-ray-") and own != before
    assert not Path(own).exists() and os.getcwd() == before


def test_a_tokenizer_file_on_the_driver_s_disk_only_stops_the_run_in_one_line(
    cluster: Cluster, s3_server: S3Server, corpus_url: str, tmp_path: Path
) -> None:
    """``--tokenizer ~/tok.json`` with the driver's home folder somewhere the nodes' home is not: a path on the
    driver's machine only, as on a real cluster. The first task says so, in one line, before anything is written."""
    if Path("~/tok.json").expanduser().exists():
        pytest.skip("the nodes' home folder holds a tok.json: the path would not be the driver's alone")
    home = tmp_path / "driver-home"
    home.mkdir()
    (home / "tok.json").write_text("{}")
    with contextlib.suppress(Exception):
        s3_server.client().create_bucket(Bucket=OUTPUTS)
    folder = tmp_path / "driver"
    folder.mkdir()
    command = [sys.executable, "-m", "goldfish_prep_cli", "mask", corpus_url, "-o", f"s3://{OUTPUTS}/unseen", *OPTIONS]
    command += ["--tokenizer", "~/tok.json", "--ray-address", cluster.address]
    done = subprocess.run(command, cwd=folder, env={**cluster.env, "HOME": str(home)}, capture_output=True, text=True, timeout=240)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 1 and lines[-1].startswith("Error: a Ray task on node "), lines
    assert "does not see ~/tok.json, a path on the driver's machine" in lines[-1] and "--tokenizer as an encoding name" in lines[-1]
    assert not any(line.startswith("Traceback") for line in lines), lines
    assert objects(s3_server, "unseen", bucket=OUTPUTS) == {}  # refused before anything was written
