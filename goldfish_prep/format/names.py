"""Every name and constant of an output folder (docs/format.md), in one place.

Shard names carry no total (``data-00000.arrow``, not ``-of-00012``): with
``--num-tasks`` no task knows the total, and ``state.json`` lists the files
explicitly anyway. Each name is built by exactly one function here, so the
writer, ``--resume``, ``finalize`` and every reader agree on it by construction.
"""

from __future__ import annotations

import re
from pathlib import Path

#: the ``format`` field of every manifest, and the version readers accept
FORMAT_NAME = "goldfish-prep"
FORMAT_VERSION = 1
#: the label of a token left out of the loss (the Hugging Face / PyTorch convention)
IGNORE_INDEX = -100

MANIFEST = "goldfish_manifest.json"
STATE = "state.json"
DATASET_INFO = "dataset_info.json"
PROGRESS_DIR = ".goldfish"
RUN_FILE = "run.json"
PARTIAL_SUFFIX = ".partial"

#: ``task-00001-of-00004.json``: the end record of one ``--num-tasks`` task
TASK_FILE = re.compile(r"task-(\d{5,})-of-(\d{5,})\.json")
TASK_FILE_GLOB = "task-*-of-*.json"


def shard_filename(index: int) -> str:
    """The file name of shard ``index``.

    >>> shard_filename(3)
    'data-00003.arrow'
    """
    return f"data-{index:05d}.arrow"


def shard_record_path(folder: Path, index: int) -> Path:
    """The completion record of a shard: written right after the shard is renamed into place."""
    return folder / PROGRESS_DIR / f"shard-{index:05d}.json"


def task_filename(task_index: int, num_tasks: int) -> str:
    """The file a finished ``--num-tasks`` task leaves in the progress folder.

    >>> task_filename(1, 4)
    'task-00001-of-00004.json'
    >>> TASK_FILE.fullmatch(task_filename(1, 4)) is not None
    True
    """
    return f"task-{task_index:05d}-of-{num_tasks:05d}.json"


def partial_path(path: Path) -> Path:
    """Where a file is written before the atomic rename to ``path``."""
    return path.with_name(path.name + PARTIAL_SUFFIX)
