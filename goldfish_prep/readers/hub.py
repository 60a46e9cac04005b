"""Datasets streamed from the Hugging Face hub (``owner/name`` or ``name``).

A spec that is not a local path but looks like a hub id is streamed with
``datasets.load_dataset(..., streaming=True)``, so nothing is downloaded
whole. ``datasets`` is imported only here, and only when a hub input is read:
it is slow to import. With hub access switched off (``HF_HUB_OFFLINE`` or
``HF_DATASETS_OFFLINE``) such a spec is refused at once by ``resolve_inputs``,
before any output is written: it is far more often a mistyped local path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from goldfish_prep.errors import InputError
from goldfish_prep.readers.document import record_from_object
from goldfish_prep.readers.fields import IDS_FIELD, missing_text_field
from goldfish_prep.readers.options import InputSource, ReaderOptions
from goldfish_prep.readers.records import Record

_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")
_TRUE = {"1", "ON", "YES", "TRUE"}
_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
_MAX_CAUSE = 300


def looks_like_hub_id(spec: str) -> bool:
    """Whether ``spec`` has the shape of a hub id (``name`` or ``owner/name``).

    >>> looks_like_hub_id("allenai/c4"), looks_like_hub_id("a/b/c"), looks_like_hub_id("./corpus")
    (True, False, False)
    """
    return bool(_HUB_ID.fullmatch(spec)) and ".." not in spec


def hub_offline() -> str | None:
    """The environment variable that switches hub access off, or None when it is on."""
    for variable in _OFFLINE_VARIABLES:
        if os.environ.get(variable, "").strip().upper() in _TRUE:
            return variable
    return None


def offline_error(spec: str, variable: str) -> InputError:
    return InputError(
        spec,
        f"not an existing file or folder, and it cannot be streamed as an HF hub dataset: hub access is off ({variable}=1)",
        f"Check the path; to read the hub dataset, unset {variable} on a machine with network access",
        "hub-unavailable",
    )


def read_hub(source: InputSource, options: ReaderOptions) -> Iterator[Record | InputError]:
    """Rows of the ``options.hub_split`` split, named ``name record I`` (0-based)."""
    name = source.path
    try:
        import logging

        import datasets

        # retries and warnings would bury the one line that matters; errors still surface below
        for logger in ("datasets", "huggingface_hub"):
            logging.getLogger(logger).setLevel(logging.ERROR)
        dataset = datasets.load_dataset(name, split=options.hub_split, streaming=True)
    except Exception as exc:  # datasets raises many types: network, not found, bad split, bad config
        yield InputError(
            name,
            f"cannot stream split {options.hub_split!r} of this HF hub dataset: {_short(exc)}",
            "It is not a local file or folder either: check the name, --split and the network",
            "hub-unavailable",
        )
        return
    columns = dataset.column_names
    if columns is not None and not options.chat and options.text_field not in columns and IDS_FIELD not in columns:
        yield missing_text_field(name, options.text_field, columns)
        return
    index = 0
    try:
        for row in dataset:
            yield record_from_object(row, f"{name} record {index}", options)
            index += 1
    except Exception as exc:  # a dropped connection mid-stream: the rows read so far stand
        yield InputError(
            f"{name} record {index}",
            f"streaming stopped: {_short(exc)}",
            "Check the network and run again (--resume keeps finished shards)",
            "hub-unavailable",
        )


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= _MAX_CAUSE else text[: _MAX_CAUSE - 3] + "..."
