"""``verify --retokenize N``: re-encode a sample of documents from their sources with the reference engine.

``verify`` proves the masks follow from ``input_ids``; this proves the ids
follow from the text. It takes a deterministic sample of N written documents,
finds their records in the inputs the manifest lists (only when every local
input is still there with the size and xxh3-128 hash the manifest recorded:
a changed input would make any comparison meaningless), encodes their text
with the *reference* engine of the recorded tokenizer (``--tokenizer-backend
hf``: HF ``tokenizers`` for ``tokenizer.json``, tiktoken for tiktoken
encodings, sentencepiece for ``.model``), applies the recorded BOS/EOS policy
and compares with the stored ids. So a run made with a fast engine is
checked against the library that defines the tokenizer.

Packed outputs are not sampled (their rows mix documents), nor are
pre-tokenized records (there is no text to encode).
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from goldfish_prep.format import Manifest, load_manifest, open_shards
from goldfish_prep.readers import InputSource, ReaderOptions, iter_records
from goldfish_prep.readers.records import Record

#: documents encoded per call of the tokenizer
_BATCH = 256


@dataclasses.dataclass(frozen=True)
class Difference:
    doc_id: str
    position: int
    stored: int | None
    expected: int | None

    def __str__(self) -> str:
        return f"{self.doc_id}: ids differ from position {self.position} (stored {self.stored}, reference {self.expected})"


@dataclasses.dataclass(frozen=True)
class RetokenizeReport:
    sampled: int
    compared: int
    pretokenized: int
    not_found: tuple[str, ...]
    differences: tuple[Difference, ...]
    engine: str
    #: why nothing was compared (inputs changed, packed output...), else None
    unavailable: str | None = None

    @property
    def ok(self) -> bool:
        return self.unavailable is None and not self.differences and not self.not_found


def retokenize_sample(folder: str | Path, n: int, seed: int = 0) -> RetokenizeReport:
    """Re-encode ``n`` sampled documents of ``folder`` from their sources and compare their ids."""
    manifest = load_manifest(folder)
    empty = RetokenizeReport(0, 0, 0, (), (), "none")
    if manifest.packed:
        return dataclasses.replace(empty, unavailable="packed rows mix documents; retokenize the unpacked output")
    changed = _changed_inputs(manifest.raw)
    if changed:
        return dataclasses.replace(empty, unavailable=f"the inputs are not as recorded ({changed}); nothing to compare")
    wanted = _sample_rows(folder, manifest, n, seed)
    texts, pretokenized, found = _find_texts(manifest.raw, wanted)
    from goldfish_prep.tokenizers import load_tokenizer

    spec_info = dict(manifest.tokenizer)
    tokenizer = load_tokenizer(spec_info["spec"], "hf")
    identity = tokenizer.describe()
    if identity["fingerprint"] != spec_info.get("fingerprint"):
        reason = f"tokenizer {spec_info['spec']!r} is not the one the output was made with (its fingerprint differs)"
        return dataclasses.replace(empty, sampled=len(wanted), engine=identity["engine"], unavailable=reason)
    differences = _compare(tokenizer, spec_info, texts, wanted)
    not_found = tuple(doc_id for doc_id in wanted if doc_id not in found)
    return RetokenizeReport(len(wanted), len(texts), pretokenized, not_found, tuple(differences), identity["engine"])


def _changed_inputs(manifest: dict[str, Any]) -> str:
    from goldfish_prep.pipeline.job import _describe_input  # the very function that recorded them

    for recorded in manifest.get("inputs", []):
        if "xxh3_128" not in recorded:
            return f"{recorded.get('path')} was not hashed (a hub dataset or unreadable)"
        now = _describe_input(InputSource(recorded["path"], recorded["kind"]))
        if now != recorded:
            return f"{recorded['path']} is missing or changed"
    return ""


def _sample_rows(folder: str | Path, manifest: Manifest, n: int, seed: int) -> dict[str, npt.NDArray[Any]]:
    """doc id -> stored ids of a deterministic sample of ``n`` rows (all rows if fewer)."""
    total = sum(shard.num_rows for shard in manifest.shards)
    chosen = set(random.Random(seed).sample(range(total), min(n, total)))
    wanted: dict[str, npt.NDArray[Any]] = {}
    start = 0
    shards = open_shards(folder, manifest, check_sha256=False)  # verify checks every checksum itself
    for index in range(len(shards)):
        table = shards.table(index, ["id", "input_ids"])
        for row in (r for r in sorted(chosen) if start <= r < start + table.num_rows):
            doc_id = str(table.column("id")[row - start].as_py())
            wanted[doc_id] = table.column("input_ids")[row - start].values.to_numpy(zero_copy_only=False)
        start += table.num_rows
    return wanted


def _find_texts(manifest: dict[str, Any], wanted: dict[str, npt.NDArray[Any]]) -> tuple[dict[str, str], int, set[str]]:
    sources = [InputSource(recorded["path"], recorded["kind"]) for recorded in manifest["inputs"]]
    options = ReaderOptions(**manifest["reader"])
    texts: dict[str, str] = {}
    found: set[str] = set()
    pretokenized = 0
    for item in iter_records(sources, options):
        if not isinstance(item, Record) or item.doc_id not in wanted or item.doc_id in found:
            continue
        found.add(item.doc_id)
        if item.text is None:
            pretokenized += 1
        else:
            texts[item.doc_id] = item.text
        if len(found) == len(wanted):
            break
    return texts, pretokenized, found


def _compare(tokenizer: Any, spec_info: dict[str, Any], texts: dict[str, str], wanted: dict[str, npt.NDArray[Any]]) -> list[Difference]:
    head = [tokenizer.bos_id] if spec_info.get("add_bos") and tokenizer.bos_id is not None else []
    tail = [tokenizer.eos_id] if spec_info.get("add_eos") and tokenizer.eos_id is not None else []
    differences: list[Difference] = []
    doc_ids = list(texts)
    for start in range(0, len(doc_ids), _BATCH):
        batch = doc_ids[start : start + _BATCH]
        encoded = tokenizer.encode_batch([texts[d] for d in batch])
        for doc_id, ids in zip(batch, encoded):
            expected = np.concatenate([np.array(head, dtype=np.int64), np.asarray(ids, dtype=np.int64), np.array(tail, dtype=np.int64)])
            difference = _first_difference(doc_id, np.asarray(wanted[doc_id], dtype=np.int64), expected)
            if difference is not None:
                differences.append(difference)
    return differences


def _first_difference(doc_id: str, stored: npt.NDArray[np.int64], expected: npt.NDArray[np.int64]) -> Difference | None:
    common = min(len(stored), len(expected))
    unequal = np.flatnonzero(stored[:common] != expected[:common])
    if unequal.size:
        i = int(unequal[0])
        return Difference(doc_id, i, int(stored[i]), int(expected[i]))
    if len(stored) != len(expected):
        return Difference(
            doc_id, common, int(stored[common]) if common < len(stored) else None, int(expected[common]) if common < len(expected) else None
        )
    return None
