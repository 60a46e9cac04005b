"""Checkpoints of the bundled trainer: one ``checkpoint.pt`` per run folder, replaced atomically.

It holds everything a resumed run needs to continue exactly (model and
optimizer state, the step, the torch RNG) and everything ``memorization`` needs
to rebuild the model (its ``GPTConfig``), as plain types so that
``torch.load(weights_only=True)`` can read it without running pickled code.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any, cast

import torch

from goldfish_prep.errors import InputError
from goldfish_prep.format.commit import cannot_write, committed_file
from goldfish_prep.train.model import GPT, GPTConfig

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``run_dir/checkpoint.pt`` via a temporary file and a rename (a crash keeps the old one)."""
    path = run_dir / CHECKPOINT_NAME
    try:
        with committed_file(path, unique=True) as out:  # the commit protocol: fsync, rename, fsync of the folder
            torch.save(state, cast(IO[bytes], out))  # a binary sink: torch only writes to it
    except OSError as exc:  # torch wraps a failed write in a RuntimeError only when it writes to a path itself
        raise cannot_write("the checkpoint", path, exc) from exc
    return path


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    """The checkpoint of a run folder, on CPU; a clear error when there is none."""
    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.is_file():
        raise InputError(
            str(run_dir),
            f"no {CHECKPOINT_NAME}: not a `goldfish-prep train` run folder, or a run that saved nothing yet",
            "Pass the -o folder of `goldfish-prep train`",
            "no-checkpoint",
        )
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise InputError(str(path), f"unreadable checkpoint ({exc})", "Retrain, or resume from an intact copy", "bad-checkpoint") from exc
    return state


def model_from_checkpoint(state: dict[str, Any]) -> GPT:
    """Rebuild the trained model (eval mode, CPU) from a checkpoint's config and weights."""
    model = GPT(GPTConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    return model.eval()
