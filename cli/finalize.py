"""``goldfish-prep finalize``: parse the folder, run ``goldfish_prep.pipeline.tasks.finalize_tasks``, print the summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from goldfish_prep.pipeline.job import output_folder
from goldfish_prep.pipeline.tasks import finalize_tasks
from goldfish_prep.readers.remote import use_storage_options
from goldfish_prep_cli.mask import output_location, summary_text
from goldfish_prep_cli.options import parse_storage_options


@click.command(context_settings={"max_content_width": 100})
@click.argument("output", metavar="OUTPUT", callback=lambda ctx, param, value: output_location(value, ctx, param, exists=True))
@click.option(
    "--storage-options",
    metavar="JSON",
    default=None,
    callback=lambda ctx, param, value: parse_storage_options(value),
    help="For a URL OUTPUT: fsspec options as a JSON object, as for mask; never recorded.",
)
def finalize(output: Path | str, storage_options: dict[str, Any] | None) -> None:
    """Join the shards written by `mask --num-tasks N --task-index I` runs into one dataset.

    Run it once every task has finished. It checks that all N tasks finished and
    agree, then writes state.json, dataset_info.json and goldfish_manifest.json
    into OUTPUT (a folder, or the URL the tasks wrote to, such as
    s3://bucket/shards): byte for byte what a single `mask` run over the same
    inputs writes. It refuses, naming the unfinished tasks, while any is missing.

    \b
    Examples:
      # a Slurm array of 16 tasks, then one finishing step
      goldfish-prep mask 'data/*.jsonl.zst' -o shards/ --num-tasks 16 --task-index $SLURM_ARRAY_TASK_ID
      goldfish-prep finalize shards/
      # the same on one machine, tasks in any order
      for i in 2 0 1; do goldfish-prep mask corpus/ -o shards/ --num-tasks 3 --task-index $i; done
      goldfish-prep finalize shards/
      # tasks that wrote to object storage (AWS_* credentials)
      goldfish-prep finalize s3://bucket/shards
    """
    use_storage_options(storage_options)
    manifest = finalize_tasks(output_folder(output))
    click.echo(summary_text(manifest, output))
