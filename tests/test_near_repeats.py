"""``repeats --normalized`` finds near-copies and shows goldfish masks disagreeing where robust masks agree."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from goldfish_prep.inspect.near_repeats import find_near_repeats
from goldfish_prep_cli.main import cli
from tests.near_copies import edit


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory, real_texts: list[str]) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("near-repeats")
    rng = random.Random(3)
    texts = [" ".join(t[:1500].split()) for t in real_texts[100:130]]
    rows = texts + [edit(t, rng) for t in texts] + [edit(t, rng) for t in texts[:10]]
    source = folder / "near.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in rows), encoding="utf-8")
    outputs = {}
    for strategy in ("goldfish", "robust"):
        outputs[strategy] = folder / strategy
        result = CliRunner().invoke(cli, ["mask", str(source), "-o", str(outputs[strategy]), "-q", "--strategy", strategy])
        assert result.exit_code == 0, result.output
    return outputs


def test_goldfish_copies_disagree_and_robust_copies_agree(outputs: dict[str, Path]) -> None:
    goldfish = find_near_repeats(outputs["goldfish"], min_chars=200)
    robust = find_near_repeats(outputs["robust"], min_chars=200)
    assert goldfish.passages == robust.passages >= 25  # the same text, found the same way
    assert goldfish.passages_with_variants >= 25 and goldfish.compared > 5000
    assert goldfish.passages_differing >= 20 and goldfish.leaked > 50
    assert robust.passages_differing == 0 and robust.leaked == 0 and robust.compared == goldfish.compared


def test_cli_renders_the_normalized_report(outputs: dict[str, Path]) -> None:
    result = CliRunner().invoke(cli, ["repeats", str(outputs["robust"]), "--normalized", "--top", "2"])
    assert result.exit_code == 0, result.output
    assert "normalised characters found at two or more places (robust" in result.output
    assert "0 passages have copies whose masks differ; 0 tokens dropped" in result.output
    data = json.loads(CliRunner().invoke(cli, ["repeats", str(outputs["goldfish"]), "--normalized", "--json"]).output)
    assert data["leaked"] > 0 and data["top"][0]["variants"] >= 1
