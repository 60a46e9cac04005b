"""Issue 25, the readers' half: every command that reads an output checks it, and every command's writes are atomic.

Corrupted outputs are made from a real `mask` run the way they happen: a shard swapped in from another
run (same size, other bytes), garbage appended to a shard, and a manifest that lost a shard entry. Each
consumer must refuse each of them with one line naming the file and pointing to `verify` and
`--resume`, exit 1, and leave nothing that looks finished. Writes go onto a real full tmpfs, a
read-only mount and a missing folder (mounting needs root: skipped with the reason otherwise).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import xxhash
from click.testing import CliRunner, Result

from goldfish_prep_cli.main import cli
from tests.faults_support import write_paragraphs
from tests.shards import one_thread, train_bpe

__all__ = ["one_thread"]  # the module fixture: tiny models train on one thread

FIX = "rerun the `goldfish-prep mask` command that made it with --resume to redo what differs"
TINY_MODEL = ["--block-size", "32", "--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--batch-size", "2", "--device", "cpu"]
EXPORTS = ("nanogpt", "olmo", "megatron", "parquet", "hf")
OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def invoke(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def last_line(result: Result) -> str:
    return result.output.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two real runs over the same corpus (seeds 0 and 1), two shards each, and a one-step model."""
    root = tmp_path_factory.mktemp("made")
    tokenizer = train_bpe(root)
    corpus = root / "corpus.jsonl"
    write_paragraphs(corpus, 8)
    outputs = {"corpus": corpus, "tokenizer": tokenizer}
    for name, seed in (("good", "0"), ("other", "1")):
        args = ["mask", corpus, "-o", root / name, "--tokenizer", tokenizer, "--shard-size", "100KB", "--seed", seed, "-q"]
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        outputs[name] = root / name
    assert len(json.loads((root / "good" / "goldfish_manifest.json").read_text())["shards"]) >= 2
    trained = invoke("train", root / "good", "-o", root / "model", "--max-steps", "1", *TINY_MODEL)
    assert trained.exit_code == 0, trained.output
    outputs["model"] = root / "model"
    return outputs


def _last_shard(folder: Path) -> str:
    return str(json.loads((folder / "goldfish_manifest.json").read_text())["shards"][-1]["filename"])


def _checksum_line(folder: Path, shard: str) -> str:
    recorded = next(s["xxh3_128"] for s in json.loads((folder / "goldfish_manifest.json").read_text())["shards"] if s["filename"] == shard)
    actual = xxhash.xxh3_128_hexdigest((folder / shard).read_bytes())
    return (
        f"Error: {folder / shard}: xxh3_128 {actual}, the manifest records {recorded}: the file changed after it was written. "
        f"The output is damaged: `goldfish-prep verify {folder}` says what is wrong; {FIX}"
    )


def swapped(made: dict[str, Path], folder: Path) -> str:
    """The last shard replaced by the same shard of another run (seed 1): same rows, other labels."""
    shard = _last_shard(folder)
    shutil.copyfile(made["other"] / shard, folder / shard)
    return _checksum_line(folder, shard)


def appended(made: dict[str, Path], folder: Path) -> str:
    """Garbage after the last shard's end (Arrow's stream reader stops before it, so it reads fine)."""
    shard = _last_shard(folder)
    with (folder / shard).open("ab") as out:
        out.write(os.urandom(1000))
    return _checksum_line(folder, shard)


def lost_entry(made: dict[str, Path], folder: Path) -> str:
    """The manifest's last shard entry deleted (its shard and state.json untouched)."""
    path = folder / "goldfish_manifest.json"
    manifest = json.loads(path.read_text())
    shard = manifest["shards"].pop()["filename"]
    path.write_text(json.dumps(manifest))
    return (
        f"Error: {folder / 'state.json'}: lists {shard}, which the manifest's {len(manifest['shards'])} shard entries lack. "
        f"The output is damaged: `goldfish-prep verify {folder}` says what is wrong; {FIX}"
    )


CORRUPTIONS: dict[str, Callable[[dict[str, Path], Path], str]] = {"swapped": swapped, "appended": appended, "lost-entry": lost_entry}


def _rows(folder: Path) -> int:
    return int(json.loads((folder / "goldfish_manifest.json").read_text())["counts"]["documents_written"])


#: each consumer: (arguments after the command, given the folder and a scratch folder; what must not exist after)
CONSUMERS: dict[str, Callable[[dict[str, Path], Path, Path], tuple[list[object], list[Path]]]] = {
    **{
        f"export-{name}": (
            lambda made, data, out, name=name: (
                ["export", data, "-o", out / "x", "--format", name],
                [out / "x", out / "x.bin", out / "x.mask.bin", out / "x.json", out / "x.partial"],
            )
        )
        for name in EXPORTS
    },
    "stats": lambda made, data, out: (["stats", data, "--plot", out / "p.png"], [out / "p.png"]),
    "show": lambda made, data, out: (["show", data, "--row", _rows(made["good"]) - 1, "--html", out / "d.html"], [out / "d.html"]),
    "repeats": lambda made, data, out: (["repeats", data], []),
    "train": lambda made, data, out: (["train", data, "-o", out / "run", "--max-steps", "2", *TINY_MODEL], [out / "run" / "checkpoint.pt"]),
    "memorization": lambda made, data, out: (
        ["memorization", made["model"], data, "--json", "-q", "--suffix-length", "8", "--max-documents", "3", "--device", "cpu"],
        [],
    ),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
@pytest.mark.parametrize("consumer", list(CONSUMERS))
def test_every_reader_refuses_a_corrupted_output(made: dict[str, Path], tmp_path: Path, corruption: str, consumer: str) -> None:
    data = tmp_path / "data"
    shutil.copytree(made["good"], data)
    expected = CORRUPTIONS[corruption](made, data)
    out = tmp_path / "out"
    out.mkdir()
    args, absent = CONSUMERS[consumer](made, data, out)
    result = invoke(*args)
    assert result.exit_code == 1, result.output
    assert last_line(result) == expected
    assert "Traceback" not in result.output
    assert [path for path in absent if path.exists()] == []
    assert not any(path.name.endswith(".partial") for path in out.rglob("*"))


def test_the_intact_output_is_read_by_every_consumer(made: dict[str, Path], tmp_path: Path) -> None:
    """The same commands succeed on the output before it is damaged: the refusals above are the checks'."""
    for consumer, make in CONSUMERS.items():
        out = tmp_path / consumer
        out.mkdir()
        args, _ = make(made, made["good"], out)
        result = invoke(*args)
        assert result.exit_code == 0, (consumer, result.output)


def test_an_entry_whose_counts_were_edited_is_refused(made: dict[str, Path], tmp_path: Path) -> None:
    """A shard whose bytes are right but whose manifest entry (and totals) say other counts."""
    data = tmp_path / "data"
    shutil.copytree(made["good"], data)
    path = data / "goldfish_manifest.json"
    manifest = json.loads(path.read_text())
    manifest["shards"][0]["num_tokens"] += 1
    manifest["counts"]["tokens"] += 1
    path.write_text(json.dumps(manifest))
    entry = manifest["shards"][0]
    result = invoke("stats", data)
    assert result.exit_code == 1
    assert last_line(result).startswith(
        f"Error: {data / entry['filename']}: holds {entry['num_rows']:,} rows and {entry['num_tokens'] - 1:,} tokens, "
        f"the manifest lists {entry['num_rows']:,} rows and {entry['num_tokens']:,} tokens. The output is damaged"
    )


def test_resume_repairs_each_corruption_to_the_same_bytes(made: dict[str, Path], tmp_path: Path) -> None:
    """What the one line advises works: --resume gives back the uncorrupted output, byte for byte."""
    for corruption, damage in CORRUPTIONS.items():
        data = tmp_path / corruption
        shutil.copytree(made["good"], data)
        damage(made, data)
        args = ["mask", made["corpus"], "-o", data, "--tokenizer", made["tokenizer"], "--shard-size", "100KB", "--resume", "-q"]
        assert invoke(*args).exit_code == 0
        for path in sorted(made["good"].iterdir()):
            if path.is_file():
                assert (data / path.name).read_bytes() == path.read_bytes(), (corruption, path.name)


# --- verify: what datasets.load_from_disk needs -----------------------------------------------------


def _no_dataset_info(folder: Path) -> None:
    (folder / "dataset_info.json").unlink()


def _dataset_info_not_json(folder: Path) -> None:
    (folder / "dataset_info.json").write_text("{not json")


def _state_lists_a_missing_file(folder: Path) -> None:
    state = json.loads((folder / "state.json").read_text())
    state["_data_files"].append({"filename": "data-09999.arrow"})
    (folder / "state.json").write_text(json.dumps(state))


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (_no_dataset_info, "dataset_info.json: missing; datasets.load_from_disk needs it"),
        (_dataset_info_not_json, "dataset_info.json: not JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1)); datasets.load_from_disk would fail"),
        (_state_lists_a_missing_file, "state.json: lists ['data-00000.arrow', 'data-00001.arrow', 'data-09999.arrow'], the manifest ['data-00000.arrow', 'data-00001.arrow']: datasets would load other files"),
    ],
)  # fmt: skip
def test_verify_fails_where_load_from_disk_fails(
    made: dict[str, Path], tmp_path: Path, damage: Callable[[Path], None], problem: str
) -> None:
    import datasets

    data = tmp_path / "data"
    shutil.copytree(made["good"], data)
    assert len(json.loads((data / "goldfish_manifest.json").read_text())["shards"]) == 2
    damage(data)
    with pytest.raises((FileNotFoundError, ValueError)):  # missing files, or JSON that does not parse
        datasets.load_from_disk(str(data))
    result = invoke("verify", data)
    assert result.exit_code == 1
    assert last_line(result).startswith(f"Error: {data} failed verification: 1 problem(s), first: {problem}. ")


# --- writes onto a full disk, a read-only location, a missing folder ---------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB tmpfs (root only); always unmounted."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the full-disk and read-only cases run in the root CI image)")
    where = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> None:
    """Use up every byte left on ``disk``."""
    with (disk / "filler").open("wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        try:
            while True:
                out.write(b"\0" * 512)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def read_only(disk: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)


def snapshot(disk: Path) -> dict[str, bytes]:
    return {str(p.relative_to(disk)): p.read_bytes() for p in sorted(disk.rglob("*")) if p.is_file() and p.name != "filler"}


FULL = "(No space left on device): free space there or choose another location, then rerun"
READ_ONLY = "(Read-only file system): the location is not writable: choose a writable one (or fix its permissions), then rerun"


@pytest.mark.parametrize("spoil", ["full", "read-only"])
@pytest.mark.parametrize("name", EXPORTS)
def test_a_failed_export_keeps_the_previous_one(made: dict[str, Path], small_disk: Path, name: str, spoil: str) -> None:
    first = invoke("export", made["good"], "-o", small_disk / "x", "--format", name)
    assert first.exit_code == 0, first.output
    before = snapshot(small_disk)
    fill(small_disk) if spoil == "full" else read_only(small_disk)
    result = invoke("export", made["good"], "-o", small_disk / "x", "--format", name, "--overwrite")
    assert result.exit_code == 1
    assert last_line(result) == f"Error: cannot write the export {small_disk / 'x'} {FULL if spoil == 'full' else READ_ONLY}"
    assert snapshot(small_disk) == before  # the previous export whole, and no temporary file beside it


@pytest.mark.parametrize("spoil", ["full", "read-only"])
def test_show_html_and_stats_plot_fail_in_one_line(made: dict[str, Path], small_disk: Path, spoil: str) -> None:
    (small_disk / "d.html").write_text("previous page")
    (small_disk / "p.png").write_bytes(b"previous plot")
    fill(small_disk) if spoil == "full" else read_only(small_disk)
    reason = FULL if spoil == "full" else READ_ONLY
    shown = invoke("show", made["good"], "--row", "0", "--html", small_disk / "d.html")
    assert shown.exit_code == 1
    assert last_line(shown) == f"Error: cannot write the web page {small_disk / 'd.html'} {reason}"
    plotted = invoke("stats", made["good"], "--plot", small_disk / "p.png")
    assert plotted.exit_code == 1
    assert last_line(plotted) == f"Error: cannot write the plot {small_disk / 'p.png'} {reason}"
    assert snapshot(small_disk) == {"d.html": b"previous page", "p.png": b"previous plot"}


@pytest.mark.parametrize("spoil", ["full", "read-only"])
def test_a_failed_checkpoint_keeps_the_previous_one(made: dict[str, Path], small_disk: Path, spoil: str) -> None:
    run = small_disk / "run"
    first = invoke("train", made["good"], "-o", run, "--max-steps", "1", *TINY_MODEL)
    assert first.exit_code == 0, first.output
    before = snapshot(small_disk)
    fill(small_disk) if spoil == "full" else read_only(small_disk)
    result = invoke("train", made["good"], "-o", run, "--max-steps", "2", "--resume", *TINY_MODEL)
    assert result.exit_code == 1
    line = last_line(result)
    reason = FULL if spoil == "full" else READ_ONLY
    assert line == f"Error: cannot write the run's config {run / 'config.json'} {reason}"  # the first write of a resumed run
    assert snapshot(small_disk) == before


@pytest.mark.parametrize("spoil", ["full", "read-only"])
def test_a_checkpoint_that_cannot_be_written_leaves_the_previous_one(small_disk: Path, spoil: str) -> None:
    import torch

    from goldfish_prep.train.checkpoint import save_checkpoint

    save_checkpoint(small_disk, {"step": 1})
    before = snapshot(small_disk)
    fill(small_disk) if spoil == "full" else read_only(small_disk)
    with pytest.raises(OSError) as failed:
        save_checkpoint(small_disk, {"step": 2, "weights": torch.zeros(1 << 16)})
    reason = FULL if spoil == "full" else READ_ONLY
    assert str(failed.value) == f"cannot write the checkpoint {small_disk / 'checkpoint.pt'} {reason}"
    assert snapshot(small_disk) == before


def test_a_missing_folder_is_one_line_and_creates_nothing(made: dict[str, Path], tmp_path: Path) -> None:
    """show --html and stats --plot write into a folder that exists (export and train make theirs, as before)."""
    missing = tmp_path / "no-such-folder"
    because = f"(No such file or directory): the folder {missing} does not exist: create it or choose another location, then rerun"
    shown = invoke("show", made["good"], "--row", "0", "--html", missing / "d.html")
    assert (shown.exit_code, last_line(shown)) == (1, f"Error: cannot write the web page {missing / 'd.html'} {because}")
    plotted = invoke("stats", made["good"], "--plot", missing / "p.png")
    assert (plotted.exit_code, last_line(plotted)) == (1, f"Error: cannot write the plot {missing / 'p.png'} {because}")
    assert not missing.exists()


def test_an_export_into_a_folder_that_cannot_be_made_is_one_line(made: dict[str, Path], small_disk: Path) -> None:
    read_only(small_disk)
    for name in EXPORTS:
        result = invoke("export", made["good"], "-o", small_disk / "new" / "x", "--format", name)
        assert result.exit_code == 1
        assert last_line(result) == f"Error: cannot write the export {small_disk / 'new' / 'x'} {READ_ONLY}"
    assert snapshot(small_disk) == {}


def test_memorization_json_onto_a_full_disk_is_one_line(made: dict[str, Path], small_disk: Path) -> None:
    """--json prints to standard output: the file is the shell's, but the failure is still one line and exit 1."""
    fill(small_disk)
    args = ["memorization", made["model"], made["good"], "--json", "-q", "--suffix-length", "8", "--max-documents", "3", "--device", "cpu"]
    with (small_disk / "report.json").open("w") as out:
        code = "import sys; from goldfish_prep_cli.main import main; sys.argv[0] = 'goldfish-prep'; main()"
        done = subprocess.run([sys.executable, "-c", code, *map(str, args)], stdout=out, stderr=subprocess.PIPE, text=True, env=OFFLINE)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Error: cannot write the JSON report to standard output, the file it is redirected to (No space left on device): "
        "free space there or choose another location, then rerun"
    ]
    assert (small_disk / "report.json").read_bytes() == b""
