"""`goldfish-prep verify` catches every single-value corruption of a shard.

100 seeded random corruptions, each of one value in one shard of a real output (document
rows or packed rows): a label, an input id, a document id or source string, a count
column, a packed row's document start, or one byte of the file. Each must make `verify`
exit non-zero with an ``Error:`` line, never pass and never crash.

The checksums alone would catch all of these, so a second set rewrites the manifest's
sha256 to match the corrupted shard (as a careless repair or a buggy tool might): then
only the recomputed masks and counts stand between the damage and a trainer, and they
must still catch every change to a label, a kept token's id or a count.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import xxhash
from click.testing import CliRunner, Result

from goldfish_prep_cli.main import cli

MANIFEST = "goldfish_manifest.json"
RAW_CORRUPTIONS = 100
SEMANTIC_CORRUPTIONS = 40


def invoke(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory, real_texts: list[str]) -> dict[str, Path]:
    """Two small real outputs, in document rows and in packed rows, of several shards each."""
    workdir = tmp_path_factory.mktemp("corruption")
    corpus = workdir / "corpus.jsonl"
    lines = [json.dumps({"text": text[:4000], "id": f"doc-{i}"}) for i, text in enumerate(real_texts[:60])]
    lines.insert(7, '{"text": null, "id": "bad"}')  # a skipped record, so the counts have something to reconcile
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    made = {}
    for layout, options in (("documents", ()), ("packed", ("--pack", "512"))):
        out = workdir / layout
        result = invoke("mask", corpus, "-o", out, "-q", "--shard-size", "60KB", "--id-field", "id", "--on-error", "skip", *options)
        assert result.exit_code == 0, result.output
        assert len(list(out.glob("data-*.arrow"))) >= 3
        made[layout] = out
    return made


@pytest.mark.parametrize("layout", ["documents", "packed"])
def test_intact_outputs_verify(outputs: dict[str, Path], layout: str) -> None:
    """The control: without corruption, verify passes (so a failure below is the corruption's doing)."""
    result = invoke("verify", outputs[layout], "-q")
    assert result.exit_code == 0, result.output


# ----------------------------------------------------------------------------- corrupting one value


@dataclasses.dataclass
class Shard:
    path: Path
    columns: dict[str, list[Any]]
    schema: pa.Schema

    @classmethod
    def read(cls, path: Path) -> Shard:
        with pa.memory_map(str(path)) as source:
            table = pa.ipc.open_stream(source).read_all()
        return cls(path, table.to_pydict(), table.schema)

    def write(self) -> None:
        table = pa.table(self.columns, schema=self.schema)
        with pa.OSFile(str(self.path), "wb") as sink, pa.ipc.new_stream(sink, self.schema) as writer:
            writer.write_table(table)

    def token(self, rng: random.Random, kept: bool | None = None) -> tuple[int, int]:
        """A random (row, position) holding a real token (not packing padding); ``kept``: label != -100."""
        counts = self.columns["num_tokens"]
        while True:
            row = rng.randrange(len(counts))
            if counts[row] == 0:
                continue
            position = rng.randrange(counts[row])
            label = self.columns["labels"][row][position]
            if kept is None or kept == (label != -100):
                return row, position


def _label(shard: Shard, rng: random.Random) -> str:
    row, position = shard.token(rng)
    labels = shard.columns["labels"][row]
    token = shard.columns["input_ids"][row][position]
    labels[position] = token if labels[position] == -100 else rng.choice([-100, token + 1, max(token - 1, 0) if token else 1])
    return f"label row {row} position {position}"


def _kept_input_id(shard: Shard, rng: random.Random) -> str:
    row, position = shard.token(rng, kept=True)
    ids = shard.columns["input_ids"][row]
    ids[position] = (ids[position] + rng.randrange(1, 5000)) % 100_000
    return f"kept input id row {row} position {position}"


def _any_input_id(shard: Shard, rng: random.Random) -> str:
    row, position = shard.token(rng)
    ids = shard.columns["input_ids"][row]
    ids[position] = (ids[position] + rng.randrange(1, 5000)) % 100_000
    return f"input id row {row} position {position}"


def _count(column: str) -> Callable[[Shard, random.Random], str]:
    def corrupt(shard: Shard, rng: random.Random) -> str:
        row = rng.randrange(len(shard.columns[column]))
        shard.columns[column][row] += rng.choice([-1, 1, 7])
        return f"{column} row {row}"

    return corrupt


def _string(column: str) -> Callable[[Shard, random.Random], str]:
    def corrupt(shard: Shard, rng: random.Random) -> str:
        row = rng.randrange(len(shard.columns[column]))
        shard.columns[column][row] = shard.columns[column][row] + "x"
        return f"{column} row {row}"

    return corrupt


def _doc_start(shard: Shard, rng: random.Random) -> str:
    rows = [row for row, starts in enumerate(shard.columns["doc_starts"]) if starts]
    row = rng.choice(rows)
    starts = shard.columns["doc_starts"][row]
    index = rng.randrange(len(starts))
    starts[index] = starts[index] + 1 if starts[index] + 1 < shard.columns["num_tokens"][row] else starts[index] - 1
    return f"doc_starts row {row}"


Corruption = Callable[[Shard, random.Random], str]
VALUE_CORRUPTIONS: dict[str, list[Corruption]] = {
    "documents": [_label, _any_input_id, _string("id"), _string("source"), _count("num_tokens"), _count("num_dropped")],
    "packed": [_label, _any_input_id, _count("num_tokens"), _count("num_dropped"), _doc_start],
}
#: changes that the recomputed masks and counts must catch even with a matching checksum
SEMANTIC: list[Corruption] = [_label, _kept_input_id, _count("num_tokens"), _count("num_dropped")]


def _flip_byte(path: Path, rng: random.Random) -> str:
    data = bytearray(path.read_bytes())
    position = rng.randrange(len(data))
    data[position] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))
    return f"byte {position} of {path.name}"


def _copy(outputs: dict[str, Path], layout: str, tmp_path: Path) -> Path:
    folder = tmp_path / layout
    shutil.copytree(outputs[layout], folder)
    return folder


def _reseal(folder: Path, shard: Path) -> None:
    """Rewrite the manifest's checksums of ``shard`` to match its corrupted bytes."""
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    for entry in manifest["shards"]:
        if entry["filename"] == shard.name:
            entry["sha256"] = hashlib.sha256(shard.read_bytes()).hexdigest()
            entry["xxh3_128"] = xxhash.xxh3_128_hexdigest(shard.read_bytes())
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def assert_caught(result: Result, what: str) -> None:
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"verify crashed on {what}: {type(result.exception).__name__}: {result.exception}") from result.exception
    assert result.exit_code != 0, f"verify passed a shard with a corrupted {what}:\n{result.output}"
    assert result.stderr.strip().splitlines()[-1].startswith("Error: "), result.output


@pytest.mark.parametrize("seed", range(RAW_CORRUPTIONS))
def test_verify_catches_a_corrupted_value(tmp_path: Path, outputs: dict[str, Path], seed: int) -> None:
    rng = random.Random(seed)
    layout = rng.choice(["documents", "packed"])
    folder = _copy(outputs, layout, tmp_path)
    path = rng.choice(sorted(folder.glob("data-*.arrow")))
    if rng.random() < 0.3:
        what = _flip_byte(path, rng)
    else:
        shard = Shard.read(path)
        what = rng.choice(VALUE_CORRUPTIONS[layout])(shard, rng)
        shard.write()
    assert_caught(invoke("verify", folder, "-q"), f"{layout} {path.name}: {what}")


@pytest.mark.parametrize("seed", range(SEMANTIC_CORRUPTIONS))
def test_verify_catches_a_corrupted_value_behind_a_matching_checksum(tmp_path: Path, outputs: dict[str, Path], seed: int) -> None:
    rng = random.Random(1000 + seed)
    layout = rng.choice(["documents", "packed"])
    folder = _copy(outputs, layout, tmp_path)
    path = rng.choice(sorted(folder.glob("data-*.arrow")))
    shard = Shard.read(path)
    what = rng.choice(SEMANTIC)(shard, rng)
    shard.write()
    _reseal(folder, path)
    assert_caught(invoke("verify", folder, "-q"), f"{layout} {path.name} (checksum resealed): {what}")


def test_a_rewritten_but_unchanged_shard_with_resealed_checksum_passes(tmp_path: Path, outputs: dict[str, Path]) -> None:
    """The resealing above is sound: rewriting a shard's values unchanged and resealing verifies."""
    folder = _copy(outputs, "documents", tmp_path)
    path = sorted(folder.glob("data-*.arrow"))[1]
    Shard.read(path).write()
    _reseal(folder, path)
    result = invoke("verify", folder, "-q")
    assert result.exit_code == 0, result.output
