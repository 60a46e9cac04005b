"""An output folder's shards as tables and its manifest as a dict, for tests that compare a run over URL inputs with
the same run over local files (the input paths in ``id`` and ``source`` differ, nothing else may)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa


def shard_tables(folder: Path, prefix: str = "") -> list[pa.Table]:
    """The shards as tables, ``prefix`` taken off the input paths in their ``id`` and ``source`` columns."""
    tables = []
    for shard in sorted(folder.glob("data-*.arrow")):
        with pa.memory_map(str(shard)) as source:
            table = pa.ipc.open_stream(source).read_all()
        for name in ("id", "source"):
            if name in table.column_names:
                values = [value.removeprefix(prefix) for value in table.column(name).to_pylist()]
                table = table.set_column(table.column_names.index(name), name, pa.array(values, table.column(name).type))
        tables.append(table)
    return tables


def manifest(folder: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((folder / "goldfish_manifest.json").read_text(encoding="utf-8"))
    return loaded
