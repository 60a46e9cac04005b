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
#: the shard index in a shard's file name, its record's, or their temporaries'
_SHARD_INDEX = re.compile(r"(?:data|shard)-(\d+)\.")
#: what a temporary name adds to the final one (``write_json`` adds the pid)
_TEMPORARY = re.compile(r"(\.\d+)?" + re.escape(PARTIAL_SUFFIX) + "$")


def shard_filename(index: int) -> str:
    """The file name of shard ``index``.

    >>> shard_filename(3)
    'data-00003.arrow'
    """
    return f"data-{index:05d}.arrow"


def is_shard_filename(name: str) -> bool:
    """Whether ``name`` is a shard's file name (or its temporary's).

    >>> is_shard_filename("data-00003.arrow"), is_shard_filename("notes.txt")
    (True, False)
    """
    return name.startswith("data-") and final_name(name).endswith(".arrow")


def shard_index(name: str) -> int | None:
    """The shard index a shard file, a shard record or their temporaries are named for; None for other names.

    >>> shard_index("data-00003.arrow.partial"), shard_index("shard-00012.json"), shard_index("state.json")
    (3, 12, None)
    """
    match = _SHARD_INDEX.match(name)
    return int(match.group(1)) if match else None


def final_name(name: str) -> str:
    """The name a temporary file will have once committed (other names are returned as they are).

    >>> final_name("run.json.1234.partial"), final_name("data-00000.arrow.partial"), final_name("state.json")
    ('run.json', 'data-00000.arrow', 'state.json')
    """
    return _TEMPORARY.sub("", name)


def is_temporary(name: str) -> bool:
    return name.endswith(PARTIAL_SUFFIX)


def shard_record_name(index: int) -> str:
    """The completion record of a shard (in the progress folder): written right after the shard is committed.

    >>> shard_record_name(3)
    'shard-00003.json'
    """
    return f"shard-{index:05d}.json"


def is_shard_record_name(name: str) -> bool:
    """Whether ``name`` is a shard's completion record (not its temporary).

    >>> is_shard_record_name("shard-00003.json"), is_shard_record_name("shard-00003.json.77.partial")
    (True, False)
    """
    return name.startswith("shard-") and name.endswith(".json")


def shard_record_path(folder: Path, index: int) -> Path:
    """The completion record of a shard in a local folder."""
    return folder / PROGRESS_DIR / shard_record_name(index)


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


#: the progress folder's lock files (format/lock.py): the writer's, a Ray driver's, and one per task
WRITER_LOCK = "writer.lock"
RAY_DRIVER_LOCK = "ray-driver.lock"
LOCK_SUFFIX = ".lock"


def task_lock_name(index: int, count: int) -> str:
    """The lock file of task ``index`` of ``count``.

    >>> task_lock_name(1, 4)
    'task-00001-of-00004.lock'
    """
    return f"task-{index:05d}-of-{count:05d}{LOCK_SUFFIX}"


def is_lock_name(name: str) -> bool:
    return name.endswith(LOCK_SUFFIX)
