"""Megatron-LM: an indexed dataset of token ids, and the loss mask as a second one with the same index.

``megatron.core.datasets.indexed_dataset.IndexedDataset(prefix)`` reads
``prefix.bin`` (the items end to end) and ``prefix.idx``, whose layout its
``_IndexWriter`` documents (all little-endian):

==================  =========================================================
``MMIDIDX\\0\\0``     9-byte magic
``<Q`` 1            version
``<B``              dtype code of the items (uint8 1, int32 4, uint16 8)
``<Q`` S            sequence count
``<Q`` D            document count: S + 1 entries of the document index
int32[S]            length of each sequence, in items
int64[S]            byte offset of each sequence in ``.bin``
int64[S + 1]        document index: 0, 1, ..., S (one sequence per document)
==================  =========================================================

The export folder holds ``text_document.{bin,idx}`` (the ids, uint16 up to
65,536 ids else int32: what ``GPTDatasetConfig`` assumes) and
``loss_mask_document.{bin,idx}``: one uint8 per token, 1 = in the loss, with the
same sequence lengths and document index, so any sample Megatron's
``GPTDataset`` cuts from the ids can be cut from the mask at the same place
(docs/training.md shows the few lines). Sequence lengths go to a scratch file
while the ``.bin`` files stream, so memory stays at one shard.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from goldfish_prep.errors import InputError
from goldfish_prep.export.dtypes import token_dtype
from goldfish_prep.export.record import Counts, ExportResult, export_record
from goldfish_prep.export.source import Source, check_ids_fit, iter_documents
from goldfish_prep.format.commit import PendingFile
from goldfish_prep.format.staging import RECORD_NAME, Staging, staged_folder

DTYPES = ("uint16", "int32")
TEXT_PREFIX = "text_document"
MASK_PREFIX = "loss_mask_document"
INDEX_MAGIC = b"MMIDIDX\x00\x00"
DTYPE_CODES = {"uint8": 1, "int32": 4, "uint16": 8}  # megatron.core.datasets.indexed_dataset.DType
_BLOCK = 1 << 20  # sequences per block when the index is assembled


def export_megatron(source: Source, out: Path, overwrite: bool = False, dtype_name: str | None = None) -> ExportResult:
    """Write the Megatron folder described in the module docstring."""
    dtype = token_dtype(source.vocab_size, DTYPES, "megatron", dtype_name)
    with staged_folder(out, overwrite) as stage:
        scratch = "sequence-lengths.int32.scratch"
        with (
            stage.open(f"{TEXT_PREFIX}.bin") as ids_out,
            stage.open(f"{MASK_PREFIX}.bin") as mask_out,
            stage.scratch(scratch) as lengths_out,
        ):
            counts = _write_items(source, dtype, ids_out, mask_out, lengths_out)
        for prefix, item in ((TEXT_PREFIX, dtype), (MASK_PREFIX, np.dtype(np.uint8))):
            _write_index(stage, prefix, item, scratch, counts.documents)
        stage.discard_scratch(scratch)
        layout = {"data_prefix": TEXT_PREFIX, "loss_mask_prefix": MASK_PREFIX, "mask_dtype": "uint8"}
        stage.write_record(export_record(source, "megatron", str(dtype), counts, layout))
    files = tuple(out / f"{prefix}{suffix}" for prefix in (TEXT_PREFIX, MASK_PREFIX) for suffix in (".bin", ".idx"))
    return ExportResult("megatron", out, out / RECORD_NAME, files, str(dtype), counts)


def _write_items(source: Source, dtype: np.dtype[Any], ids_out: PendingFile, mask_out: PendingFile, lengths_out: PendingFile) -> Counts:
    """Stream ids and keep flags to the two ``.bin`` files and each document's length to the scratch file."""
    counts = Counts()
    for chunk in iter_documents(source):
        check_ids_fit(chunk, dtype, "Recreate the shards with the right --tokenizer")
        if len(chunk.lengths) and int(chunk.lengths.max()) > np.iinfo(np.int32).max:
            raise InputError(
                str(chunk.shard),
                f"a document of {int(chunk.lengths.max()):,} tokens exceeds Megatron's int32 sequence length",
                "Split the document before masking",
                "too-long",
            )
        ids_out.write(chunk.ids.astype(dtype).tobytes())
        mask_out.write(chunk.keep.astype(np.uint8).tobytes())
        lengths_out.write(chunk.lengths.astype("<i4").tobytes())
        counts.add(len(chunk.lengths), len(chunk.ids), int(chunk.keep.sum()))
    return counts


def _write_index(stage: Staging, prefix: str, item: np.dtype[Any], lengths_name: str, count: int) -> None:
    """``prefix.idx`` for ``count`` one-sequence documents whose lengths are in the scratch file ``lengths_name`` (int32)."""
    name = f"{prefix}.idx"
    with stage.open(name) as out:
        out.write(INDEX_MAGIC + struct.pack("<Q", 1) + struct.pack("<B", DTYPE_CODES[str(item)]))
        out.write(struct.pack("<Q", count) + struct.pack("<Q", count + 1))
        lengths = stage.read_scratch(lengths_name, "<i4") if count else np.zeros(0, "<i4")
        for begin in range(0, count, _BLOCK):
            out.write(lengths[begin : begin + _BLOCK].tobytes())
        offset = 0
        for begin in range(0, count, _BLOCK):  # byte offsets: exclusive running sum of length * itemsize
            block = lengths[begin : begin + _BLOCK].astype(np.int64) * item.itemsize
            ends = np.cumsum(block) + offset
            out.write((ends - block).astype("<i8").tobytes())
            offset = int(ends[-1])
        for begin in range(0, count + 1, _BLOCK):
            out.write(np.arange(begin, min(begin + _BLOCK, count + 1), dtype="<i8").tobytes())
        del lengths
