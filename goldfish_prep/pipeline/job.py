"""``goldfish-prep mask`` as a library call: read, tokenize, mask, write, account.

The flow a document takes, each step in its own module of this package:
``readers`` (Record) -> ``_plan`` (batches at deterministic places) ->
``_batch`` in worker processes (tokenize + ``mask`` core) -> ``_shard`` (Arrow rows,
optional ``_packing``) -> ``_finish`` (the manifest, written last). Everything that decides
the output bytes is fixed before any worker starts, so the result is identical
for every ``num_proc`` and every split into ``num_tasks``.

The output is a local folder or a URL (``s3://bucket/prefix``, any fsspec
URL): ``output_folder`` picks ``LocalFolder`` or ``UrlFolder``, and everything
after that is the same code (``format.folder`` has the commit protocol each keeps).
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from goldfish_prep import __version__
from goldfish_prep.chat.options import ChatOptions, chat_setup, describe_chat, reads_chat
from goldfish_prep.config import MaskConfig
from goldfish_prep.errors import ConfigError, GoldfishError, InputError, OutputError
from goldfish_prep.format.folder import OutputFolder, Task, run_digest
from goldfish_prep.format.local_folder import LocalFolder
from goldfish_prep.pipeline._batch import BatchContext, mask_batch
from goldfish_prep.pipeline._commits import ShardCommits
from goldfish_prep.pipeline._finish import finalize_output
from goldfish_prep.pipeline._inputs import finished_inputs, resumed_inputs
from goldfish_prep.pipeline._plan import Batch, plan_batches
from goldfish_prep.pipeline._shard import ShardBuilder
from goldfish_prep.pipeline.pool import WorkerPool
from goldfish_prep.readers import InputSnapshot, InputSource, ReaderOptions, ResolvedInputs, iter_records, resolve_inputs
from goldfish_prep.readers.redact import shown_url
from goldfish_prep.readers.remote import is_url, use_storage_options
from goldfish_prep.strategies.robust import start_loading_compiled
from goldfish_prep.tokenizers import DEFAULT_TOKENIZER, Tokenizer, load_tokenizer, resolve_special_tokens
from goldfish_prep.tokenizers.token_bytes import needs_token_bytes

ON_ERROR = ("stop", "skip")
#: reasons that stop a run even under --on-error skip
FATAL_REASONS = frozenset({"hub-unavailable", "remote-unavailable", "remote-denied", "remote-changed"})
EXISTING = ("refuse", "overwrite", "resume")


@dataclasses.dataclass(frozen=True)
class MaskJob:
    """Everything ``mask`` needs. ``shard_size`` is in input bytes per shard (see ``sharding``)."""

    inputs: tuple[str, ...]
    #: a local folder, or a URL string (``s3://bucket/prefix``): see ``output_folder``
    output: Path | str
    mask: MaskConfig = MaskConfig()
    assume_format: str | None = None
    tokenizer: str | None = None
    #: engine choice (``auto``, ``hf``, ``fast``; see ``tokenizers.load``): never changes the ids
    tokenizer_backend: str = "auto"
    reader: ReaderOptions = ReaderOptions()
    add_bos: bool | None = None
    add_eos: bool | None = None
    pack: int | None = None
    shard_size: int = 256 << 20
    num_proc: int = 1
    on_error: str = "stop"
    existing: str = "refuse"
    num_tasks: int = 1
    task_index: int = 0
    progress: bool = True
    chat: ChatOptions = ChatOptions()
    #: fsspec options for URL inputs and a URL output (``readers.remote``); may hold secrets, so never shown or recorded
    storage_options: dict[str, Any] | None = dataclasses.field(default=None, repr=False, compare=False)
    #: a URL output's lock owner: the same for every attempt of one scheduled task (a Ray task id), so that
    #: an attempt takes over the lock object a dead earlier attempt left (``object_lock.ObjectLock``)
    lock_owner: str | None = dataclasses.field(default=None, compare=False)

    @property
    def tokenizer_spec(self) -> str:
        return self.tokenizer or DEFAULT_TOKENIZER

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ConfigError("no inputs given; name at least one file, folder, glob or dataset")
        if self.on_error not in ON_ERROR:
            raise ConfigError(f"on_error must be one of {ON_ERROR}, got {self.on_error!r}")
        if self.existing not in EXISTING:
            raise ConfigError(f"existing must be one of {EXISTING}, got {self.existing!r}")
        if self.pack is not None and self.pack < 2:
            raise ConfigError(f"--pack must be at least 2 tokens, got {self.pack}")
        if self.shard_size < 1 or self.num_proc < 1:
            raise ConfigError("--shard-size and --num-proc must be positive")
        if not 0 <= self.task_index < self.num_tasks:
            raise ConfigError(f"--task-index must be in [0, {self.num_tasks}), got {self.task_index}")


def is_output_url(output: Path | str) -> bool:
    """Whether ``-o`` names a URL (any fsspec scheme but ``file://``) rather than a local folder.

    >>> is_output_url("s3://bucket/shards"), is_output_url("shards/"), is_output_url("file:///tmp/shards")
    (True, False, False)
    """
    return isinstance(output, str) and "://" in output and not output.startswith("file://")


def output_folder(output: Path | str, lock_owner: str | None = None) -> OutputFolder:
    """The folder ``mask`` writes: a ``UrlFolder`` for a URL (made with the run's storage options, so call
    ``use_storage_options`` first; ``lock_owner`` as ``MaskJob`` has it), else the ``LocalFolder`` at the resolved path."""
    if is_output_url(output):
        from goldfish_prep.format.url_folder import UrlFolder  # imports fsspec only when a URL is given

        return UrlFolder(str(output), lock_owner, writing=True)
    return LocalFolder(Path(str(output).removeprefix("file://")).resolve())


def run_mask(job: MaskJob) -> dict[str, Any]:
    """Run the job; return the manifest (or, for one of several tasks, that task's summary)."""
    use_storage_options(job.storage_options)  # for the inputs and a URL output alike
    opened = None if _uses_a_store(job) else _open(job)  # a store is opened once the workers have started
    if needs_token_bytes(job.mask):  # robust: its compiled scan is built before workers fork (strategies.robust)
        start_loading_compiled()
    tokenizer = load_tokenizer(job.tokenizer_spec, job.tokenizer_backend)
    # workers start now: forked ones inherit the tokenizer, spawned ones load it
    # while this process hashes the inputs and prepares the output folder
    warm_up = functools.partial(load_tokenizer, backend=job.tokenizer_backend)
    with WorkerPool(job.num_proc, warm_up=warm_up, argument=job.tokenizer_spec) as pool:
        folder, resolved, job = opened if opened is not None else _open(job)
        return _run(job, folder, resolved, tokenizer, pool)


def _uses_a_store(job: MaskJob) -> bool:
    """Whether the output or an input is a URL. Then the workers start before the output folder and the inputs
    are opened: a store's client (fsspec) runs an I/O thread from its first use on, and a process with a thread
    spawns its workers (``pool.safe_start_method``), which then load the tokenizer again and get their batches
    pickled through pipes instead of shared memory (measured: docs/remote.md, "Speed and memory of a URL output").
    The price is the order of the errors: a tokenizer that cannot be loaded is reported before an input that
    does not exist."""
    return is_output_url(job.output) or any(is_url(str(spec)) for spec in job.inputs)


def _open(job: MaskJob) -> tuple[OutputFolder, ResolvedInputs, MaskJob]:
    """The output folder and the resolved inputs, after the checks that they are apart; the job, with chat
    reading switched on when the inputs hold conversations."""
    folder = output_folder(job.output, job.lock_owner)
    if isinstance(folder, LocalFolder):
        _check_output_not_in_input_folder(folder.path, job.inputs)
    else:
        _check_url_output_not_in_input_prefix(folder.where(), job.inputs)
    resolved = resolve_inputs(job.inputs, job.assume_format)
    if isinstance(folder, LocalFolder):
        _check_output_outside_inputs(folder.path, resolved.sources)
    else:
        _check_url_output_outside_inputs(folder.where(), resolved.sources)
    if not job.reader.chat and reads_chat(job.chat, job.reader, resolved.sources):
        job = dataclasses.replace(job, reader=dataclasses.replace(job.reader, chat=True))
    return folder, resolved, job


def _run(job: MaskJob, folder: OutputFolder, resolved: ResolvedInputs, tokenizer: Tokenizer, pool: WorkerPool) -> dict[str, Any]:
    add_bos, add_eos = resolve_special_tokens(tokenizer, job.add_bos, job.add_eos)
    setup, template = chat_setup(job.chat, tokenizer, job.mask) if job.reader.chat else (None, None)
    vocab_size = tokenizer.vocab_size if job.tokenizer else None
    context = BatchContext(job.tokenizer_spec, add_bos, add_eos, job.mask, vocab_size, job.reader, job.tokenizer_backend, setup)
    snapshots = [InputSnapshot(source) for source in resolved.sources]  # sizes and times at the start
    run = _describe_run(job, snapshots, {**tokenizer.describe(), "add_bos": add_bos, "add_eos": add_eos})
    if setup is not None and template is not None:  # chat: the template, label options and rule decide the bytes too
        run["chat"] = describe_chat(setup, template, job.reader, tokenizer)
        run["k_field"] = job.reader.k_field
    run["ignored_inputs"] = resolved.ignored
    if resolved.ignored and job.progress:
        shown = ", ".join(resolved.ignored[:3]) + (", ..." if len(resolved.ignored) > 3 else "")
        print(f"note: ignoring {len(resolved.ignored)} file(s) of unknown format or hidden in input folders: {shown}", file=sys.stderr)
    existing = "resume" if job.num_tasks > 1 and job.existing == "refuse" else job.existing
    task = Task(job.task_index, job.num_tasks)
    folder.admit(existing)  # a folder that is not ours is refused before the lock's file is made in it
    with folder.writing(task, quiet=not job.progress):  # one writer per folder; refuses at once, before anything is removed
        try:
            return _write(job, folder, task, run, existing, context, snapshots, tokenizer, pool)
        except GoldfishError:  # a failure, not an interrupt (its shards are kept for --resume)
            if folder.put_back():
                print(f"note: the run failed, so the finished output it was replacing is back in {folder.where()}", file=sys.stderr)
            raise


def _write(
    job: MaskJob,
    folder: OutputFolder,
    task: Task,
    run: dict[str, Any],
    existing: str,
    context: BatchContext,
    snapshots: list[InputSnapshot],
    tokenizer: Tokenizer,
    pool: WorkerPool,
) -> dict[str, Any]:
    """Prepare the folder, write this task's shards, then the manifest (or the task's summary)."""
    expected: dict[int, str] = {}
    previous = None
    seen = [snapshot.seen() for snapshot in snapshots]  # a resume keeps only shards made from inputs seen the same
    if existing == "resume":
        previous = folder.previous_run()  # read once: other tasks rewrite run.json as they go
        run["inputs"], expected = resumed_inputs(previous.get("inputs") if previous else None, run["inputs"])
    completed = folder.prepare(run, existing, task, previous, seen)
    pad_id = tokenizer.eos_id if tokenizer.eos_id is not None else 0
    num_shards = _write_shards(job, folder, task, context, snapshots, completed, pad_id, pool)
    # every input has been read: record what was read (the manifest lists it), if it held still
    run["inputs"] = finished_inputs(snapshots, expected)
    folder.write_run(run)
    if task.alone:
        return finalize_output(folder, num_shards)
    # the run it ended with, whole: finalize names the first setting in which the tasks differ
    summary = {"task_index": task.index, "num_tasks": task.count, "num_shards": num_shards, "run_sha256": run_digest(run), "run": run}
    folder.write_task_summary(task, summary)
    return summary


def _write_shards(
    job: MaskJob,
    output: OutputFolder,
    task: Task,
    context: BatchContext,
    snapshots: list[InputSnapshot],
    completed: dict[int, dict[str, Any]],
    pad_id: int,
    pool: WorkerPool,
) -> int:
    """Process this task's unfinished shards in input order; return the total number of shards.

    Every input is read to its end (shards are cut by input bytes), also those of
    skipped shards: so ``snapshots`` always hash whole inputs."""
    sources = [snapshot.source for snapshot in snapshots]
    plan = _Plan(plan_batches(iter_records(sources, job.reader, parse=False, snapshots=snapshots), job.shard_size))
    todo = ((batch, batch.items) for batch in plan if task.owns_shard(batch.shard) and batch.shard not in completed)
    builders: dict[int, ShardBuilder] = {}
    columns = {"chat": context.chat is not None, "k": job.reader.k_field is not None}
    bar = tqdm(unit=" docs", disable=not job.progress, file=sys.stderr, dynamic_ncols=True, desc="mask")
    started, tokens = time.perf_counter(), 0
    commits = ShardCommits(output)  # on a store, a shard's upload overlaps the next shard's work
    try:
        for batch, result in pool.ordered_map(mask_batch, todo, context):
            if result.errors and job.on_error == "stop":
                first = result.errors[0]
                raise first if first.reason in FATAL_REASONS else _with_skip_hint(first)
            fatal = [error for error in result.errors if error.reason in FATAL_REASONS]
            if fatal:  # skipping cannot help: the whole source is out of reach
                raise fatal[0]
            builder = builders.get(batch.shard) or builders.setdefault(
                batch.shard, ShardBuilder(output, batch.shard, job.mask, job.pack, pad_id, **columns)
            )
            builder.add(result)
            if batch.closes_shard:
                commits.commit(builders[batch.shard])
                del builders[batch.shard]  # kept until it is handed over, so that a failure aborts it
            tokens += len(result.ids)
            bar.update(len(result.doc_ids))
            bar.set_postfix_str(f"{tokens / max(time.perf_counter() - started, 1e-9) / 1e6:.2f}M tok/s", refresh=False)
        if plan.num_shards == 0 and task.owns_shard(0) and 0 not in completed:
            commits.commit(ShardBuilder(output, 0, job.mask, job.pack, pad_id, **columns))
        commits.wait()  # every shard and record is on the store before the manifest
        commits.close()
    except BaseException:
        for builder in builders.values():
            builder.abort()
        commits.abandon()  # the commit in flight ends before the clean-up, and before the lock is let go
        # an interrupt can land while a builder is being made or closed, before the dict knows it
        output.remove_unfinished_shards(task)
        raise
    finally:
        bar.close()
    return max(plan.num_shards, 1)


class _Plan:
    """Passes batches through and remembers how many shards the input made."""

    def __init__(self, batches: Iterator[Batch]) -> None:
        self._batches = batches
        self.num_shards = 0

    def __iter__(self) -> Iterator[Batch]:
        for batch in self._batches:
            self.num_shards = batch.shard + 1
            yield batch


def _with_skip_hint(error: InputError) -> InputError:
    fix = (
        f"{error.fix}, or pass --on-error skip to skip and count bad records"
        if error.fix
        else "Pass --on-error skip to skip and count bad records"
    )
    return InputError(error.location, error.cause, fix, error.reason)


def _check_output_not_in_input_folder(output: Path, inputs: tuple[str, ...]) -> None:
    """An output inside an input folder would be read back as input by the next run (--resume included)."""
    for spec in inputs:
        folder = Path(spec)
        if folder.is_dir() and output.is_relative_to(folder.resolve()):
            raise OutputError(f"output folder {output} is inside the input folder {spec}; choose an output folder outside the inputs")


def _check_output_outside_inputs(output: Path, sources: list[InputSource]) -> None:
    for source in sources:
        if not source.local:
            continue
        path = Path(source.path).resolve()
        if output == path or path.is_relative_to(output):
            raise OutputError(f"output folder {output} contains the input {source.path}; choose an output folder outside the inputs")


def _check_url_output_not_in_input_prefix(output: str, inputs: tuple[str, ...]) -> None:
    """The URL form of ``_check_output_not_in_input_folder``: an output below an input prefix would be read back."""
    for spec in inputs:
        if "://" not in spec or any(char in spec for char in "*?["):
            continue
        prefix = shown_url(spec).rstrip("/")
        if output == prefix or output.startswith(prefix + "/"):
            raise OutputError(f"output {output} is inside the input prefix {prefix}; choose an output prefix outside the inputs")


def _check_url_output_outside_inputs(output: str, sources: list[InputSource]) -> None:
    for source in sources:
        if source.path == output or source.path.startswith(output + "/"):
            raise OutputError(f"output {output} contains the input {source.path}; choose an output prefix outside the inputs")


def _describe_run(job: MaskJob, snapshots: list[InputSnapshot], tokenizer: dict[str, Any]) -> dict[str, Any]:
    """Everything that decides the output bytes; ``--resume`` and ``finalize`` compare and reuse it.

    The inputs are described by size and time until they have been read (``_inputs``)."""
    return {
        "tool": {"name": "goldfish-prep", "version": __version__},
        "mask": job.mask.to_dict(),
        "tokenizer": {**tokenizer, "explicit": job.tokenizer is not None},
        "reader": dataclasses.asdict(job.reader),
        "inputs": [snapshot.recorded() for snapshot in snapshots],
        "assume_format": job.assume_format,
        "layout": {"pack": job.pack, "shard_size": job.shard_size},
        "on_error": job.on_error,
    }


def _describe_input(source: InputSource) -> dict[str, Any]:
    """Size and xxh3-128 of a local input read whole (a folder: over its files in order), as the manifest lists it.

    ``mask`` hashes the bytes it parses as it parses them; this reads an input
    again to tell whether it is still the one an output was made from."""
    snapshot = InputSnapshot(source)
    snapshot.hash_whole()
    return snapshot.result()
