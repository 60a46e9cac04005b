"""Shared helpers of the export tests: shard corpora, and the expected documents read WITHOUT the code under test.

The expected ids and labels come from ``datasets.load_from_disk`` and a few lines
of plain Python over its rows (packed rows split at ``doc_starts``), so an export
is checked against the documented format, not against its own reader.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tests.shards import LICENSES, mask_texts, train_bpe

IGNORE_INDEX = -100
Document = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]


def license_paragraphs(count: int = 40) -> list[str]:
    text = (LICENSES / "MPL-2.0").read_text(encoding="utf-8")
    return [p.strip() for p in re.split(r"\n\s*\n", text) if len(p.strip()) > 100][:count]


def make_corpora(folder: Path) -> dict[str, Path]:
    """The same 40 documents as document shards and as packed shards (rows of 96), in several shards each.

    Shards of about 2 KB of input: 7 to 8 shards, so packed documents run from one shard into the next.
    """
    tokenizer = str(train_bpe(folder))
    texts = license_paragraphs()
    return {
        "documents": mask_texts(folder, "documents", texts, "--tokenizer", tokenizer, "--k", "3", "--shard-size", "2KB"),
        "packed": mask_texts(folder, "packed", texts, "--tokenizer", tokenizer, "--k", "3", "--shard-size", "2KB", "--pack", "96"),
    }


def shard_documents(folder: Path) -> list[Document]:
    """Every document's (ids, labels), in order, read with ``datasets`` as docs/format.md describes."""
    import datasets

    rows = datasets.load_from_disk(str(folder))
    if json.loads((folder / "goldfish_manifest.json").read_text())["layout"]["pack"] is None:
        return [(np.array(r["input_ids"], np.int64), np.array(r["labels"], np.int64)) for r in rows]
    ids: list[int] = []
    labels: list[int] = []
    starts: list[int] = []
    for row in rows:
        used = row["num_tokens"]
        starts.extend(len(ids) + s for s in row["doc_starts"])
        ids.extend(row["input_ids"][:used])
        labels.extend(row["labels"][:used])
    bounds = [*starts, len(ids)]
    return [(np.array(ids[a:b], np.int64), np.array(labels[a:b], np.int64)) for a, b in itertools.pairwise(bounds)]


def keep_of(labels: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """The loss mask of unshifted labels: True where the token is in the loss."""
    return np.asarray(labels != IGNORE_INDEX)


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (or beside a nanoGPT prefix) by relative name, for byte comparisons."""
    if root.is_dir():
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    return {p.name: p.read_bytes() for p in sorted(root.parent.glob(root.name + ".*")) if p.is_file()}
