"""Names of everything goldfish-prep writes in an output folder, in one place.

Shard names carry no total (``data-00000.arrow``, not ``-of-00012``): with
``--num-tasks`` no task knows the total, and ``state.json`` lists the files
explicitly anyway.
"""

from __future__ import annotations

from pathlib import Path

MANIFEST = "goldfish_manifest.json"
STATE = "state.json"
DATASET_INFO = "dataset_info.json"
PROGRESS_DIR = ".goldfish"
RUN_FILE = "run.json"
PARTIAL_SUFFIX = ".partial"


def shard_filename(index: int) -> str:
    """The file name of shard ``index``.

    >>> shard_filename(3)
    'data-00003.arrow'
    """
    return f"data-{index:05d}.arrow"


def shard_record_path(folder: Path, index: int) -> Path:
    """The completion record of a shard: written right after the shard is renamed into place."""
    return folder / PROGRESS_DIR / f"shard-{index:05d}.json"


def partial_path(path: Path) -> Path:
    """Where a file is written before the atomic rename to ``path``."""
    return path.with_name(path.name + PARTIAL_SUFFIX)
