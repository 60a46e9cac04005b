"""nanoGPT: flat token and mask files that a training loop reads by ``np.memmap``.

Such loops read one long array of ids and cut random windows from it. For an
output prefix ``OUT`` this writes:

- ``OUT.bin``: every token id, documents end to end in shard order (padding of
  packed rows left out), as ``uint16`` when the vocabulary fits (nanoGPT's own
  format) else ``uint32``;
- ``OUT.mask.bin``: one ``uint8`` per token, 1 where the token is in the loss
  (its label is its id), 0 where the goldfish mask dropped it (label -100).
  These are *keep* flags, the opposite polarity of ``goldfish_mask`` (True =
  dropped); the file keeps the name it had because training loops read it by
  that name (``KEEP_FLAGS_SUFFIX``; docs/training.md says so too);
- ``OUT.json``: which dtype, the counts, the tokenizer and mask config and the
  source manifest's sha256. Written last: its presence means the export is whole.

A loop then sets ``y[mask[i+1 : i+1+T] == 0] = -100`` on its targets
``y = ids[i+1 : i+1+T]`` (recipe in docs/training.md). This is the default
format of ``goldfish-prep export``, so the command of earlier versions writes
the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from goldfish_prep.errors import OutputError
from goldfish_prep.export.dtypes import token_dtype
from goldfish_prep.export.record import Counts, ExportResult
from goldfish_prep.export.source import Source, check_ids_fit, iter_documents
from goldfish_prep.format.commit import PendingFile, fsync_and_rename, fsync_file, json_bytes

DTYPES = ("uint16", "uint32")
#: the keep flags' file (1 = in the loss), named ``.mask.bin`` since the first release: loops read it by that name
KEEP_FLAGS_SUFFIX = ".mask.bin"


def export_paths(out_prefix: str | Path) -> tuple[Path, Path, Path]:
    """(ids, mask, metadata) paths of an output prefix.

    >>> [p.name for p in export_paths("data/train")]
    ['train.bin', 'train.mask.bin', 'train.json']
    """
    prefix = Path(out_prefix)
    return (
        prefix.with_name(prefix.name + ".bin"),
        prefix.with_name(prefix.name + KEEP_FLAGS_SUFFIX),
        prefix.with_name(prefix.name + ".json"),
    )


def export_nanogpt(source: Source, out_prefix: Path, overwrite: bool = False, dtype_name: str | None = None) -> ExportResult:
    """Write ``OUT.bin``, ``OUT.mask.bin`` and, last, ``OUT.json`` (see module docstring)."""
    if Path(out_prefix).is_dir():
        raise OutputError(
            f"{out_prefix} is a folder; nanoGPT exports take a file prefix (PREFIX.bin, PREFIX.mask.bin, PREFIX.json): pass -o {Path(out_prefix) / 'train'}, say"
        )
    tokens_path, mask_path, meta_path = export_paths(out_prefix)
    existing = [p for p in (tokens_path, mask_path, meta_path) if p.exists()]
    if existing and not overwrite:
        raise OutputError(f"{existing[0]} already exists; pass --overwrite to replace it, or choose another -o prefix")
    dtype = token_dtype(source.vocab_size, DTYPES, "nanogpt", dtype_name)
    tokens_path.parent.mkdir(parents=True, exist_ok=True)
    # all three files are written whole under temporary names first, so a failure (a full disk, a damaged
    # shard) leaves a previous export untouched; only then are they renamed, the record last
    pending: list[PendingFile] = []
    try:
        for path in (tokens_path, mask_path, meta_path):
            pending.append(PendingFile(path, hashed=False))
        ids_out, keep_out, meta_out = pending
        counts = _write_streams(source, dtype, ids_out, keep_out)
        meta_out.write(json_bytes(_metadata(source, tokens_path, mask_path, dtype, counts)))
        for out in pending:
            out.close()
            fsync_file(out.temporary)  # durable before anything old is touched
    except BaseException:
        for out in pending:
            out.abort()
        raise
    meta_path.unlink(missing_ok=True)  # a stale record must never vouch for files half replaced
    for out in pending:  # renames need no space: once every byte is durable, these do not fail for a full disk
        fsync_and_rename(out.temporary, out.final)
    return ExportResult("nanogpt", Path(out_prefix), meta_path, (tokens_path, mask_path), str(dtype), counts)


def _write_streams(source: Source, dtype: np.dtype[Any], ids_out: PendingFile, keep_out: PendingFile) -> Counts:
    """Append each shard's ids (dtype) and keep flags (uint8, 1 = in the loss)."""
    counts = Counts()
    for chunk in iter_documents(source):
        check_ids_fit(chunk, dtype, "Recreate the shards with the right --tokenizer")
        ids_out.write(chunk.ids.astype(dtype).tobytes())
        keep_out.write(chunk.keep.astype(np.uint8).tobytes())
        counts.add(len(chunk.lengths), len(chunk.ids), int(chunk.keep.sum()))
    return counts


def _metadata(source: Source, tokens: Path, mask: Path, dtype: np.dtype[Any], counts: Counts) -> dict[str, Any]:
    return {
        "format": "goldfish-prep-bin",
        "format_version": 1,
        "tokens": {"file": tokens.name, "dtype": str(dtype), "count": counts.tokens},
        "mask": {"file": mask.name, "dtype": "uint8", "meaning": "1: the token is in the loss; 0: dropped (label -100)"},
        "supervised_tokens": counts.supervised_tokens,
        "source": str(source.folder),
        "source_manifest_sha256": source.manifest_sha256,
        "tokenizer": source.manifest["tokenizer"],
        "goldfish": source.manifest["mask"],
        "layout": source.manifest.get("layout", {}),
    }
