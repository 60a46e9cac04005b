"""The hand-written feature spelling equals what the installed ``datasets`` writes."""

from __future__ import annotations

import datasets
import pyarrow as pa
import pytest

from goldfish_prep.format.schema import DOCUMENT_FIELDS, PACKED_FIELDS, features_dict


@pytest.mark.parametrize("packed, fields", [(False, DOCUMENT_FIELDS), (True, PACKED_FIELDS)])
def test_features_match_installed_datasets(packed: bool, fields: list[pa.Field]) -> None:
    expected = datasets.Features.from_arrow_schema(pa.schema(fields)).to_dict()
    assert features_dict(packed) == expected
