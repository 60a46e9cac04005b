"""``goldfish-prep export``: parse options, run ``goldfish_prep.export_bin.export_bin``, print what was written."""

from __future__ import annotations

from pathlib import Path

import click

from goldfish_prep.export_bin import export_bin


@click.command(context_settings={"max_content_width": 100})
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", "out_prefix", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output prefix: writes PREFIX.bin, PREFIX.mask.bin and PREFIX.json.")
@click.option("--overwrite", is_flag=True, help="Replace existing files with that prefix.")
def export(data_dir: Path, out_prefix: Path, overwrite: bool) -> None:
    """Export shards to flat .bin token and mask files for nanoGPT-style loops.

    PREFIX.bin holds every token id end to end (uint16 when the vocabulary fits,
    else uint32: PREFIX.json says which); PREFIX.mask.bin one uint8 per token,
    1 where the token is in the loss and 0 where the goldfish mask dropped it.

    \b
    Examples:
      goldfish-prep export shards/ -o data/train
      python -c "import numpy as np; ids = np.memmap('data/train.bin', dtype=np.uint16, mode='r')"
    """
    result = export_bin(data_dir, out_prefix, overwrite=overwrite)
    click.echo(
        f"Wrote {result.num_tokens:,} token ids as {result.dtype} to {result.tokens_path}, "
        f"the loss mask ({result.supervised_tokens:,} supervised) to {result.mask_path}, and {result.meta_path}"
    )
