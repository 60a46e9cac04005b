"""Read a goldfish-prep output folder through its documented format (docs/format.md).

Every consumer (stats, verify, the bundled trainer) opens shards here rather
than guessing at files, so the contract lives in one place. Shards are Arrow
IPC streams opened by memory map: reading a column costs no copy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from goldfish_prep.errors import InputError
from goldfish_prep.mask import local_positions

MANIFEST_NAME = "goldfish_manifest.json"
FORMAT_VERSION = 1
IGNORE_INDEX = -100


def load_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of a complete output folder; a clear error for anything else."""
    path = Path(folder) / MANIFEST_NAME
    if not Path(folder).is_dir():
        raise InputError(str(folder), "no such folder", "Pass the output folder of `goldfish-prep mask`", "missing")
    if not path.is_file() or not (Path(folder) / "state.json").is_file():
        raise InputError(
            str(folder),
            f"no {MANIFEST_NAME} and state.json: not a goldfish-prep output, or an interrupted run",
            "Rerun `goldfish-prep mask ... --resume` to finish it",
            "incomplete-output",
        )
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(str(path), f"unreadable manifest ({exc})", "Recreate the output with `goldfish-prep mask`", "bad-manifest") from exc
    version = manifest.get("format_version")
    if manifest.get("format") != "goldfish-prep" or version != FORMAT_VERSION:
        raise InputError(
            str(path),
            f"format {manifest.get('format')!r} version {version!r} is not goldfish-prep format {FORMAT_VERSION}",
            "Recreate the output with this goldfish-prep version",
            "bad-manifest",
        )
    return manifest


def shard_paths(folder: str | Path, manifest: dict[str, Any] | None = None) -> list[Path]:
    """The shard files in order, as the manifest lists them."""
    manifest = manifest if manifest is not None else load_manifest(folder)
    return [Path(folder) / shard["filename"] for shard in manifest["shards"]]


def read_shard(path: str | Path, columns: Sequence[str] | None = None) -> pa.Table:
    """One shard as a pyarrow Table (memory-mapped, zero-copy)."""
    try:
        with pa.memory_map(str(path), "r") as source:
            table = pa.ipc.open_stream(source).read_all()
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(str(path), f"unreadable shard ({exc})", "Run `goldfish-prep verify` on the folder, or recreate it", "bad-shard") from exc
    return table.select(list(columns)) if columns is not None else table


def real_token_mask(offsets: npt.ArrayLike, num_tokens: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Over a flat list column: True for the first ``num_tokens[r]`` values of each row r.

    Packed rows end in padding past ``num_tokens`` (docs/format.md); document
    rows have none, so for them every value is True.

    >>> real_token_mask([0, 3, 5], [2, 2]).tolist()
    [True, True, False, True, True]
    """
    bounds = np.asarray(offsets, dtype=np.int64)
    local = local_positions(bounds[:-1] - bounds[0], int(bounds[-1] - bounds[0]))
    mask: npt.NDArray[np.bool_] = local < np.repeat(np.asarray(num_tokens, dtype=np.int64), np.diff(bounds))
    return mask


def iter_shards(folder: str | Path, columns: Sequence[str] | None = None) -> Iterator[tuple[Path, pa.Table]]:
    """(path, table) for every shard of a complete output folder, in order."""
    for path in shard_paths(folder):
        yield path, read_shard(path, columns)
