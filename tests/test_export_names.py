"""Export messages name each format as its project writes it, with the article it takes ("an OLMo export")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from goldfish_prep.export import FORMATS
from goldfish_prep.export.names import TITLES
from goldfish_prep_cli.main import cli


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("names")
    (root / "docs.jsonl").write_text("".join(json.dumps({"text": f"document {i}: " + "words " * 40}) + "\n" for i in range(3)))
    result = CliRunner().invoke(cli, ["mask", str(root / "docs.jsonl"), "-o", str(root / "shards"), "-q"])
    assert result.exit_code == 0, result.output
    return root / "shards"


@pytest.mark.parametrize(
    ("format_name", "words"),
    [
        ("olmo", "Wrote an OLMo export of 3 documents"),
        ("megatron", "Wrote a Megatron export of 3 documents"),
        ("parquet", "Wrote a Parquet export of 3 documents"),
        ("hf", "Wrote a Hugging Face datasets export of 3 documents"),
    ],
)
def test_the_summary_names_the_format_as_its_project_does(shards: Path, tmp_path: Path, format_name: str, words: str) -> None:
    result = CliRunner().invoke(cli, ["export", str(shards), "-o", str(tmp_path / format_name), "--format", format_name])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(words + ", ")


def test_every_export_format_has_its_projects_spelling() -> None:
    """A format added later must not fall back to its --format key ("Wrote a hf export", found in the README walk)."""
    assert sorted(TITLES) == sorted(FORMATS)


def test_a_dtype_error_names_the_format_as_its_project_does(shards: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["export", str(shards), "-o", str(tmp_path / "x"), "--format", "olmo", "--dtype", "int32"])
    assert result.exit_code == 1
    assert (
        result.output
        == "Error: --dtype int32 is not read by OLMo exports; choose one of uint8, uint16, uint32, uint64, or leave --dtype out\n"
    )
