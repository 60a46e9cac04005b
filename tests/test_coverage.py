"""Coverage: the shares of all tokens that can be and are dropped, and the one-line warning when few can.

A corpus of one-line records under goldfish spec v1 reports a healthy rate among
eligible tokens while most tokens can never be dropped; ``mask`` and ``stats``
must say so, with the fix, for every strategy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from goldfish_prep.config import MaskConfig
from goldfish_prep.inspect.coverage import Coverage
from goldfish_prep.strategies import VERSIONS
from goldfish_prep_cli.main import cli

LINES = [f"Item {i}: a short record of a few words, number {i}." for i in range(60)]
CASES = [(name, version) for name, version in VERSIONS]
#: strategies that leave many tokens of short documents ineligible, and the start of their fix
LOW = {
    ("goldfish", 1): "Fix: mask again without --spec-version 1",
    ("robust", 1): "Fix: mask again without --spec-version 1",
    ("hash-table", None): "Fix: mask with --strategy goldfish",
}  # static: all but a document's first position are eligible (it drops every k-th of them); none: nothing to cover


def run(*args: Any) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def lines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("short") / "records.txt"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(("name", "version"), CASES, ids=[f"{n}-v{v}" for n, v in CASES])
def test_mask_and_stats_give_coverage_and_warn_when_low(tmp_path: Path, lines: Path, name: str, version: int | None) -> None:
    out = tmp_path / "out"
    versioned = ["--spec-version", version] if version is not None else []
    result = run("mask", lines, "--text-per-line", "-o", out, "-q", "--strategy", name, "--no-eos", *versioned)
    assert result.exit_code == 0, result.output
    counts = json.loads((out / "goldfish_manifest.json").read_text())["counts"]
    eligible, dropped = counts["eligible_tokens"] / counts["tokens"], counts["dropped_tokens"] / counts["tokens"]
    assert (
        f"Coverage: {eligible:.2%} of all {counts['tokens']:,} tokens can be dropped (eligible), {dropped:.2%} are dropped" in result.output
    )
    warnings = [line for line in result.output.splitlines() if line.startswith("Warning:")]
    fix = LOW.get((name, version))
    if fix is None:
        assert warnings == [] and (name == "none" or eligible > 0.9)
    else:
        assert len(warnings) == 1 and fix in warnings[0] and eligible < 0.9
    report = run("stats", out)
    assert report.exit_code == 0, report.output
    assert f"{eligible:.2%} of all tokens: " in report.output
    assert ("Warning: only" in report.output) == (fix is not None)
    figures = json.loads(run("stats", out, "--json").output)
    assert figures["eligible_share"] == pytest.approx(eligible) and figures["dropped_share"] == pytest.approx(dropped)
    assert (figures["coverage_warning"] is None) == (fix is None)


def test_the_default_covers_short_documents_where_v1_does_not(tmp_path: Path, lines: Path) -> None:
    """The issue's case in small: v1 drops about 1 in k of the few eligible tokens and almost none of the corpus."""
    shares = {}
    for version in (1, 2):
        out = tmp_path / f"v{version}"
        assert run("mask", lines, "--text-per-line", "-o", out, "-q", "--spec-version", version).exit_code == 0
        shares[version] = Coverage.from_counts(json.loads((out / "goldfish_manifest.json").read_text())["counts"])
    assert shares[1].eligible_share < 0.3 and shares[1].dropped_share < 0.1  # 4 of 17 tokens per record
    assert shares[2].eligible_share == 1.0 and 0.15 < shares[2].dropped_share < 0.35


def test_coverage_comes_from_counts_every_manifest_holds() -> None:
    """No new manifest field: folders written before coverage existed report it too."""
    old = {"tokens": 51_362, "eligible_tokens": 6_402, "dropped_tokens": 1_543, "drop_rate": 0.241}
    coverage = Coverage.from_counts(old)
    assert (round(coverage.eligible_share, 4), round(coverage.dropped_share, 4)) == (0.1246, 0.03)
    warning = coverage.warning(MaskConfig(spec_version=1))
    assert warning is not None and warning.startswith("Warning: only 12.46% of the tokens can ever be dropped (positions t >= 13")
    assert "\n" not in warning
    assert Coverage.from_counts({**old, "assistant_tokens": 7_000}).warning(MaskConfig(spec_version=1)) is None  # chat is not judged
    assert Coverage.from_counts(old).warning(MaskConfig(strategy="none")) is None
