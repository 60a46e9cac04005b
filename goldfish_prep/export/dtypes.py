"""The integer type of exported token ids: the smallest the trainer reads that holds every id.

Each format lists the dtypes its trainer reads, smallest first, and the default
is the first that holds ``vocab_size - 1``. That reproduces each trainer's own
rule, so its config needs no dtype: nanoGPT's ``uint16`` when the vocabulary fits
16 bits, OLMo-core's ``NumpyDatasetConfig.get_dtype`` (uint8/16/32/64), and
Megatron's ``GPTDatasetConfig`` (uint16 up to 65,536 ids, else int32).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from goldfish_prep.errors import ConfigError
from goldfish_prep.export.names import format_title


def token_dtype(vocab_size: int, allowed: Sequence[str], format_name: str, requested: str | None = None) -> np.dtype[Any]:
    """``requested`` if the format reads it and it holds every id, else the smallest allowed dtype that does.

    >>> str(token_dtype(50257, ["uint16", "uint32"], "nanogpt")), str(token_dtype(100277, ["uint16", "uint32"], "nanogpt"))
    ('uint16', 'uint32')
    >>> str(token_dtype(256, ["uint8", "uint16"], "olmo"))
    'uint8'
    """
    if requested is not None:
        if requested not in allowed:
            raise ConfigError(
                f"--dtype {requested} is not read by {format_title(format_name)} exports; choose one of {', '.join(allowed)}, or leave --dtype out"
            )
        if not _holds(requested, vocab_size):
            raise ConfigError(
                f"--dtype {requested} cannot hold the ids of a {vocab_size:,}-id vocabulary (largest id {vocab_size - 1:,}); "
                "leave --dtype out to get the smallest that does"
            )
        return np.dtype(requested)
    for name in allowed:
        if _holds(name, vocab_size):
            return np.dtype(name)
    raise ConfigError(
        f"no dtype that {format_title(format_name)} reads ({', '.join(allowed)}) holds the ids of a {vocab_size:,}-id vocabulary"
    )


def _holds(name: str, vocab_size: int) -> bool:
    return vocab_size - 1 <= int(np.iinfo(np.dtype(name)).max)
