"""Issue 25, the checksums readers check: xxh3-128 beside sha256, and outputs written before it stay readable.

`mask` records both checksums of each shard (from the one pass that writes it); `export`, `stats` and
the other readers check xxh3-128, about ten times faster than sha256, when the manifest has it, and
sha256 otherwise; `verify` checks both. An output whose manifest and records hold sha256 alone (as
every version before wrote them) is made here from a real run by taking xxh3_128 out, and must read,
export, verify and resume exactly as before.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import xxhash
from click.testing import CliRunner, Result

from goldfish_prep.format.commit import json_bytes
from goldfish_prep_cli.main import cli
from tests.faults_support import write_paragraphs
from tests.shards import train_bpe

MANIFEST = "goldfish_manifest.json"


def invoke(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A real `mask` run of two shards or more, and the command that made it (for --resume)."""
    root = tmp_path_factory.mktemp("checksums")
    corpus = root / "corpus.jsonl"
    write_paragraphs(corpus, 8)
    made = {"corpus": corpus, "tokenizer": train_bpe(root), "good": root / "good"}
    result = invoke(*mask_args(made, made["good"]))
    assert result.exit_code == 0, result.output
    assert len(manifest_of(made["good"])["shards"]) >= 2
    return made


def mask_args(made: dict[str, Path], out: Path, *more: str) -> list[object]:
    return ["mask", made["corpus"], "-o", out, "--tokenizer", made["tokenizer"], "--shard-size", "100KB", "-q", *more]


def manifest_of(folder: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    return data


def entries(folder: Path) -> list[dict[str, object]]:
    shards: list[dict[str, object]] = manifest_of(folder)["shards"]  # type: ignore[assignment]
    return shards


def rewrite_manifest(folder: Path, change: object) -> None:
    manifest = manifest_of(folder)
    for entry in manifest["shards"]:  # type: ignore[attr-defined]
        change(entry)  # type: ignore[operator]
    (folder / MANIFEST).write_bytes(json_bytes(manifest))


def as_written_before(folder: Path) -> None:
    """Take xxh3_128 out of the manifest and the shard records: the folder as an older goldfish-prep wrote it."""
    rewrite_manifest(folder, lambda entry: entry.pop("xxh3_128"))
    for record in sorted((folder / ".goldfish").glob("shard-*.json")):
        data = json.loads(record.read_text(encoding="utf-8"))
        del data["xxh3_128"]
        record.write_bytes(json_bytes(data))


def test_each_shard_record_and_entry_holds_both_checksums_of_its_bytes(made: dict[str, Path]) -> None:
    for entry in entries(made["good"]):
        data = (made["good"] / str(entry["filename"])).read_bytes()
        expected = {"sha256": hashlib.sha256(data).hexdigest(), "xxh3_128": xxhash.xxh3_128_hexdigest(data)}
        assert {key: entry[key] for key in expected} == expected
        record = made["good"] / ".goldfish" / str(entry["filename"]).replace("data-", "shard-").replace(".arrow", ".json")
        assert {key: json.loads(record.read_text())[key] for key in expected} == expected


def test_readers_check_xxh3_and_verify_checks_both(made: dict[str, Path], tmp_path: Path) -> None:
    """Which checksum each command checks, seen from outside: a wrong sha256 alone passes the readers (they
    check only the faster one) and not `verify`; a wrong xxh3_128 alone is refused by both."""
    wrong_sha = tmp_path / "wrong-sha256"
    shutil.copytree(made["good"], wrong_sha)
    rewrite_manifest(wrong_sha, lambda entry: entry.update(sha256="0" * 64))
    assert invoke("stats", wrong_sha).exit_code == 0
    verified = invoke("verify", wrong_sha)
    assert verified.exit_code == 1
    assert "sha256 " in verified.output and "differs from the manifest's 000000000000..." in verified.output

    wrong_xxh = tmp_path / "wrong-xxh3"
    shutil.copytree(made["good"], wrong_xxh)
    rewrite_manifest(wrong_xxh, lambda entry: entry.update(xxh3_128="0" * 32))
    first = wrong_xxh / str(entries(wrong_xxh)[0]["filename"])
    refused = invoke("stats", wrong_xxh)
    assert refused.exit_code == 1
    assert (
        refused.output.strip()
        .splitlines()[-1]
        .startswith(
            f"Error: {first}: xxh3_128 {xxhash.xxh3_128_hexdigest(first.read_bytes())}, the manifest records {'0' * 32}: "
            "the file changed after it was written."
        )
    )
    verified = invoke("verify", wrong_xxh)
    assert verified.exit_code == 1 and "xxh3_128 " in verified.output


def test_an_output_written_before_xxh3_reads_exports_and_verifies_as_before(made: dict[str, Path], tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(made["good"], old)
    as_written_before(old)
    assert all("xxh3_128" not in entry for entry in entries(old))
    assert invoke("verify", old, "-q").exit_code == 0
    assert invoke("stats", old).output == invoke("stats", made["good"]).output.replace(str(made["good"]), str(old))
    for source, name in ((made["good"], "new-export"), (old, "old-export")):
        exported = invoke("export", source, "-o", tmp_path / name, "--format", "nanogpt")
        assert exported.exit_code == 0, exported.output
    for suffix in (".bin", ".mask.bin"):
        assert (tmp_path / f"old-export{suffix}").read_bytes() == (tmp_path / f"new-export{suffix}").read_bytes()


def test_an_output_written_before_xxh3_is_still_checked_with_sha256(made: dict[str, Path], tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(made["good"], old)
    as_written_before(old)
    last = old / str(entries(old)[-1]["filename"])
    with last.open("ab") as out:
        out.write(b"\0" * 100)
    refused = invoke("export", old, "-o", tmp_path / "x", "--format", "nanogpt")
    assert refused.exit_code == 1
    recorded = entries(old)[-1]["sha256"]
    assert (
        refused.output.strip()
        .splitlines()[-1]
        .startswith(
            f"Error: {last}: sha256 {hashlib.sha256(last.read_bytes()).hexdigest()}, the manifest records {recorded}: "
            "the file changed after it was written."
        )
    )
    assert not (tmp_path / "x.bin").exists()
    verified = invoke("verify", old)
    assert verified.exit_code == 1 and "sha256 " in verified.output


def test_resume_of_an_output_written_before_xxh3_gives_a_fresh_runs_bytes(made: dict[str, Path], tmp_path: Path) -> None:
    """--resume keeps the older shards (their sha256 holds), adds xxh3_128 to their records, and so writes the
    manifest a fresh run writes; a shard that no longer hashes to its record is redone."""
    old = tmp_path / "old"
    shutil.copytree(made["good"], old)
    as_written_before(old)
    with (old / str(entries(old)[0]["filename"])).open("ab") as out:
        out.write(b"\0" * 100)
    resumed = invoke(*mask_args(made, old, "--resume"))
    assert resumed.exit_code == 0, resumed.output
    for path in [*sorted(made["good"].iterdir()), *sorted((made["good"] / ".goldfish").glob("shard-*.json"))]:
        if path.is_file():
            relative = path.relative_to(made["good"])
            assert (old / relative).read_bytes() == path.read_bytes(), relative
