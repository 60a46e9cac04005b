"""goldfish-prep: pre-computed goldfish loss masks for LLM training data.

The goldfish loss (Hans et al. 2024, arXiv 2406.10209) leaves about one token in
``k`` out of the next-token loss, chosen by hashing the ``context_width`` ids
ending at each token, so a repeated passage always loses the same tokens. Under
spec version 2 (the default) a document's first tokens are decided on the shorter
window since its start, so short documents are covered too; version 1 never drops them.

>>> from goldfish_prep import goldfish_mask
>>> goldfish_mask([1, 2, 3], k=4, context_width=13).tolist()
[True, False, False]
>>> goldfish_mask([1, 2, 3], k=4, context_width=13, spec_version=1).tolist()
[False, False, False]
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from goldfish_prep.config import GOLDFISH_SPEC_VERSION, STRATEGIES, MaskConfig
from goldfish_prep.errors import ConfigError, GoldfishError, InputError, OutputError, TokenizerError
from goldfish_prep.mask import goldfish_mask, mask_documents

if TYPE_CHECKING:
    from goldfish_prep.format.reader import ShardSet

__version__ = "0.1.0"


def open_shards(folder: str | Path) -> ShardSet:
    """Open a goldfish-prep output folder: ``.manifest``, ``.documents()`` and per-shard ``.batches()``.

    Imported on first use, so ``import goldfish_prep`` stays free of pyarrow
    for trainers that only want the masking core.
    """
    from goldfish_prep.format.reader import open_shards as _open

    return _open(folder)


__all__ = [
    "GOLDFISH_SPEC_VERSION",
    "STRATEGIES",
    "ConfigError",
    "GoldfishError",
    "InputError",
    "MaskConfig",
    "OutputError",
    "TokenizerError",
    "__version__",
    "goldfish_mask",
    "mask_documents",
    "open_shards",
]
