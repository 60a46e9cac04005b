"""Builds the manifest and the ``datasets`` metadata from the per-shard completion records.

Finishing is a pure function of ``.goldfish/run.json`` and the shard records, so
one process, N worker processes or N independent ``--num-tasks`` jobs followed
by ``finalize`` all end with the same bytes. ``state.json`` is written last:
``datasets`` cannot open the folder without it, and goldfish-prep requires both
it and the manifest, so nothing ever opens a half-finished folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import xxhash

from goldfish_prep.errors import OutputError
from goldfish_prep.format.folder import OutputFolder, as_folder
from goldfish_prep.format.manifest import MAX_LISTED_SKIPS, Manifest
from goldfish_prep.format.ownership import refuse_another_run
from goldfish_prep.format.schema import features_dict

__all__ = ["MAX_LISTED_SKIPS", "build_manifest", "finalize_output"]


def finalize_output(output: OutputFolder | Path, num_shards: int) -> dict[str, Any]:
    """Check that shards 0..num_shards-1 are complete, then write state.json, dataset_info.json and the manifest."""
    folder = as_folder(output)
    run = folder.read_run()
    found = folder.read_shard_records(num_shards)
    records = [record for record in found if record is not None]
    missing = [index for index, record in enumerate(found) if record is None]
    if missing:
        raise OutputError(
            f"{folder.where()} is missing {len(missing)} of {num_shards} shards (first: {missing[0]}); "
            "run the unfinished tasks (or rerun with --resume) before finalizing"
        )
    for record in records:  # one run's shards only: tasks that did not all get --overwrite leave two runs' shards
        refuse_another_run(folder.where(), record, run, "finalize")
    manifest = Manifest.build(run, records, folder.where()).to_dict()
    packed = run["layout"]["pack"] is not None
    chat = run.get("chat") is not None
    filenames = [shard["filename"] for shard in manifest["shards"]]
    features = features_dict(packed, chat, run.get("k_field") is not None)
    dataset_info = {"citation": "", "description": "", "features": features, "homepage": "", "license": ""}
    # state.json last: without it datasets.load_from_disk refuses the folder, so a folder it opens is complete
    folder.write_finished(dataset_info, manifest, _state(filenames, manifest))
    return manifest


def build_manifest(run: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest (docs/format.md) as written, from the run description and the shard records (``Manifest.build``)."""
    return Manifest.build(run, records, ".").to_dict()


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
