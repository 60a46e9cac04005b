"""``goldfish-prep mask`` as a library call: read, tokenize, mask, write, account.

The flow a document takes, each step in its own module of this package:
``readers`` (Record) -> ``_plan`` (batches at deterministic places) ->
``_batch`` in worker processes (tokenize + ``mask`` core) -> ``_shard`` (Arrow rows,
optional ``_packing``) -> ``_finish`` (the manifest, written last). Everything that decides
the output bytes is fixed before any worker starts, so the result is identical
for every ``num_proc`` and every split into ``num_tasks``.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import xxhash
from tqdm import tqdm

from goldfish_prep import __version__
from goldfish_prep.atomic import write_json
from goldfish_prep.chat.options import ChatOptions, chat_setup, describe_chat, reads_chat
from goldfish_prep.config import MaskConfig
from goldfish_prep.errors import ConfigError, InputError, OutputError
from goldfish_prep.format.names import PARTIAL_SUFFIX, PROGRESS_DIR, task_filename
from goldfish_prep.pipeline._batch import BatchContext, mask_batch
from goldfish_prep.pipeline._finish import finalize_output
from goldfish_prep.pipeline._output import prepare_output, run_digest, write_shard_record
from goldfish_prep.pipeline._plan import Batch, plan_batches
from goldfish_prep.pipeline._shard import ShardBuilder
from goldfish_prep.pipeline.pool import WorkerPool
from goldfish_prep.readers import InputSource, ReaderOptions, ResolvedInputs, iter_records, resolve_inputs
from goldfish_prep.readers.remote import describe_url, is_url, use_storage_options
from goldfish_prep.tokenizers import DEFAULT_TOKENIZER, Tokenizer, load_tokenizer, resolve_special_tokens

ON_ERROR = ("stop", "skip")
#: reasons that stop a run even under --on-error skip
FATAL_REASONS = frozenset({"hub-unavailable", "remote-unavailable", "remote-denied", "remote-changed"})
EXISTING = ("refuse", "overwrite", "resume")


@dataclasses.dataclass(frozen=True)
class MaskJob:
    """Everything ``mask`` needs. ``shard_size`` is in input bytes per shard (see ``sharding``)."""

    inputs: tuple[str, ...]
    output: Path
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
    #: fsspec options for URL inputs (``readers.remote``); may hold secrets, so never shown or recorded
    storage_options: dict[str, Any] | None = dataclasses.field(default=None, repr=False, compare=False)

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


def run_mask(job: MaskJob) -> dict[str, Any]:
    """Run the job; return the manifest (or, for one of several tasks, that task's summary)."""
    output = job.output.resolve()
    use_storage_options(job.storage_options)
    _check_output_not_in_input_folder(output, job.inputs)
    resolved = resolve_inputs(job.inputs, job.assume_format)
    _check_output_outside_inputs(output, resolved.sources)
    if not job.reader.chat and reads_chat(job.chat, job.reader, resolved.sources):
        job = dataclasses.replace(job, reader=dataclasses.replace(job.reader, chat=True))
    tokenizer = load_tokenizer(job.tokenizer_spec, job.tokenizer_backend)
    # workers start now: forked ones inherit the tokenizer, spawned ones load it
    # while this process hashes the inputs and prepares the output folder
    warm_up = functools.partial(load_tokenizer, backend=job.tokenizer_backend)
    with WorkerPool(job.num_proc, warm_up=warm_up, argument=job.tokenizer_spec) as pool:
        return _run(job, output, resolved, tokenizer, pool)


def _run(job: MaskJob, output: Path, resolved: ResolvedInputs, tokenizer: Tokenizer, pool: WorkerPool) -> dict[str, Any]:
    add_bos, add_eos = resolve_special_tokens(tokenizer, job.add_bos, job.add_eos)
    setup, template = chat_setup(job.chat, tokenizer, job.mask) if job.reader.chat else (None, None)
    vocab_size = tokenizer.vocab_size if job.tokenizer else None
    context = BatchContext(job.tokenizer_spec, add_bos, add_eos, job.mask, vocab_size, job.reader, job.tokenizer_backend, setup)
    run = _describe_run(job, resolved.sources, {**tokenizer.describe(), "add_bos": add_bos, "add_eos": add_eos})
    if setup is not None and template is not None:  # chat: the template, label options and rule decide the bytes too
        run["chat"] = describe_chat(setup, template, job.reader, tokenizer)
        run["k_field"] = job.reader.k_field
    run["ignored_inputs"] = resolved.ignored
    if resolved.ignored and job.progress:
        shown = ", ".join(resolved.ignored[:3]) + (", ..." if len(resolved.ignored) > 3 else "")
        print(f"note: ignoring {len(resolved.ignored)} file(s) of unknown format or hidden in input folders: {shown}", file=sys.stderr)
    existing = "resume" if job.num_tasks > 1 and job.existing == "refuse" else job.existing
    completed = prepare_output(output, run, existing, (job.task_index, job.num_tasks))
    pad_id = tokenizer.eos_id if tokenizer.eos_id is not None else 0
    num_shards = _write_shards(job, output, context, resolved.sources, completed, pad_id, pool)
    if job.num_tasks == 1:
        return finalize_output(output, num_shards)
    summary = {"task_index": job.task_index, "num_tasks": job.num_tasks, "num_shards": num_shards, "run_sha256": run_digest(run)}
    write_json(output / PROGRESS_DIR / task_filename(job.task_index, job.num_tasks), summary)
    return summary


def _write_shards(
    job: MaskJob,
    output: Path,
    context: BatchContext,
    sources: list[InputSource],
    completed: dict[int, dict[str, Any]],
    pad_id: int,
    pool: WorkerPool,
) -> int:
    """Process this task's unfinished shards in input order; return the total number of shards."""
    plan = _Plan(plan_batches(iter_records(sources, job.reader, parse=False), job.shard_size))
    todo = ((batch, batch.items) for batch in plan if batch.shard % job.num_tasks == job.task_index and batch.shard not in completed)
    builders: dict[int, ShardBuilder] = {}
    columns = {"chat": context.chat is not None, "k": job.reader.k_field is not None}
    bar = tqdm(unit=" docs", disable=not job.progress, file=sys.stderr, dynamic_ncols=True, desc="mask")
    started, tokens = time.perf_counter(), 0
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
                write_shard_record(output, builders.pop(batch.shard).close())
            tokens += len(result.ids)
            bar.update(len(result.doc_ids))
            bar.set_postfix_str(f"{tokens / max(time.perf_counter() - started, 1e-9) / 1e6:.2f}M tok/s", refresh=False)
        if plan.num_shards == 0 and job.task_index == 0 and 0 not in completed:
            write_shard_record(output, ShardBuilder(output, 0, job.mask, job.pack, pad_id, **columns).close())
    except BaseException:
        for builder in builders.values():
            builder.abort()
        # an interrupt can land while a builder is being made or closed, before the dict knows it
        for partial in output.glob(f"data-*.arrow{PARTIAL_SUFFIX}"):
            if int(partial.name.split("-")[1].split(".")[0]) % job.num_tasks == job.task_index:
                partial.unlink(missing_ok=True)
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


def _describe_run(job: MaskJob, sources: list[InputSource], tokenizer: dict[str, Any]) -> dict[str, Any]:
    """Everything that decides the output bytes; ``--resume`` and ``finalize`` compare and reuse it."""
    return {
        "tool": {"name": "goldfish-prep", "version": __version__},
        "mask": job.mask.to_dict(),
        "tokenizer": {**tokenizer, "explicit": job.tokenizer is not None},
        "reader": dataclasses.asdict(job.reader),
        "inputs": [_describe_input(source) for source in sources],
        "assume_format": job.assume_format,
        "layout": {"pack": job.pack, "shard_size": job.shard_size},
        "on_error": job.on_error,
    }


def _describe_input(source: InputSource) -> dict[str, Any]:
    """Size and xxh3-128 of a local input (a folder: over its files in order), so a changed input is noticed."""
    if is_url(source.path):
        return describe_url(source)
    if not source.local:
        return {"path": source.path, "kind": source.kind}
    path = Path(source.path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = xxhash.xxh3_128()
    size = 0
    for file in files:
        try:
            with open(file, "rb") as handle:
                while block := handle.read(1 << 22):
                    digest.update(block)
                    size += len(block)
        except OSError as exc:  # the reader reports it as a bad record; the manifest notes it here
            return {"path": source.path, "kind": source.kind, "unreadable": exc.strerror or str(exc)}
    return {"path": source.path, "kind": source.kind, "size": size, "xxh3_128": digest.hexdigest()}
