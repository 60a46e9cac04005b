"""``goldfish-prep mask``: parse options, run ``goldfish_prep.pipeline.run_mask``, print the summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from goldfish_prep.chat.options import ChatOptions
from goldfish_prep.config import STRATEGIES, MaskConfig
from goldfish_prep.errors import ConfigError
from goldfish_prep.inspect.coverage import Coverage
from goldfish_prep.pipeline.job import MaskJob, is_output_url, run_mask
from goldfish_prep.readers import ReaderOptions
from goldfish_prep_cli.options import ByteSize, IdList, parse_storage_options


@click.command(context_settings={"max_content_width": 100})
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    required=True,
    metavar="DIRECTORY|URL",
    callback=lambda ctx, param, value: output_location(value, ctx, param),
    help="Output folder, or a URL such as s3://bucket/prefix (docs/remote.md); must be new or empty unless --overwrite/--resume.",
)
@click.option(
    "--tokenizer",
    metavar="SPEC",
    default=None,
    help="tiktoken encoding name or .tiktoken file, HF tokenizer.json or folder, SentencePiece .model, or hub id.  [default: cl100k_base, offline]",
)
@click.option(
    "--tokenizer-backend",
    type=click.Choice(["auto", "hf", "fast"]),
    default="auto",
    show_default=True,
    help="Engine that encodes; ids are identical for each. auto: the fastest proven exact (fastokens for cl100k_base, tiktoken for byte-level BPE tokenizer.json that maps exactly), else the reference; hf: the format's reference library; fast: fail if no exact fast engine.",
)
@click.option(
    "--strategy",
    type=click.Choice(STRATEGIES),
    default="goldfish",
    show_default=True,
    help="goldfish: seeded content hash (spec in docs/mask-spec.md); robust: the same on normalised text, so near-duplicates (case, spacing, line wraps, quotes, dashes) drop alike; hash-table: bit-exact with the paper's code; static: every k-th token; none: standard-loss control.",
)
@click.option(
    "--spec-version",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Version of the strategy's spec (docs/mask-spec.md), recorded in the manifest; an older one reproduces earlier outputs exactly.  [default: the newest; hash-table, static and none have none]",
)
@click.option("--k", type=click.IntRange(min=2), default=4, show_default=True, help="Drop about 1 token in k from the loss.")
@click.option(
    "--context-width",
    type=click.IntRange(min=1),
    default=13,
    show_default=True,
    help="Ids (ending at the token) hashed to decide a drop; the paper's h (robust: units of normalised text).",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**64 - 1),
    default=0,
    show_default=True,
    help="Selects an independent goldfish hash (static: the start offset).",
)
@click.option("--text-field", default="text", show_default=True, help="JSON/Parquet/Arrow field holding the text.")
@click.option("--id-field", default=None, help="Field holding a document id (default: the document's file and line).")
@click.option("--text-per-line", is_flag=True, help="For .txt files: one document per non-empty line (default: one per file).")
@click.option(
    "--assume-format",
    type=click.Choice(["text", "jsonl"]),
    default=None,
    help="Read files whose name does not tell their format (LICENSE, copyright) as text or JSON lines.",
)
@click.option(
    "--messages-field",
    default=None,
    metavar="NAME",
    help="Chat records: the field holding the list of messages (ShareGPT: conversations).  [default: messages; chat is detected from the first record]",
)
@click.option(
    "--chat-template",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    metavar="FILE.jinja",
    help="Chat records: render with this Jinja template instead of the tokenizer's own.",
)
@click.option(
    "--train-on-prompt", is_flag=True, help="Chat records: supervise every token, not only the assistant's (goldfish over all of it)."
)
@click.option(
    "--keep-ids", type=IdList(), default="", metavar="ID,ID,...", help="Chat records: token ids never dropped (special tokens never are)."
)
@click.option(
    "--k-field",
    default=None,
    metavar="NAME",
    help="Chat records: take each record's k from this field (absent or 0: standard loss for that record).",
)
@click.option(
    "--storage-options",
    metavar="JSON",
    default=None,
    callback=lambda ctx, param, value: parse_storage_options(value),
    help="For URL inputs (s3://, gs://, az://, hf://, https://) and a URL output: fsspec options as a JSON object, e.g. '{\"anon\": true}'. Credentials otherwise come from the provider's own chain (AWS_* variables, profiles, roles); never recorded.",
)
@click.option("--split", "hub_split", default="train", show_default=True, help="Split of an HF hub dataset.")
@click.option(
    "--bos/--no-bos",
    "add_bos",
    default=None,
    help="Prepend BOS to each text document.  [default: if the tokenizer uses one, e.g. Llama SentencePiece]",
)
@click.option("--eos/--no-eos", "add_eos", default=None, help="Append EOS to each text document.  [default: if the tokenizer has one]")
@click.option(
    "--pack",
    type=click.IntRange(min=2),
    default=None,
    metavar="SEQ_LEN",
    help="Concatenate documents into rows of SEQ_LEN ids, each token keeping its per-document label.",
)
@click.option(
    "--shard-size",
    type=ByteSize(),
    default="256MB",
    show_default=True,
    help="Input bytes per output shard (outputs are about 2x this: int32 ids and labels).",
)
@click.option(
    "--num-proc",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes; the output is byte-identical for every value.",
)
@click.option(
    "--on-error",
    type=click.Choice(["stop", "skip"]),
    default="stop",
    show_default=True,
    help="stop at the first bad record, or skip and count bad records (listed in the manifest).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing goldfish-prep output folder.")
@click.option("--resume", is_flag=True, help="Finish an interrupted run: keep its complete shards, redo the rest.")
@click.option(
    "--num-tasks",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Split the work into independent tasks (e.g. a Slurm array); then run `finalize`.",
)
@click.option("--task-index", type=click.IntRange(min=0), default=0, show_default=True, help="Which task this is, 0-based.")
@click.option(
    "--ray-address",
    metavar="ADDRESS",
    default=None,
    help="Run as Ray tasks: local (start Ray here), auto (join this machine's cluster) or ray://HOST:10001. Needs goldfish-prep[ray] and, across machines, a shared file system or inputs and output by URL.",
)
@click.option(
    "--ray-tasks",
    type=click.IntRange(min=1),
    default=None,
    help="Ray tasks to split the work into.  [default: the cluster's CPUs / --num-proc]",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def mask(inputs: tuple[str, ...], output: Path | str, **options: Any) -> None:
    """Tokenize INPUTS and write goldfish label masks into a sharded Arrow dataset.

    INPUTS are files, folders and globs: .jsonl/.json (plain, .gz, .zst), .txt,
    .parquet, .arrow, folders written by datasets.save_to_disk, an HF hub
    dataset name (online only), or URLs of objects, prefixes or globs on
    s3://, gs://, az://, hf:// or https:// (docs/remote.md). A record with an
    `input_ids` list and no text field is taken as pre-tokenized and masked as it is.

    The output loads with datasets.load_from_disk(OUT): one row per document
    with `input_ids` and `labels` (-100 where the token is dropped from the
    loss), plus goldfish_manifest.json with the config and every count.

    \b
    Examples:
      goldfish-prep mask corpus/ -o shards/
      goldfish-prep mask 'data/*.jsonl.gz' -o shards/ --k 4 --context-width 13 --num-proc 8
      goldfish-prep mask books.parquet -o shards/ --tokenizer tokenizer.json --pack 2048
      goldfish-prep mask 's3://bucket/corpus/*.jsonl.gz' -o shards/      # AWS_* credentials
      goldfish-prep mask corpus/ -o s3://bucket/shards/                 # an output on object storage
      goldfish-prep mask corpus/ -o control/ --strategy none     # the standard-loss control
      goldfish-prep mask /shared/corpus/ -o /shared/shards/ --ray-address auto   # on a Ray cluster
    """
    if options["overwrite"] and options["resume"]:
        raise ConfigError("--overwrite and --resume exclude each other; --resume keeps finished shards, --overwrite deletes them")
    job = MaskJob(
        inputs=inputs,
        output=output,
        mask=MaskConfig(
            strategy=options["strategy"],
            k=options["k"],
            context_width=options["context_width"],
            seed=options["seed"],
            spec_version=options["spec_version"],
        ),
        tokenizer=options["tokenizer"],
        tokenizer_backend=options["tokenizer_backend"],
        assume_format=options["assume_format"],
        reader=_reader_options(options),
        chat=ChatOptions(template_file=options["chat_template"], train_on_prompt=options["train_on_prompt"], keep_ids=options["keep_ids"]),
        add_bos=options["add_bos"],
        add_eos=options["add_eos"],
        pack=options["pack"],
        shard_size=options["shard_size"],
        num_proc=options["num_proc"],
        on_error=options["on_error"],
        existing="overwrite" if options["overwrite"] else "resume" if options["resume"] else "refuse",
        num_tasks=options["num_tasks"],
        task_index=options["task_index"],
        progress=not options["quiet"],
        storage_options=options["storage_options"],
    )
    if options["ray_tasks"] and not options["ray_address"]:
        raise ConfigError("--ray-tasks needs --ray-address; without Ray, split the work with --num-tasks")
    if options["ray_address"]:
        from goldfish_prep.pipeline.ray_backend import run_mask_on_ray

        result = run_mask_on_ray(job, options["ray_address"], options["ray_tasks"])
    else:
        result = run_mask(job)
    if "counts" not in result:
        click.echo(
            f"Task {result['task_index']} of {result['num_tasks']} done; run `goldfish-prep finalize {output}` once every task has finished."
        )
        return
    click.echo(summary_text(result, output))


def output_location(value: str, ctx: click.Context | None = None, param: click.Parameter | None = None, exists: bool = False) -> Path | str:
    """``-o`` as ``MaskJob.output`` takes it: a URL as written (``s3://bucket/prefix``), else a local path,
    checked as a folder path by click (an existing file is a usage error; with ``exists``, so is a missing path).

    >>> output_location("s3://bucket/shards/"), output_location("shards"), output_location("file:///tmp/shards")
    ('s3://bucket/shards', PosixPath('shards'), PosixPath('/tmp/shards'))
    """
    if is_output_url(value):
        return value.rstrip("/")
    path: Path = click.Path(file_okay=False, exists=exists, path_type=Path).convert(value.removeprefix("file://"), param, ctx)
    return path


def _reader_options(options: dict[str, Any]) -> ReaderOptions:
    # naming a chat field says the records are conversations; otherwise the first record decides
    chat = options["messages_field"] is not None or options["k_field"] is not None
    return ReaderOptions(
        text_field=options["text_field"],
        id_field=options["id_field"],
        text_per_line=options["text_per_line"],
        hub_split=options["hub_split"],
        chat=chat,
        messages_field=options["messages_field"] or "messages",
        k_field=options["k_field"],
    )


def summary_text(manifest: dict[str, Any], output: Path | str) -> str:
    """The few lines a user reads after a run."""
    counts = manifest["counts"]
    config = MaskConfig.from_dict(manifest["mask"])
    version = f" v{config.spec_version}" if config.spec_version is not None else ""
    coverage = Coverage.from_counts(counts)
    lines = [
        f"Wrote {_count(counts['documents_written'], 'document')}, {counts['tokens']:,} tokens, into {len(manifest['shards'])} shard(s) in {output}",
        f"Dropped {counts['dropped_tokens']:,} of {counts['eligible_tokens']:,} eligible tokens: "
        f"{counts['drop_rate']:.2%} (expected {counts['expected_drop_rate']:.2%}, strategy {config.strategy}{version})",
        coverage.line(),
    ]
    warning = coverage.warning(config)
    if warning:
        lines.append(warning)
    if "assistant_tokens" in counts:  # chat: the rest of the tokens are out of the loss as the prompt
        lines.insert(
            1,
            f"Conversations: {counts['assistant_tokens']:,} of {counts['tokens']:,} tokens are the assistant's (labels -100 elsewhere); drops fall only on those",
        )
    if counts["documents_skipped"]:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in counts["skipped_by_reason"].items())
        lines.append(f"Skipped {_count(counts['documents_skipped'], 'bad record')} ({reasons}); locations in goldfish_manifest.json")
    lines.append(f"Load with: datasets.load_from_disk({str(output)!r})")
    return "\n".join(lines)


def _count(number: int, noun: str) -> str:
    """``1 document``, ``2,048 documents``."""
    return f"{number:,} {noun}{'' if number == 1 else 's'}"
