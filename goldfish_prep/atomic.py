"""Crash-safe file writes: the names older code imports, kept for it; the protocol lives in ``format.commit``."""

from __future__ import annotations

from goldfish_prep.format.commit import file_sha256, fsync_and_rename, fsync_directory, write_failure, write_json

__all__ = ["file_sha256", "fsync_and_rename", "fsync_directory", "write_failure", "write_json"]
