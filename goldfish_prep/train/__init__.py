"""The bundled minimal trainer and the memorisation measurement (needs the ``train`` extra: torch).

Importing this package does not import torch; its modules do. Commands call
``require_torch`` first, so a missing torch is one line with the fix.
"""

from __future__ import annotations

import importlib.util

from goldfish_prep.errors import GoldfishError


def require_torch(command: str) -> None:
    """Raise a one-line error naming the fix when PyTorch is not installed."""
    try:
        found = importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise GoldfishError(f"`goldfish-prep {command}` needs PyTorch, which is not installed. Fix: pip install 'goldfish-prep[train]'")
