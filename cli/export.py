"""``goldfish-prep export``: parse options, run ``goldfish_prep.export.export``, print what was written."""

from __future__ import annotations

from pathlib import Path

import click

from goldfish_prep.export import DEFAULT_FORMAT, FORMATS, ExportResult
from goldfish_prep.export import export as run_export
from goldfish_prep.export.names import with_article

from .options import DataFolder, storage_options  # relative: mypy checks this folder as the package `cli`


@click.command(context_settings={"max_content_width": 100})
@click.argument("data_dir", type=DataFolder(exists=True))
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="nanogpt: output prefix (PREFIX.bin, PREFIX.mask.bin, PREFIX.json); other formats: output folder.",
)
@click.option(
    "--format",
    "format_name",
    type=click.Choice(list(FORMATS)),
    default=DEFAULT_FORMAT,
    show_default=True,
    help="Which trainer's files to write.",
)
@click.option(
    "--dtype",
    default=None,
    metavar="DTYPE",
    help="Token-id type (nanogpt: uint16/uint32; olmo: uint8/16/32/64; megatron: uint16/int32). Default: the smallest the trainer reads that holds every id.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing export at that prefix or folder.")
@storage_options
def export(data_dir: Path | str, out: Path, format_name: str, dtype: str | None, overwrite: bool) -> None:
    """Export shards with their goldfish masks to the files a trainer reads.

    \b
    nanogpt   PREFIX.bin ids, PREFIX.mask.bin (uint8, 1 = in the loss), PREFIX.json
    olmo      token_ids/*.npy + label_mask/*.npy for OLMo-core's label_mask_paths
    megatron  text_document.{bin,idx} + loss_mask_document.{bin,idx} (IndexedDataset)
    parquet   *.parquet with exactly input_ids, attention_mask, labels (axolotl)
    hf        datasets.save_to_disk folder of the same columns and lengths
              (LLaMA-Factory tokenized_path, ms-swift --cached_dataset)

    Folder exports are written to OUT.partial/ and renamed when complete;
    goldfish_export.json (nanogpt: PREFIX.json), written last, records the
    source manifest's sha256. Loading snippets: docs/training.md.

    \b
    Examples:
      goldfish-prep export shards/ -o data/train
      goldfish-prep export shards/ -o olmo-data/ --format olmo
      goldfish-prep export shards/ -o megatron-data/ --format megatron
      goldfish-prep export s3://bucket/shards/ -o data/train    # shards read by URL
    """
    click.echo(_summary(run_export(data_dir, out, format_name, overwrite=overwrite, dtype=dtype)))


def _summary(result: ExportResult) -> str:
    counts = result.counts
    if result.format == "nanogpt":
        tokens, mask = result.files
        return (
            f"Wrote {counts.tokens:,} token ids as {result.dtype} to {tokens}, "
            f"the loss mask ({counts.supervised_tokens:,} supervised) to {mask}, and {result.record_path}"
        )
    return (
        f"Wrote {with_article(result.format)} export of {counts.documents:,} documents, {counts.tokens:,} token ids as {result.dtype} "
        f"({counts.supervised_tokens:,} supervised) to {result.out}; record: {result.record_path}"
    )
