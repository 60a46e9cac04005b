"""``goldfish-prep finalize``: parse the folder, run ``goldfish_prep.pipeline.tasks.finalize_tasks``, print the summary."""

from __future__ import annotations

from pathlib import Path

import click

from goldfish_prep.pipeline.tasks import finalize_tasks
from goldfish_prep_cli.mask import summary_text


@click.command(context_settings={"max_content_width": 100})
@click.argument("output", type=click.Path(exists=True, file_okay=False, path_type=Path))
def finalize(output: Path) -> None:
    """Join the shards written by `mask --num-tasks N --task-index I` runs into one dataset.

    Run it once every task has finished. It checks that all N tasks finished and
    agree, then writes state.json, dataset_info.json and goldfish_manifest.json
    into OUTPUT: byte for byte what a single `mask` run over the same inputs
    writes. It refuses, naming the unfinished tasks, while any is missing.

    \b
    Examples:
      # a Slurm array of 16 tasks, then one finishing step
      goldfish-prep mask 'data/*.jsonl.zst' -o shards/ --num-tasks 16 --task-index $SLURM_ARRAY_TASK_ID
      goldfish-prep finalize shards/
      # the same on one machine, tasks in any order
      for i in 2 0 1; do goldfish-prep mask corpus/ -o shards/ --num-tasks 3 --task-index $i; done
      goldfish-prep finalize shards/
    """
    manifest = finalize_tasks(output)
    click.echo(summary_text(manifest, output))
