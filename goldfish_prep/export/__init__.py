"""Exports of masked shards to the files that pretraining stacks read, with the goldfish mask in each.

One module per format, each written to the reader's own documented layout and
tested by reading the export back with that reader:

- ``nanogpt`` (the default): ``OUT.bin`` ids + ``OUT.mask.bin`` for ``np.memmap`` loops;
- ``olmo``: token-id arrays + ``label_mask_paths`` files for OLMo-core's numpy datasets;
- ``megatron``: ``IndexedDataset`` ``.bin``/``.idx`` of ids, and of the mask with the same index;
- ``parquet``: ``input_ids``, ``attention_mask``, ``labels``, for axolotl and any Parquet reader;
- ``hf``: a ``save_to_disk`` folder of the same columns, for LLaMA-Factory, ms-swift and ``load_from_disk``.

Every export streams shard by shard (``source.iter_documents``: memory of one
shard), is atomic (temporary names, a record written last; folders staged in
``OUT.partial/`` and renamed), deterministic, and records the sha256 of the
source manifest.

>>> sorted(FORMATS)
['hf', 'megatron', 'nanogpt', 'olmo', 'parquet']
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from goldfish_prep.errors import ConfigError, OutputError
from goldfish_prep.export.hf import export_hf
from goldfish_prep.export.megatron import export_megatron
from goldfish_prep.export.nanogpt import export_nanogpt
from goldfish_prep.export.olmo import export_olmo
from goldfish_prep.export.parquet import export_parquet
from goldfish_prep.export.record import Counts, ExportResult
from goldfish_prep.export.source import Source, open_source
from goldfish_prep.format.commit import cannot_write

Exporter = Callable[[Source, Path, bool, "str | None"], ExportResult]

FORMATS: dict[str, Exporter] = {
    "nanogpt": export_nanogpt,
    "olmo": export_olmo,
    "megatron": export_megatron,
    "parquet": export_parquet,
    "hf": export_hf,
}
DEFAULT_FORMAT = "nanogpt"


def export(
    folder: str | Path, out: str | Path, format_name: str = DEFAULT_FORMAT, overwrite: bool = False, dtype: str | None = None
) -> ExportResult:
    """Export the shards in ``folder`` to ``out`` (nanoGPT: a file prefix; other formats: a folder).

    ``dtype`` overrides the token-id type (``None``: the smallest the trainer reads that holds every id).
    Every file is written by the commit protocol, so a failed write (a full disk, a read-only or missing
    folder that cannot be made) leaves no file that looks finished and a previous export intact; it is one ``OutputError``
    saying which file, why and what to do. The source is checked as it is read (``open_shards``).
    """
    if format_name not in FORMATS:
        raise ConfigError(f"unknown export format {format_name!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    source = open_source(folder)
    try:
        return FORMATS[format_name](source, out, overwrite, dtype)
    except OutputError:
        raise
    except OSError as exc:
        raise cannot_write("the export", out, exc) from exc


__all__ = ["DEFAULT_FORMAT", "FORMATS", "Counts", "ExportResult", "export"]
