"""`goldfish-prep stats`: per-document figures equal a count made row by row; the band flags what it should."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from goldfish_prep.config import MaskConfig
from goldfish_prep.format import iter_shards
from goldfish_prep.format.columns import TokenStream
from goldfish_prep.inspect.binomial import band_limits, outside_band
from goldfish_prep.inspect.packed import eligible_per_row
from goldfish_prep.inspect.stats import compute_stats
from goldfish_prep_cli.main import cli

#: a pre-tokenized document that repeats 10 ids 300 times: each of its 10 windows recurs, so its
#: rate is a multiple of 1/10 (never 1/4) over ~3000 eligible positions: far outside the band
PERIODIC = {"id": "periodic", "input_ids": list(range(1000, 1010)) * 300}


def run(*args: Any) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def mask(folder: Path, records: list[dict[str, Any]], *options: Any) -> Path:
    folder.mkdir(parents=True)
    source = folder / "corpus.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    out = folder / "out"
    result = run("mask", source, "-o", out, "-q", "--id-field", "id", *options)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def records(real_texts: list[str]) -> list[dict[str, Any]]:
    texts = [t for t in real_texts[:200] if len(t) < 20000]
    return [{"id": f"doc-{i}", "text": t} for i, t in enumerate(texts)] + [PERIODIC]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory, records: list[dict[str, Any]]) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("stats")
    return {
        "documents": mask(base / "documents", records, "--shard-size", "200KB"),
        "packed": mask(base / "packed", records[:60], "--pack", "512", "--shard-size", "100KB"),
        "static": mask(base / "static", records[:30], "--strategy", "static", "--k", "3", "--seed", "1"),
    }


def rowwise(folder: Path) -> dict[str, list[int]]:
    """The reference: tokens and -100 labels counted one row at a time in Python."""
    tokens, dropped = [], []
    for _, table in iter_shards(folder):
        for row in table.select(["labels", "num_tokens"]).to_pylist():
            used = row["num_tokens"]
            tokens.append(used)
            dropped.append(row["labels"][:used].count(-100))
    return {"tokens": tokens, "dropped": dropped}


def test_document_figures_match_a_row_by_row_count(outputs: dict[str, Path], records: list[dict[str, Any]]) -> None:
    folder = outputs["documents"]
    stats = compute_stats(folder)
    reference = rowwise(folder)
    manifest = json.loads((folder / "goldfish_manifest.json").read_text())
    assert stats.names == [r["id"] for r in records]
    assert stats.tokens.tolist() == reference["tokens"] and stats.dropped.tolist() == reference["dropped"]
    assert stats.eligible.tolist() == reference["tokens"]  # goldfish spec v2 (the default): every position is eligible
    assert int(stats.eligible.sum()) == manifest["counts"]["eligible_tokens"]
    assert stats.overall_rate == pytest.approx(manifest["counts"]["drop_rate"])
    low, high = stats.overall_band()
    assert low < 0.25 < high and stats.column_disagreements == 0


def test_the_periodic_document_is_flagged(outputs: dict[str, Path]) -> None:
    stats = compute_stats(outputs["documents"])
    flagged = [stats.names[i] for i in stats.flagged]
    assert "periodic" in flagged
    assert len(flagged) <= 3  # real notices stay inside the 99.9% band (a stray one may not)
    rate = stats.dropped[-1] / stats.eligible[-1]
    assert abs(rate * 10 - round(rate * 10)) < 0.01  # whole tenths: the 10 windows decide everything


def test_packed_figures_are_per_row(outputs: dict[str, Path]) -> None:
    folder = outputs["packed"]
    stats = compute_stats(folder)
    reference = rowwise(folder)
    manifest = json.loads((folder / "goldfish_manifest.json").read_text())
    assert stats.packed and stats.unit == "row" and stats.names[:2] == ["row 0", "row 1"]
    assert stats.tokens.tolist() == reference["tokens"] and stats.dropped.tolist() == reference["dropped"]
    assert int(stats.eligible.sum()) == manifest["counts"]["eligible_tokens"]


def test_static_drops_every_kth_eligible_position(outputs: dict[str, Path]) -> None:
    stats = compute_stats(outputs["static"])
    assert stats.expected_rate == pytest.approx(1 / 3) and abs(stats.overall_rate - 1 / 3) < 0.01
    # k=3 from t = 1 + seed % 3 = 2: eligible positions 2, 3, 4, ...; dropped 2, 5, 8, ...
    assert stats.eligible.tolist() == [max(n - 2, 0) for n in stats.tokens.tolist()]
    assert stats.dropped.tolist() == [len(range(2, n, 3)) for n in stats.tokens.tolist()]


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 60), min_size=1, max_size=12),
    seq_len=st.integers(2, 50),
    lead=st.integers(0, 40),
    opens_mid_document=st.booleans(),
    strategy=st.sampled_from(["goldfish", "goldfish-v1", "static", "none"]),
    k=st.integers(2, 5),
    seed=st.integers(0, 7),
)
def test_eligible_per_row_equals_a_position_count(
    lengths: list[int], seq_len: int, lead: int, opens_mid_document: bool, strategy: str, k: int, seed: int
) -> None:
    """Rows cut documents anywhere; the row-boundary arithmetic must equal counting positions one by one."""
    name, _, version = strategy.partition("-v")
    config = MaskConfig(strategy=name, k=k, context_width=7, seed=seed, spec_version=int(version) if version else None)
    lead = lead if opens_mid_document else 0
    starts = np.cumsum([0] + lengths[:-1]) + (lengths[0] if opens_mid_document else 0)
    n = int(sum(lengths) + (lengths[0] if opens_mid_document else 0))
    local = np.arange(n) - np.concatenate([np.full(starts[0], -lead), np.repeat(starts, np.diff(np.append(starts, n)))])
    if strategy == "none":
        eligible = np.zeros(n, bool)
    elif strategy == "static":
        eligible = local >= 1 + seed % k
    elif strategy == "goldfish-v1":
        eligible = local >= 7
    else:  # goldfish spec v2: every position
        eligible = local >= 0
    row_starts = np.append(np.arange(0, n, seq_len), n)
    stream = TokenStream(
        Path("x"), np.zeros(n, np.int32), np.zeros(n, np.int32), row_starts, starts.astype(np.int64), np.zeros(0, np.int64), row_starts
    )
    per_row, next_lead = eligible_per_row(stream, lead, config)
    assert per_row.tolist() == [int(eligible[a:b].sum()) for a, b in zip(row_starts[:-1], row_starts[1:])]
    assert next_lead == int(local[-1]) + 1


def test_band_limits_are_exact_binomial_quantiles() -> None:
    for n, p in [(1, 0.25), (7, 0.5), (40, 0.25), (120, 1 / 3), (300, 1 / 32)]:
        cdf = np.cumsum([math.comb(n, x) * p**x * (1 - p) ** (n - x) for x in range(n + 1)])
        low, high = band_limits([n], p, 0.999)
        assert low[0] == int(np.searchsorted(cdf, 0.0005 - 1e-15))
        sf = 1 - np.concatenate([[0], cdf[:-1]])
        assert high[0] == max(x for x in range(n + 1) if sf[x] >= 0.0005 - 1e-12)


def test_the_normal_screen_never_hides_an_outlier() -> None:
    """outside_band computes exact tails only for screened candidates: check it against all counts."""
    for p in (0.5, 0.25, 1 / 8, 1 / 128):
        eligible = np.repeat(np.arange(0, 400), np.arange(0, 400) + 1)
        dropped = np.concatenate([np.arange(e + 1) for e in range(400)])
        low, high = band_limits(eligible, p)
        assert (outside_band(eligible, dropped, p) == ((dropped < low) | (dropped > high))).all()


def test_cli_text_report(outputs: dict[str, Path]) -> None:
    folder = outputs["documents"]
    result = run("stats", folder)
    stats = compute_stats(folder)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{folder}: strategy goldfish, k=4, context width 13, seed 0"
    assert (
        lines[3]
        == f"  eligible   {int(stats.eligible.sum()):>14,}   100.00% of all tokens: every position (the first 13 of a document hash the ids since its start)"
    )
    assert any(line.strip().startswith("periodic ") for line in lines)
    assert "◀ expected" in result.output


def test_cli_json(outputs: dict[str, Path]) -> None:
    result = run("stats", outputs["documents"], "--json")
    data = json.loads(result.output)
    assert data["unit"] == "document" and data["expected_rate"] == 0.25
    assert data["documents"][-1] == {**data["flagged"][-1], "id": "periodic"}
    assert set(data["documents"][0]) == {"id", "tokens", "eligible", "dropped", "rate"}
    assert sum(d["dropped"] for d in data["documents"]) == data["dropped"]


def test_cli_plot(outputs: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "rates.png"
    result = run("stats", outputs["packed"], "--plot", target)
    assert result.exit_code == 0 and result.output.endswith(f"Plot written to {target}\n")
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and target.stat().st_size > 20_000


def test_plot_without_matplotlib_says_what_to_install(outputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the optional extra were not installed
    result = run("stats", outputs["static"], "--plot", tmp_path / "x.png")
    assert result.exit_code == 1
    assert (
        result.stderr
        == "Error: --plot needs the Python package 'matplotlib', which is not installed. Fix: pip install 'goldfish-prep[plot]'\n"
    )


def test_an_output_without_documents(tmp_path: Path) -> None:
    out = mask(tmp_path / "empty", [{"id": "bad", "text": None}], "--on-error", "skip")
    result = run("stats", out, "--plot", tmp_path / "x.png")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[1] == "  documents               0   (1 read, 1 skipped)"
    assert result.stdout.endswith("No document has an eligible position: nothing to rate.\n")
    assert result.stderr == "Note: no plot written: no document has an eligible position\n" and not (tmp_path / "x.png").exists()


def test_folder_without_manifest(tmp_path: Path) -> None:
    (tmp_path / "data-00000.arrow").write_bytes(b"")
    result = run("stats", tmp_path)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {tmp_path}: no goldfish_manifest.json and state.json: not a goldfish-prep output, or an interrupted run. "
        "Rerun `goldfish-prep mask ... --resume` to finish it\n"
    )


def test_help_teaches() -> None:
    for command in ("stats", "show", "verify", "repeats"):
        result = run(command, "--help")
        assert result.exit_code == 0 and "Examples:" in result.output and f"goldfish-prep {command} shards/" in result.output
