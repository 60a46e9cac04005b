"""``export --format hf``: a ``save_to_disk`` folder that datasets 5.x (installed) and 3.x (its own venv) both load.

Rows are read back with ``datasets.load_from_disk`` and compared with the shards'
rows read the same way: ids and labels equal, attention mask 0 exactly on the
padding of packed rows, ``lengths`` the row lengths, and no other column (a
trainer passes every column it finds to the collator). The 3.x check runs in
the ``datasets3`` venv of tests/trainers/setup.sh (litgpt[extra] pins
``datasets<4``, which cannot read the shards themselves).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pytest

from goldfish_prep.export import export
from tests.exports import make_corpora
from tests.trainers.venvs import run_in

COLUMNS = ["input_ids", "attention_mask", "labels", "lengths"]

READ_BACK = """
import json, sys
import datasets
rows = datasets.load_from_disk(sys.argv[1])
print(json.dumps({"version": datasets.__version__, "features": str(rows.features), "rows": rows.to_dict()}))
"""


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_corpora(tmp_path_factory.mktemp("hf"))


def expected_rows(shards: Path) -> dict[str, list[Any]]:
    """The shards' rows as the hf export must hold them, from the shards read with ``datasets``."""
    rows = datasets.load_from_disk(str(shards))
    used = rows["num_tokens"] if "num_tokens" in rows.column_names else [len(ids) for ids in rows["input_ids"]]
    return {
        "input_ids": rows["input_ids"],
        "attention_mask": [[1] * n + [0] * (len(ids) - n) for ids, n in zip(rows["input_ids"], used)],
        "labels": rows["labels"],
        "lengths": [len(ids) for ids in rows["input_ids"]],
    }


@pytest.mark.parametrize("layout", ["documents", "packed"])
def test_the_installed_datasets_loads_exactly_the_shards_rows(layout: str, corpora: dict[str, Path], tmp_path: Path) -> None:
    result = export(corpora[layout], tmp_path / "hf", "hf")
    rows = datasets.load_from_disk(str(tmp_path / "hf"))
    assert rows.column_names == COLUMNS and len(result.files) == len(
        json.loads((tmp_path / "hf" / "state.json").read_text())["_data_files"]
    )
    assert rows.to_dict() == expected_rows(corpora[layout])
    padded = sum(row.count(0) for row in rows["attention_mask"])
    assert (padded > 0) == (layout == "packed")  # packed rows end in padding, documents never do
    dropped = sum(label == -100 for row, mask in zip(rows["labels"], rows["attention_mask"]) for label, m in zip(row, mask) if m)
    assert dropped > 0 and result.counts.tokens == sum(sum(row) for row in rows["attention_mask"])


@pytest.mark.parametrize("layout", ["documents", "packed"])
def test_datasets_3_loads_the_same_rows(layout: str, corpora: dict[str, Path], tmp_path: Path) -> None:
    export(corpora[layout], tmp_path / "hf", "hf")
    loaded = json.loads(run_in("datasets3", "-c", READ_BACK, tmp_path / "hf", timeout=300).strip().splitlines()[-1])
    assert loaded["version"].startswith("3.")
    assert "Sequence(feature=Value(dtype='int32'" in loaded["features"]
    assert loaded["rows"] == expected_rows(corpora[layout])
