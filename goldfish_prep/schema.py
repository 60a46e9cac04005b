"""Arrow schemas of the output shards (docs/format.md), with the metadata ``datasets`` expects.

``datasets.load_from_disk`` reads features from ``dataset_info.json`` and from
each shard's ``huggingface`` schema metadata; both are generated from the
installed ``datasets`` so the feature spelling (``List`` vs ``Sequence``)
matches whatever version will load the folder.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pyarrow as pa

DOCUMENT_FIELDS = [
    pa.field("id", pa.string()),
    pa.field("source", pa.string()),
    pa.field("input_ids", pa.list_(pa.int32())),
    pa.field("labels", pa.list_(pa.int32())),
    pa.field("num_tokens", pa.int32()),
    pa.field("num_dropped", pa.int32()),
]
PACKED_FIELDS = [
    pa.field("input_ids", pa.list_(pa.int32())),
    pa.field("labels", pa.list_(pa.int32())),
    pa.field("num_tokens", pa.int32()),
    pa.field("num_dropped", pa.int32()),
    pa.field("doc_starts", pa.list_(pa.int32())),
]


@functools.lru_cache(maxsize=2)
def features_dict(packed: bool) -> dict[str, Any]:
    """The ``datasets.Features`` of a shard, as the installed ``datasets`` serialises them."""
    import datasets  # slow import (about 1 s): only where a folder is written

    base = pa.schema(PACKED_FIELDS if packed else DOCUMENT_FIELDS)
    features: dict[str, Any] = datasets.Features.from_arrow_schema(base).to_dict()
    return features


def shard_schema(packed: bool) -> pa.Schema:
    """The schema written into every shard, with the ``huggingface`` metadata."""
    metadata = {"huggingface": json.dumps({"info": {"features": features_dict(packed)}})}
    return pa.schema(PACKED_FIELDS if packed else DOCUMENT_FIELDS, metadata=metadata)
