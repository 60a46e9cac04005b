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

Every node must see the inputs and the output folder at the same paths (a
shared file system), or reach them as URLs (``s3://...``): a task writing to a
URL output uploads each shard straight under its final name (``UrlFolder``),
so nodes need no shared disk and no local staging. Relative paths are taken
from the driver's working folder; with a ``ray://`` client, pass absolute
paths as the cluster sees them. The job's storage options travel with it to
every task; credentials from the environment must be set on every node.
Ray is an optional dependency (``pip install 'goldfish-prep[ray]'``), imported
only here and only when a Ray address is given.
"""

from __future__ import annotations

import dataclasses
import os
import sys
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
        cwd = os.getcwd()
        check = ray.remote(_check_output).options(num_cpus=0)
        _get(ray, [check.remote(job.output, job.existing, cwd, job.storage_options)])
        base = dataclasses.replace(job, num_tasks=tasks, progress=False, existing="resume" if job.existing == "refuse" else job.existing)
        run_task = ray.remote(_run_task).options(num_cpus=job.num_proc)
        # the driver's locks (format/lock.py): its own, for the whole run (a second driver refuses), and
        # writer.lock shared while the tasks run (a plain run refuses; the tasks take it shared too);
        # let go before finalize, which takes writer.lock exclusively
        # (a ray:// client's paths are the cluster's, not this machine's: it holds nothing, its tasks do;
        # a URL output is the same store everywhere: the driver holds its lock object)
        use_storage_options(job.storage_options)
        folder = output_folder(job.output)
        client = address.startswith("ray://") and isinstance(job.output, Path)
        with nullcontext() if client else folder.holding(RAY_DRIVER_LOCK, quiet=not job.progress):
            with nullcontext() if client else folder.holding(WRITER_LOCK, shared=True):
                refs = [run_task.remote(dataclasses.replace(base, task_index=index), cwd) for index in range(tasks)]
                _get(ray, refs, progress=job.progress)
            finish = ray.remote(_finalize).options(num_cpus=0)
            manifest: dict[str, Any] = _get(ray, [finish.remote(job.output, cwd, job.storage_options)])[0]
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


@contextmanager
def _working_folder(cwd: str) -> Iterator[None]:
    """Resolve relative paths as the driver does (when that folder exists on this node)."""
    previous = os.getcwd()
    if os.path.isdir(cwd):
        os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(previous)


def _check_output(output: Path | str, existing: str, cwd: str, storage_options: dict[str, Any] | None) -> None:
    """The single-run rule, checked once before any task starts: a new or empty folder unless told otherwise."""
    with _working_folder(cwd):
        if existing == "refuse":
            use_storage_options(storage_options)
            output_folder(output).refuse_unless_empty()  # the same rule, and words, as a plain run's


def _attempt_owner() -> str:
    """The same for every attempt of this Ray task (Ray keeps a task's id when it retries it after its worker
    died): a URL output's lock object left by a dead attempt is taken over by the next (locally, flock frees it)."""
    import ray

    return f"ray task {ray.get_runtime_context().get_task_id()}"


def _run_task(job: MaskJob, cwd: str) -> dict[str, Any]:
    with _working_folder(cwd):
        return run_mask(dataclasses.replace(job, lock_owner=_attempt_owner()))


def _finalize(output: Path | str, cwd: str, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    with _working_folder(cwd):
        use_storage_options(storage_options)
        return finalize_tasks(output_folder(output, _attempt_owner()))
