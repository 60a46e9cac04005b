"""Export staging lives in ``goldfish_prep.format.staging`` with the rest of the commit protocol; names kept for imports."""

from __future__ import annotations

from goldfish_prep.format.staging import RECORD_NAME, Staging, staged_folder

__all__ = ["RECORD_NAME", "Staging", "staged_folder"]
