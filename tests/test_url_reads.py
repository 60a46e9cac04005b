"""Every consumer reads an output folder by URL, against a real S3-protocol server (``tests/s3_server.py``).

One small output of the real `mask` command (a real byte-level BPE tokenizer, a
document and a packed layout) is made once, uploaded as it is, and each reading
command runs through the CLI on ``s3://outputs/...``, configured only as a user
configures it (``AWS_ENDPOINT_URL`` and the credentials variables, or
``--storage-options``). What it prints must be what it prints for the local copy
(the folder's name aside), exports byte for byte the same files, damage on the
store the same one line, and every refusal of the store one ``Error:`` line
that carries no secret.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import tempfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import Result

from goldfish_prep.format import open_shards
from goldfish_prep.format import url_folder as url_folder_module
from goldfish_prep.readers.remote import use_storage_options
from tests import s3_server as fixtures
from tests.s3_server import FaultyProxy, S3Server, error_line, run
from tests.shards import LICENSES, one_thread, train_bpe  # noqa: F401  (one_thread: an autouse fixture, registered by import)

s3_server = fixtures.s3_server
s3_env = fixtures.s3_env

BUCKET = "outputs"
TINY_MODEL = ("--block-size", "32", "--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--batch-size", "2", "--device", "cpu")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A document output (several shards) and a packed one, made by the real `mask` command."""
    root = tmp_path_factory.mktemp("outputs")
    tokenizer = train_bpe(root)
    paragraphs = [
        p.strip() for name in ("Apache-2.0", "MPL-2.0") for p in re.split(r"\n\s*\n", (LICENSES / name).read_text()) if len(p) > 150
    ]
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"doc-{i}", "text": t}) + "\n" for i, t in enumerate(paragraphs[:60])), encoding="utf-8")
    made = {}
    for name, extra in (("docs", ()), ("packed", ("--pack", "128"))):
        result = run("mask", corpus, "-o", root / name, "-q", "--tokenizer", tokenizer, "--id-field", "id", "--shard-size", "6KB", *extra)
        assert result.exit_code == 0, result.output
        made[name] = root / name
    assert len(list(made["docs"].glob("data-*.arrow"))) >= 3
    return made


@pytest.fixture(scope="module")
def uploaded(s3_server: S3Server, outputs: dict[str, Path]) -> dict[str, Path]:
    """The outputs as s3://outputs/docs/ and s3://outputs/packed/."""
    for name, folder in outputs.items():
        s3_server.upload(BUCKET, folder, f"{name}/")
    return outputs


@dataclasses.dataclass
class Store:
    """The server, reached as a user reaches it (``s3_env``), and the local copies of what it holds."""

    server: S3Server
    local: dict[str, Path]


@pytest.fixture
def store(s3_env: S3Server, uploaded: dict[str, Path]) -> Iterator[Store]:
    yield Store(s3_env, uploaded)
    use_storage_options(None)  # what a command set would stay for the next one in this process


def same_output(args: list[str], local: Path, url: str, env: dict[str, str] | None = None) -> tuple[Result, Result]:
    """Run ``args`` with ``{}`` as the local folder and as its URL; both results, the URL's printed as for the local one."""
    on_disk = run(*[str(local) if a == "{}" else a for a in args])
    on_store = run(*[url if a == "{}" else a for a in args], env=env)
    assert on_store.output.replace(url, str(local)) == on_disk.output, on_store.output
    assert on_store.exit_code == on_disk.exit_code
    return on_disk, on_store


# --- the same output as for the local copy ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("docs", ["stats", "{}"]),
        ("docs", ["stats", "{}", "--json"]),
        ("packed", ["stats", "{}"]),
        ("docs", ["show", "{}", "--row", "7", "--no-color"]),
        ("docs", ["show", "{}", "--id", "doc-41", "--no-color"]),
        ("packed", ["show", "{}", "--row", "3", "--no-color"]),
        ("docs", ["verify", "{}"]),
        ("docs", ["verify", "{}", "--num-proc", "2", "-q"]),
        ("packed", ["verify", "{}"]),
        ("docs", ["repeats", "{}", "--min-length", "12"]),
        ("packed", ["repeats", "{}", "--min-length", "12", "--json"]),
    ],
    ids=lambda value: value if isinstance(value, str) else " ".join(value[:1] + value[2:]),
)
def test_reading_commands_print_for_a_url_what_they_print_for_the_local_copy(store: Store, name: str, args: list[str]) -> None:
    on_disk, _ = same_output(args, store.local[name], f"s3://{BUCKET}/{name}")
    assert on_disk.exit_code == 0, on_disk.output


@pytest.mark.parametrize("format_name", ["nanogpt", "olmo", "megatron", "parquet", "hf"])
def test_exports_from_a_url_are_the_same_files_byte_for_byte(store: Store, tmp_path: Path, format_name: str) -> None:
    local = store.local["docs"]
    written = {}
    for where, source in (("disk", str(local)), ("store", f"s3://{BUCKET}/docs")):
        out = tmp_path / where / ("train" if format_name == "nanogpt" else "export")
        out.parent.mkdir()
        result = run("export", source, "-o", out, "--format", format_name)
        assert result.exit_code == 0, result.output
        written[where] = {path.relative_to(out.parent): path.read_bytes() for path in sorted(out.parent.rglob("*")) if path.is_file()}
    assert written["store"].keys() == written["disk"].keys()
    for name, data in written["disk"].items():
        # the export record names its source folder, as it was given: the one difference
        assert written["store"][name].replace(f"s3://{BUCKET}/docs".encode(), str(local).encode()) == data, name


def untimed(metrics: Path) -> list[dict[str, Any]]:
    """The training log without its timings, which differ from run to run, and the run's own folder."""
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    return [
        {key: value for key, value in line.items() if not key.endswith("_per_s") and key not in ("seconds", "run_dir")} for line in lines
    ]


def test_train_and_memorization_read_a_url(store: Store, tmp_path: Path) -> None:
    local = store.local["docs"]
    runs = {}
    for where, data in (("disk", str(local)), ("store", f"s3://{BUCKET}/docs")):
        runs[where] = tmp_path / where
        args = ["train", data, "-o", runs[where], "--max-steps", "2", "--log-interval", "1", "-q", "--eval-data", data, *TINY_MODEL]
        result = run(*args)
        assert result.exit_code == 0, result.output
    disk_log, store_log = (untimed(runs[w] / "metrics.jsonl") for w in ("disk", "store"))
    assert store_log == disk_log and "loss" in disk_log[0]  # the same rows, in the same order: the same losses
    same_output(
        ["memorization", str(runs["disk"]), "{}", "-q", "--suffix-length", "8", "--max-documents", "4"], local, f"s3://{BUCKET}/docs"
    )


def test_storage_options_carry_the_credentials(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(variable)
    url = f"s3://{BUCKET}/docs"
    without = run("stats", url)
    assert error_line(without).startswith(f"Error: {url}: ")
    options = json.dumps({"key": fixtures.DEFAULT_KEY[0], "secret": fixtures.DEFAULT_KEY[1]})
    same_output(["stats", "{}", "--storage-options", options], store.local["docs"], url)


def test_datasets_loads_the_output_from_the_store(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``load_from_disk`` (which copies the shards to a temporary folder first) and ``load_dataset("arrow",
    streaming=True)`` (which streams them) give the rows of the local copy, credentials passed as storage_options."""
    import datasets

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # load_from_disk's temporary copy goes here
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(variable)
    options = {"key": fixtures.DEFAULT_KEY[0], "secret": fixtures.DEFAULT_KEY[1], "client_kwargs": {"endpoint_url": store.server.endpoint}}
    local = datasets.load_from_disk(str(store.local["docs"]))
    loaded = datasets.load_from_disk(f"s3://{BUCKET}/docs", storage_options=options)
    assert loaded.column_names == local.column_names and loaded.num_rows == local.num_rows > 0
    assert loaded.to_dict() == local.to_dict()
    streamed = datasets.load_dataset(
        "arrow", data_files=f"s3://{BUCKET}/docs/data-*.arrow", split="train", streaming=True, storage_options=options
    )
    assert list(streamed) == list(local)


# --- damage on the store: the same one line as on disk --------------------------------------------


def damaged_copies(store: Store, tmp_path: Path, damage: Any) -> tuple[Path, str]:
    """A local copy of the document output with ``damage`` done to it, and the same copy uploaded."""
    copy = tmp_path / "damaged"
    shutil.copytree(store.local["docs"], copy)
    damage(copy)
    prefix = tmp_path.name[-40:].lower().replace("_", "-")
    store.server.upload(BUCKET, copy, f"{prefix}/")
    return copy, f"s3://{BUCKET}/{prefix}"


def replace_shard(folder: Path) -> None:
    (folder / "data-00001.arrow").write_bytes((folder / "data-00002.arrow").read_bytes())


def drop_manifest_entry(folder: Path) -> None:
    manifest = json.loads((folder / "goldfish_manifest.json").read_text())
    del manifest["shards"][1]
    (folder / "goldfish_manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage", [replace_shard, drop_manifest_entry], ids=["shard-replaced", "manifest-entry-missing"])
@pytest.mark.parametrize(
    "args",
    [
        ["stats", "{}"],
        ["show", "{}", "--row", "ROW"],
        ["export", "{}", "-o", "OUT"],
        ["repeats", "{}"],
        ["verify", "{}"],
        ["train", "{}", "-o", "OUT", "--max-steps", "1", *TINY_MODEL],
    ],
    ids=lambda args: args[0],
)
def test_damage_on_the_store_is_refused_as_on_disk(store: Store, tmp_path: Path, damage: Any, args: list[str]) -> None:
    copy, url = damaged_copies(store, tmp_path, damage)
    first_of_shard_1 = json.loads((store.local["docs"] / "goldfish_manifest.json").read_text())["shards"][0]["num_rows"]
    args = [{"OUT": str(tmp_path / "export"), "ROW": str(first_of_shard_1)}.get(a, a) for a in args]
    on_disk, on_store = same_output(args, copy, url)
    assert on_disk.exit_code == 1
    assert "Error: " in on_store.output and "Traceback" not in on_store.output


# --- what the store refuses: one line each, no secret ----------------------------------------------


MISSING = {
    "bucket": ("s3://no-such-bucket-here/docs", "the bucket does not exist ("),
    "prefix": (f"s3://{BUCKET}/no-such-prefix", "no such folder. Pass the output folder of `goldfish-prep mask`"),
}


@pytest.mark.parametrize("missing", MISSING)
@pytest.mark.parametrize("command", ["stats", "show", "verify", "repeats", "export", "train", "memorization"])
def test_a_bucket_or_prefix_that_does_not_exist(store: Store, tmp_path: Path, command: str, missing: str) -> None:
    url, cause = MISSING[missing]
    args = {
        "show": [url, "--row", "0"],
        "export": [url, "-o", tmp_path / "out"],
        "train": [url, "-o", tmp_path / "run"],
        "memorization": [tmp_path, url],
    }.get(command, [url])
    line = error_line(run(command, *args))
    assert line.startswith(f"Error: {url}: {cause}"), line


@pytest.mark.parametrize("who", ["wrong-secret", "unknown-key", "no-permission"])
def test_credentials_the_store_refuses(store: Store, who: str) -> None:
    url = f"s3://{BUCKET}/docs"
    with store.server.checking_credentials() as (allowed, denied):
        key = {
            "wrong-secret": (allowed[0], "not-the-secret-0123"),
            "unknown-key": ("AKIAUNKNOWN0000", "whatever-secret-42"),
            "no-permission": denied,
        }[who]
        result = run("stats", url, env=store.server.env(key=key))
    line = error_line(result)
    assert line.startswith(f"Error: {url}: the store refused access ("), line
    assert "AWS_ACCESS_KEY_ID" in line and key[1] not in result.output


def test_a_secret_in_storage_options_is_never_shown(store: Store) -> None:
    url = f"s3://{BUCKET}/docs"
    with store.server.checking_credentials():
        result = run("verify", url, "--storage-options", json.dumps({"key": "AKIAUNKNOWN0000", "secret": "sup3r-s3cret-value"}))
    assert error_line(result).startswith(f"Error: {url}: the store refused access (")
    assert "sup3r-s3cret-value" not in result.output


def test_a_shard_whose_reads_fail_once_is_retried_and_read_whole(store: Store) -> None:
    shard = f"/{BUCKET}/docs/data-00001.arrow"
    proxy = FaultyProxy(
        store.server.endpoint,
        lambda method, path, attempt: ("503", "cut")[attempt] if method == "GET" and path.startswith(shard) and attempt < 2 else None,
    )
    try:
        same_output(["stats", "{}"], store.local["docs"], f"s3://{BUCKET}/docs", env=store.server.env(endpoint=proxy.endpoint))
    finally:
        proxy.close()
    assert proxy.faults == 2, proxy.counts


def test_a_shard_the_store_keeps_failing_is_one_line(store: Store) -> None:
    shard = f"/{BUCKET}/docs/data-00001.arrow"
    proxy = FaultyProxy(store.server.endpoint, lambda method, path, attempt: "503" if method == "GET" and path.startswith(shard) else None)
    options = json.dumps({"config_kwargs": {"retries": {"max_attempts": 1}}})  # s3fs's and botocore's default retries take minutes
    try:
        result = run("stats", f"s3://{BUCKET}/docs", "--storage-options", options, env=store.server.env(endpoint=proxy.endpoint))
    finally:
        proxy.close()
    line = error_line(result)
    assert line.startswith(f"Error: s3://{BUCKET}/docs/data-00001.arrow: the request failed after retries ("), line


def test_a_missing_provider_package_names_the_extra(tmp_path: Path) -> None:
    code = "import sys; sys.modules['gcsfs'] = None\nfrom goldfish_prep_cli.main import cli\ncli(['stats', 'gs://bucket/shards'])\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 1
    expected = "Error: gs://bucket/shards: gs:// URLs need the Python package 'gcsfs', which is not installed. Fix: pip install 'goldfish-prep[gcs]'"
    assert result.stderr.strip() == expected


# --- reads stream ---------------------------------------------------------------------------------


def pretokenized_output(root: Path, documents: int) -> Path:
    """A one-shard output of ``documents`` pre-tokenized documents of 400 ids (``mask`` writes 256 per record batch)."""
    values = (np.arange(documents * 400, dtype=np.int64) * 7 % 500).astype(np.int32)
    ids = pa.ListArray.from_arrays(pa.array(np.arange(0, documents * 400 + 1, 400, dtype=np.int32)), pa.array(values))
    pq.write_table(pa.table({"input_ids": ids}), root / f"ids-{documents}.parquet")
    out = root / f"out-{documents}"
    result = run("mask", root / f"ids-{documents}.parquet", "-o", out, "-q", "--shard-size", "1GB", "--tokenizer", train_bpe(root))
    assert result.exit_code == 0, result.output
    return out


def peak_traced_bytes(url: str, read: Any) -> int:
    """The most memory Python held at once (tracemalloc) while ``read(open_shards(url))`` ran, the connection made first."""
    shards = open_shards(url)  # the store's client (botocore's service models) is loaded before tracing starts
    tracemalloc.start()
    try:
        read(shards)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def every_document(shards: Any) -> None:
    assert sum(1 for _ in shards.documents()) > 0


def test_memory_stays_flat_as_a_shard_grows(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(url_folder_module, "READ_BLOCK", 256 << 10)  # small blocks, so that small shards span many
    peaks = {}
    for documents in (1000, 4000):
        out = pretokenized_output(tmp_path, documents)
        shard = out / "data-00000.arrow"
        with pa.memory_map(str(shard)) as source:
            assert sum(1 for _ in pa.ipc.open_stream(source)) >= 4  # written in many record batches
        store.server.upload(BUCKET, out, f"big-{documents}/")
        use_storage_options(None)
        peaks[documents] = (peak_traced_bytes(f"s3://{BUCKET}/big-{documents}", every_document), shard.stat().st_size)
    (small, small_size), (large, large_size) = peaks[1000], peaks[4000]
    assert large_size > 3.5 * small_size
    assert large < 1.5 * small, peaks  # 4x the shard, about the same memory: one record batch and one block at a time
    assert large < large_size / 3, peaks
    whole = peak_traced_bytes(f"s3://{BUCKET}/big-4000", lambda shards: shards.table(0))
    assert whole > large_size, (whole, peaks)  # the measure sees a shard held whole: it would see one held by mistake
