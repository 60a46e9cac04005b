"""OLMo-core: token-id arrays plus the parallel boolean label masks its numpy datasets read.

OLMo-core's ``NumpyFSLDatasetConfig`` / ``NumpyPaddedFSLDatasetConfig`` take
``paths`` (flat token-id arrays, no header, named ``*.npy`` as the Dolma toolkit
writes them) and ``label_mask_paths``: one ``np.bool_`` per token, in files of the
same length listed in the same order. An instance's ``label_mask`` is sliced from
the same positions as its ``input_ids`` (unshifted, like the shards' labels), and
``olmo_core.data.utils.get_labels`` sets ``-100`` where it is False before it
shifts, so ``label_mask = labels != -100`` is exactly the goldfish loss.

The export folder:

- ``token_ids/part-NNNNN.npy``: ids end to end, dtype as OLMo-core infers from
  the vocabulary (the smallest of uint8/16/32/64 holding ``vocab_size - 1``);
- ``token_ids/part-NNNNN.csv.gz``: ``start,end`` of each document, the metadata
  file OLMo-core reads for boundaries when told not to infer them from EOS ids;
- ``label_mask/part-NNNNN.npy``: one byte per token, 1 = in the loss;
- ``goldfish_export.json``: the record, written last.

One part per shard, holding whole documents (a packed document running into the
next shard goes whole into the next part), so globs over both folders list
matching files in matching order.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np

from goldfish_prep.export.dtypes import token_dtype
from goldfish_prep.export.record import Counts, ExportResult, export_record
from goldfish_prep.export.source import DocumentChunk, Source, check_ids_fit, iter_documents
from goldfish_prep.format.staging import RECORD_NAME, Staging, staged_folder

DTYPES = ("uint8", "uint16", "uint32", "uint64")
TOKENS_DIR = "token_ids"
MASK_DIR = "label_mask"


def part_name(index: int) -> str:
    """The file name of part ``index``, the same in ``token_ids/`` and ``label_mask/``.

    >>> part_name(3)
    'part-00003.npy'
    """
    return f"part-{index:05d}.npy"


def export_olmo(source: Source, out: Path, overwrite: bool = False, dtype_name: str | None = None) -> ExportResult:
    """Write the OLMo-core folder described in the module docstring."""
    dtype = token_dtype(source.vocab_size, DTYPES, "olmo", dtype_name)
    counts = Counts()
    parts: list[dict[str, Any]] = []
    with staged_folder(out, overwrite) as stage:
        for index, chunk in enumerate(iter_documents(source)):
            check_ids_fit(chunk, dtype, "Recreate the shards with the right --tokenizer")
            parts.append(_write_part(stage, part_name(index), chunk, dtype))
            counts.add(len(chunk.lengths), len(chunk.ids), int(chunk.keep.sum()))
        layout = {"token_ids": f"{TOKENS_DIR}/*.npy", "label_mask": f"{MASK_DIR}/*.npy", "parts": parts}
        stage.write_record(export_record(source, "olmo", str(dtype), counts, layout))
    files = [out / TOKENS_DIR / p["file"] for p in parts] + [out / MASK_DIR / p["file"] for p in parts]
    return ExportResult("olmo", out, out / RECORD_NAME, tuple(files), str(dtype), counts)


def _write_part(stage: Staging, name: str, chunk: DocumentChunk, dtype: np.dtype[Any]) -> dict[str, Any]:
    """One part: ids, document boundaries and label mask, each renamed into place once written."""
    tokens, mask, metadata = f"{TOKENS_DIR}/{name}", f"{MASK_DIR}/{name}", f"{TOKENS_DIR}/{name[: -len('.npy')]}.csv.gz"
    with stage.open(tokens) as out:
        out.write(chunk.ids.astype(dtype).tobytes())  # (tokens,) dtype, no header: OLMo-core memory-maps raw arrays
    with stage.open(mask) as out:
        out.write(chunk.keep.astype(np.bool_).tobytes())  # (tokens,) np.bool_, one byte each
    ends = np.cumsum(chunk.lengths)
    rows = "".join(f"{start},{end}\n" for start, end in zip((ends - chunk.lengths).tolist(), ends.tolist()))
    with stage.open(metadata) as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed:
        packed.write(rows.encode("ascii"))  # mtime 0 and no name: the same bytes on every run
    return {"file": name, "tokens": len(chunk.ids), "documents": len(chunk.lengths)}
