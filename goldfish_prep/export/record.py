"""What every export records beside its data: where it came from and what it holds.

The source manifest's sha256 ties an export to the exact shards it was made
from (the manifest lists every shard's own sha256), so a training run can log
one hash and be traced back to the masked corpus and its goldfish config. No
timestamps or machine names: the same shards give the same record, byte for byte.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from goldfish_prep.export.source import Source

RECORD_FORMAT = "goldfish-prep-export"
RECORD_VERSION = 1


@dataclasses.dataclass
class Counts:
    """Running totals of an export: documents, tokens, and tokens in the loss (label != -100)."""

    documents: int = 0
    tokens: int = 0
    supervised_tokens: int = 0

    def add(self, documents: int, tokens: int, supervised: int) -> None:
        self.documents += documents
        self.tokens += tokens
        self.supervised_tokens += supervised


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What an export wrote: ``out`` (a folder, or nanoGPT's prefix), the record, the data files, the totals."""

    format: str
    out: Path
    record_path: Path
    files: tuple[Path, ...]
    dtype: str
    counts: Counts


def export_record(source: Source, format_name: str, dtype: str, counts: Counts, layout: dict[str, Any]) -> dict[str, Any]:
    """The ``goldfish_export.json`` of a folder export; ``layout`` is the format's own part (file names, loading hints)."""
    return {
        "format": RECORD_FORMAT,
        "format_version": RECORD_VERSION,
        "export_format": format_name,
        "token_dtype": dtype,
        "counts": dataclasses.asdict(counts),
        "layout": layout,
        "source": {
            "folder": str(source.folder),
            "manifest_sha256": source.manifest_sha256,
            "layout": source.manifest.get("layout", {}),
        },
        "tokenizer": source.manifest["tokenizer"],
        "goldfish": source.manifest["mask"],
    }
