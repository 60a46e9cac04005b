"""Builds the manifest and the ``datasets`` metadata from the per-shard completion records.

Finishing is a pure function of ``.goldfish/run.json`` and the shard records, so
one process, N worker processes or N independent ``--num-tasks`` jobs followed
by ``finalize`` all end with the same bytes. ``state.json`` is written last:
``datasets`` cannot open the folder without it, and goldfish-prep requires both
it and the manifest, so nothing ever opens a half-finished folder.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import xxhash

from goldfish_prep.config import MaskConfig
from goldfish_prep.errors import OutputError
from goldfish_prep.format.folder import OutputFolder, as_folder
from goldfish_prep.format.names import FORMAT_NAME, FORMAT_VERSION, IGNORE_INDEX
from goldfish_prep.format.schema import features_dict
from goldfish_prep.mask import expected_rate

#: the manifest lists this many skipped records by location; counts always cover all of them
MAX_LISTED_SKIPS = 1000


def finalize_output(output: OutputFolder | Path, num_shards: int) -> dict[str, Any]:
    """Check that shards 0..num_shards-1 are complete, then write state.json, dataset_info.json and the manifest."""
    folder = as_folder(output)
    run = folder.read_run()
    records = []
    missing = []
    for index in range(num_shards):
        record = folder.read_shard_record(index)
        if record is None:
            missing.append(index)
            continue
        records.append(record)
    if missing:
        raise OutputError(
            f"{folder.where()} is missing {len(missing)} of {num_shards} shards (first: {missing[0]}); "
            "run the unfinished tasks (or rerun with --resume) before finalizing"
        )
    manifest = build_manifest(run, records)
    packed = run["layout"]["pack"] is not None
    chat = run.get("chat") is not None
    filenames = [shard["filename"] for shard in manifest["shards"]]
    features = features_dict(packed, chat, run.get("k_field") is not None)
    dataset_info = {"citation": "", "description": "", "features": features, "homepage": "", "license": ""}
    # state.json last: without it datasets.load_from_disk refuses the folder, so a folder it opens is complete
    folder.write_finished(dataset_info, manifest, _state(filenames, manifest))
    return manifest


def build_manifest(run: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest (docs/format.md) from the run description and the shard records, in shard order."""
    records = sorted(records, key=lambda record: int(record["index"]))
    reasons: collections.Counter[str] = collections.Counter()
    skipped: list[dict[str, str]] = []
    for record in records:
        reasons.update(record["skipped_by_reason"])
        skipped.extend(record["skipped"][: MAX_LISTED_SKIPS - len(skipped)])
    total = {
        key: sum(int(record[key]) for record in records)
        for key in ("documents_read", "documents_written", "documents_skipped", "tokens", "eligible_tokens", "dropped_tokens")
    }
    if run.get("chat") is not None:  # conversations: eligible and dropped tokens are the assistant's
        total["assistant_tokens"] = sum(int(record.get("assistant_tokens", 0)) for record in records)
    mask = run["mask"]
    counts = {
        **total,
        "skipped_by_reason": dict(sorted(reasons.items())),
        "drop_rate": total["dropped_tokens"] / total["eligible_tokens"] if total["eligible_tokens"] else 0.0,
        "expected_drop_rate": expected_rate(MaskConfig.from_dict(mask)),
    }
    shard_keys = ("filename", "num_rows", "num_documents", "num_tokens", "num_dropped", "sha256")
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "tool": run["tool"],
        "mask": {**mask, "ignore_index": IGNORE_INDEX},
        "tokenizer": run["tokenizer"],
        "reader": run["reader"],
        "inputs": run["inputs"],
        "ignored_inputs": run.get("ignored_inputs", []),
        "layout": run["layout"],
        **({"chat": run["chat"], "k_field": run.get("k_field")} if run.get("chat") is not None else {}),
        "shards": [{key: record[key] for key in shard_keys} for record in records],
        "counts": counts,
        "skipped": skipped,
    }


def _state(filenames: list[str], manifest: dict[str, Any]) -> dict[str, Any]:
    """``state.json`` as ``datasets.save_to_disk`` writes it, with a fingerprint derived from the shard checksums."""
    fingerprint = xxhash.xxh64_hexdigest("".join(shard["sha256"] for shard in manifest["shards"]).encode())
    return {
        "_data_files": [{"filename": name} for name in filenames],
        "_fingerprint": fingerprint,
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    }
