"""Export shards to flat binary files, the input of nanoGPT-style training loops.

Such loops read one long array of token ids by ``np.memmap`` and cut random
windows from it. ``export_bin`` writes, for an output prefix ``OUT``:

- ``OUT.bin``: every token id, documents end to end in shard order (padding of
  packed rows left out), as ``uint16`` when the vocabulary fits (nanoGPT's own
  format) else ``uint32``;
- ``OUT.mask.bin``: one ``uint8`` per token, 1 where the token is in the loss
  (its label is its id), 0 where the goldfish mask dropped it (label -100);
- ``OUT.json``: which dtype, the counts, and the tokenizer and mask config.

A loop then sets ``y[mask[i+1 : i+1+T] == 0] = -100`` on its targets
``y = ids[i+1 : i+1+T]`` (recipe in docs/training.md). No torch here.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from goldfish_prep.format.columns import real_token_mask
from goldfish_prep.format.manifest import load_manifest
from goldfish_prep.format.names import IGNORE_INDEX
from goldfish_prep.format.reader import iter_shards
from goldfish_prep.errors import InputError, OutputError


@dataclasses.dataclass(frozen=True)
class BinExport:
    tokens_path: Path
    mask_path: Path
    meta_path: Path
    dtype: str
    num_tokens: int
    supervised_tokens: int


def export_paths(out_prefix: str | Path) -> tuple[Path, Path, Path]:
    """(ids, mask, metadata) paths of an output prefix.

    >>> [p.name for p in export_paths("data/train")]
    ['train.bin', 'train.mask.bin', 'train.json']
    """
    prefix = Path(out_prefix)
    return prefix.with_name(prefix.name + ".bin"), prefix.with_name(prefix.name + ".mask.bin"), prefix.with_name(prefix.name + ".json")


def token_dtype(vocab_size: int) -> np.dtype[Any]:
    """uint16 when every id fits in 16 bits (GPT-2's 50257, Llama-2's 32000), else uint32.

    >>> str(token_dtype(50257)), str(token_dtype(100277))
    ('uint16', 'uint32')
    """
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def export_bin(folder: str | Path, out_prefix: str | Path, overwrite: bool = False) -> BinExport:
    """Write ``OUT.bin``, ``OUT.mask.bin`` and ``OUT.json`` for the shards in ``folder`` (see module docstring)."""
    manifest = load_manifest(folder).raw
    tokens_path, mask_path, meta_path = export_paths(out_prefix)
    existing = [p for p in (tokens_path, mask_path, meta_path) if p.exists()]
    if existing and not overwrite:
        raise OutputError(f"{existing[0]} already exists; pass --overwrite to replace it, or choose another -o prefix")
    tokens_path.parent.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(int(manifest["tokenizer"]["vocab_size"]))
    partial_tokens, partial_mask = _partial(tokens_path), _partial(mask_path)
    try:
        with open(partial_tokens, "wb") as ids_out, open(partial_mask, "wb") as mask_out:
            num_tokens, supervised = _write_streams(folder, dtype, ids_out, mask_out)
        os.replace(partial_tokens, tokens_path)
        os.replace(partial_mask, mask_path)
    finally:
        for path in (partial_tokens, partial_mask):
            path.unlink(missing_ok=True)
    meta = _metadata(manifest, folder, tokens_path, mask_path, dtype, num_tokens, supervised)
    partial_meta = _partial(meta_path)
    partial_meta.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(partial_meta, meta_path)  # written last: its presence means the export is complete
    return BinExport(tokens_path, mask_path, meta_path, str(dtype), num_tokens, supervised)


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def _write_streams(folder: str | Path, dtype: np.dtype[Any], ids_out: BinaryIO, mask_out: BinaryIO) -> tuple[int, int]:
    """Append each shard's non-padding ids and keep-mask; return (tokens, supervised tokens)."""
    num_tokens = supervised = 0
    for path, table in iter_shards(folder, ["input_ids", "labels", "num_tokens"]):
        ids, labels = _real_tokens(table)
        if len(ids) and (int(ids.min()) < 0 or int(ids.max()) > np.iinfo(dtype).max):
            raise InputError(str(path), f"token id {int(ids.max())} does not fit {dtype} (the manifest's vocab_size is too small)", "Recreate the shards with the right --tokenizer", "vocab-mismatch")
        keep = labels != IGNORE_INDEX
        ids_out.write(ids.astype(dtype).tobytes())
        mask_out.write(keep.astype(np.uint8).tobytes())
        num_tokens += len(ids)
        supervised += int(keep.sum())
    return num_tokens, supervised


def _real_tokens(table: pa.Table) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """A shard's ids and labels, flat, without the padding of packed rows (positions past ``num_tokens``)."""
    ids_column = table.column("input_ids").combine_chunks()
    labels_column = table.column("labels").combine_chunks()
    ids = ids_column.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    labels = labels_column.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    real = real_token_mask(ids_column.offsets.to_numpy(), table.column("num_tokens").to_numpy())
    return ids[real], labels[real]


def _metadata(manifest: dict[str, Any], folder: str | Path, tokens: Path, mask: Path, dtype: np.dtype[Any], num_tokens: int, supervised: int) -> dict[str, Any]:
    return {
        "format": "goldfish-prep-bin",
        "format_version": 1,
        "tokens": {"file": tokens.name, "dtype": str(dtype), "count": num_tokens},
        "mask": {"file": mask.name, "dtype": "uint8", "meaning": "1: the token is in the loss; 0: dropped (label -100)"},
        "supervised_tokens": supervised,
        "source": str(folder),
        "tokenizer": manifest["tokenizer"],
        "goldfish": manifest["mask"],
        "layout": manifest.get("layout", {}),
    }
