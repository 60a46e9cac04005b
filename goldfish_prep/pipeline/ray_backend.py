"""Run ``mask`` on a Ray cluster when one machine is not enough.

The design reuses task sharding instead of adding a second way to cut the
work: N Ray tasks each run the ordinary pipeline as task ``i`` of ``N``
(``--num-tasks N --task-index i``), then one more task finalizes. Shard
boundaries, shard contents and the manifest therefore come from the same code
as a single-process run, and the output is byte-identical to it. Ray only
schedules, retries a task whose worker died (the retry resumes that task's
finished shards) and reports errors.

The tokenizer is loaded once per Ray worker process: ``load_tokenizer`` is
cached per process and Ray reuses its workers across tasks.

A task needs nothing of the driver's disk when the inputs and the output are
URLs (``s3://...``) and the tokenizer is an encoding name (``cl100k_base``) or a
hub id: it then runs in a temporary folder of its own on its node (removed when
it ends), reads the inputs from the store and uploads each shard straight under
its final name (``UrlFolder``: no local staging, no rename), so the nodes need
no shared disk. Their tokenizer-analysis cache (``tokenizers.cache``) is each
node's own and only saves time. Local paths (inputs, ``-o``, a tokenizer file
or folder) are the driver's: every node must see them at the same paths (a
shared file system); relative ones are taken from the driver's working folder.
A task on a node that does not see one stops the run with one ``Error:`` line
saying so, rather than a confusing "no such file". With a ``ray://`` client,
pass absolute paths as the cluster sees them. The job's storage options travel
with it to every task; credentials from the environment (or an instance role)
must be set on every node.
Ray is an optional dependency (``pip install 'goldfish-prep[ray]'``), imported
only here and only when a Ray address is given.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from tqdm import tqdm

from goldfish_prep.errors import ConfigError, GoldfishError
from goldfish_prep.format.lock import RAY_DRIVER_LOCK, WRITER_LOCK
from goldfish_prep.pipeline.job import MaskJob, output_folder, run_mask
from goldfish_prep.pipeline.tasks import finalize_tasks
from goldfish_prep.readers.remote import use_storage_options
from goldfish_prep.readers.resolve import names_local_files
from goldfish_prep.tokenizers.tiktoken_adapter import is_tiktoken_name

#: accepted by ``--ray-address`` besides ``ray://host:port`` and ``host:port``
ADDRESS_WORDS = ("auto", "local")


def run_mask_on_ray(job: MaskJob, address: str, num_tasks: int | None = None) -> dict[str, Any]:
    """Run ``job`` as ``num_tasks`` Ray tasks (default: the cluster's CPUs / ``num_proc``); return the manifest.

    ``address``: ``local`` starts a Ray instance on this machine for the run, ``auto``
    joins the cluster this machine belongs to, ``ray://host:10001`` connects a client.
    If this process already called ``ray.init``, that connection is used as it is.

    >>> run_mask_on_ray(MaskJob(("corpus/",), Path("out")), "local", num_tasks=0)
    Traceback (most recent call last):
    ...
    goldfish_prep.errors.ConfigError: --ray-tasks must be at least 1, got 0
    """
    if job.num_tasks != 1:
        raise ConfigError("--ray-address splits the work into tasks itself; drop --num-tasks and --task-index")
    if num_tasks is not None and num_tasks < 1:
        raise ConfigError(f"--ray-tasks must be at least 1, got {num_tasks}")
    ray = _import_ray()
    with _connected(ray, address):
        tasks = num_tasks or max(1, int(ray.cluster_resources().get("CPU", 1)) // job.num_proc)
        disk = driver_disk(job)
        check = ray.remote(_check_output).options(num_cpus=0)
        _get(ray, [check.remote(job.output, job.existing, disk, job.storage_options)])
        base = dataclasses.replace(job, num_tasks=tasks, progress=False, existing="resume" if job.existing == "refuse" else job.existing)
        run_task = ray.remote(_run_task).options(num_cpus=job.num_proc)
        # the driver's locks (format/lock.py): its own, for the whole run (a second driver refuses), and
        # writer.lock shared while the tasks run (a plain run refuses; the tasks take it shared too);
        # let go before finalize, which takes writer.lock exclusively
        # (a ray:// client's paths are the cluster's, not this machine's: it holds nothing, its tasks do;
        # a URL output is the same store everywhere: the driver holds its lock object)
        use_storage_options(job.storage_options)
        of_job = _of_job()  # names this driver's lock object (no owner at all without it: "ray driver" is any driver's)
        folder = output_folder(job.output, f"ray driver{of_job}" if of_job else None)
        client = address.startswith("ray://") and isinstance(job.output, Path)
        with nullcontext() if client else folder.holding(RAY_DRIVER_LOCK, quiet=not job.progress):
            with nullcontext() if client else folder.holding(WRITER_LOCK, shared=True):
                refs = [run_task.remote(dataclasses.replace(base, task_index=index), disk) for index in range(tasks)]
                _get(ray, refs, progress=job.progress)
            finish = ray.remote(_finalize).options(num_cpus=0)
            manifest: dict[str, Any] = _get(ray, [finish.remote(job.output, disk, job.storage_options)])[0]
        return manifest


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "--ray-address needs the Python package 'ray', which is not installed. "
            "Fix: pip install 'goldfish-prep[ray]', or run without --ray-address (or split the run with --num-tasks)"
        ) from exc
    return ray


@contextmanager
def _connected(ray: Any, address: str) -> Iterator[None]:
    """Connect for the run (and disconnect after), unless this process is already connected."""
    if ray.is_initialized():
        yield
        return
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        hint = ""
        if address.startswith("ray://") and "timeout" in str(exc).lower():
            # Ray >= 2.59 turns token authentication on for clusters started by `ray start`; a client
            # without the token is not refused, its connection just times out
            hint = " If the cluster uses token authentication, set RAY_AUTH_MODE=token (and RAY_AUTH_TOKEN unless the token is in ~/.ray/auth_token) for this command."
        raise ConfigError(
            f"cannot connect to Ray at {address!r} ({exc}); pass --ray-address local to start Ray on this "
            f"machine, auto to join a running cluster (`ray start --head` first), or ray://HOST:10001.{hint}"
        ) from exc
    try:
        yield
    finally:
        ray.shutdown()


def _get(ray: Any, refs: list[Any], progress: bool = False) -> list[Any]:
    """Results in order; a task's ``GoldfishError`` is raised as itself (one ``Error:`` line), the rest cancelled."""
    pending = list(refs)
    bar = tqdm(total=len(refs), unit=" tasks", desc="ray", disable=not progress, file=sys.stderr)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            ray.get(done)  # raises the task's error at once, not after the slowest task
            bar.update(1)
    except BaseException as exc:  # an error in a task, or Ctrl-C here: stop the tasks still running
        for ref in pending:
            ray.cancel(ref)
        cause = getattr(exc, "cause", None)
        if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(cause, GoldfishError):
            raise cause from None
        raise
    finally:
        bar.close()
    return list(ray.get(refs))


@dataclasses.dataclass(frozen=True)
class DriverDisk:
    """What a task may need of the driver's machine: its working folder and the job's local paths."""

    #: the driver's working folder, where relative paths start
    cwd: str
    #: the inputs and the tokenizer file or folder the job names that are paths on the driver's disk
    paths: tuple[str, ...]
    #: whether ``-o`` is a local folder (then the nodes must share the driver's file system)
    local_output: bool


def driver_disk(job: MaskJob) -> DriverDisk:
    """The local paths ``job`` names, as the driver sees them (none when inputs and output are URLs).

    >>> driver_disk(MaskJob(("s3://corpus/*.jsonl.gz",), "s3://shards/run1")).paths
    ()
    """
    paths = [spec for spec in job.inputs if names_local_files(spec)]
    if job.tokenizer is not None and not is_tiktoken_name(job.tokenizer) and os.path.exists(os.path.expanduser(job.tokenizer)):
        paths.append(job.tokenizer)
    return DriverDisk(os.getcwd(), tuple(paths), isinstance(job.output, Path))


@contextmanager
def _working_folder(disk: DriverDisk) -> Iterator[None]:
    """Where a task runs: a temporary folder of its own when the job names no local path, else the driver's
    working folder (when this node sees it), after checking that this node sees every local path the job names."""
    previous = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="goldfish-prep-ray-") as own:
        needs_driver = bool(disk.paths) or disk.local_output
        os.chdir(disk.cwd if needs_driver and os.path.isdir(disk.cwd) else own)
        try:
            for path in disk.paths:
                if not names_local_files(path):
                    raise ConfigError(_unseen(path, disk.cwd))
            yield
        finally:
            os.chdir(previous)


def _unseen(path: str, cwd: str) -> str:
    where = f" (relative to the driver's working folder {cwd})" if not os.path.isabs(os.path.expanduser(path)) else ""
    return (
        f"a Ray task on node {_node_address()} does not see {path}{where}, a path on the driver's machine: with "
        "--ray-address every node must see the inputs, -o and --tokenizer at the same paths. Fix: mount a shared file "
        "system at the same path on every node, or, on a cluster without one, give the inputs and -o as URLs (s3://...) "
        "and --tokenizer as an encoding name (cl100k_base) or a hub id (owner/name, in every node's Hugging Face cache "
        "or downloadable there)"
    )


def _node_address() -> str:
    try:
        from ray.util import get_node_ip_address

        address: Any = get_node_ip_address  # untyped in Ray
        return str(address())
    except Exception:  # the name is only for the message
        return socket.gethostname()


def _check_output(output: Path | str, existing: str, disk: DriverDisk, storage_options: dict[str, Any] | None) -> None:
    """The single-run rule, checked once before any task starts: a new or empty folder unless told otherwise."""
    with _working_folder(disk):
        if existing == "refuse":
            use_storage_options(storage_options)
            output_folder(output).refuse_unless_empty()  # the same rule, and words, as a plain run's


def _attempt_owner() -> str:
    """The same for every attempt of this Ray task (Ray keeps a task's id when it retries it after its worker
    died): a URL output's lock object left by a dead attempt is taken over by the next (locally, flock frees it)."""
    import ray

    return f"ray task {ray.get_runtime_context().get_task_id()}{_of_job()}"


def _of_job() -> str:
    """`` of job ID started MS``: the job in the cluster's job table, so that a later run on the same cluster can
    tell that this job ended (its driver died) and take its lock objects over (``object_lock.ray_job_ended``).

    The job table is read with Ray's private ``ray._private.state.jobs()``, as there: its public equivalents
    need the dashboard, which a minimal Ray install or ``--include-dashboard=false`` has not (that docstring)."""
    import ray

    job = ray.get_runtime_context().get_job_id()
    try:
        from ray._private import state

        listing: Any = state.jobs  # untyped in Ray
        started = next(entry["StartTime"] for entry in listing() if entry.get("JobID") == job)
    except Exception:  # an API Ray may move, or the job not listed yet: the owner then names no job
        return ""
    return f" of job {job} started {started}"


def _run_task(job: MaskJob, disk: DriverDisk) -> dict[str, Any]:
    with _working_folder(disk):
        return run_mask(dataclasses.replace(job, lock_owner=_attempt_owner()))


def _finalize(output: Path | str, disk: DriverDisk, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    with _working_folder(disk):
        use_storage_options(storage_options)
        return finalize_tasks(output_folder(output, _attempt_owner()))
