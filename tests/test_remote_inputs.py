"""Inputs by URL against a real S3-protocol server (moto's server mode, ``tests/s3_server.py``).

The CLI reaches the server as a user reaches an S3-compatible store: through
s3fs, configured only by ``AWS_ENDPOINT_URL`` and the credentials variables.
Masking a bucket's objects must give the shards that masking the same files on
local disk gives (only the input paths in ids and the manifest differ), and
every failure of the store (no bucket, no key, wrong or unpermitted
credentials, a store that errs or stalls) is one ``Error:`` line that carries
no secret.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xxhash

from goldfish_prep.readers import remote
from goldfish_prep.readers.redact import scrub
from tests import s3_server as fixtures
from tests.output_tables import manifest, shard_tables
from tests.s3_server import FaultyProxy, S3Server, error_line, run

# the server (one per session) and the environment a user sets to reach it (see tests/s3_server.py)
s3_server = fixtures.s3_server
s3_env = fixtures.s3_env

OPTIONS = ("-q", "--shard-size", "40KB")
BUCKET = "corpora"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, real_texts: list[str]) -> Path:
    """A folder of every format: plain, .gz and .zst JSON lines, text, Parquet, Arrow, a hidden file and one of unknown format."""
    root = tmp_path_factory.mktemp("local")
    folder = root / "corpus"
    (folder / "sub").mkdir(parents=True)
    texts = [t for t in real_texts if 0 < len(t) < 12_000][:90]
    lines = "".join(json.dumps({"text": t}) + "\n" for t in texts[:30]).encode()
    (folder / "a.jsonl").write_bytes(lines)
    (folder / "sub" / "b.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps({"text": t}) + "\n" for t in texts[30:50]).encode()))
    with pa.CompressedOutputStream(str(folder / "sub" / "c.jsonl.zst"), "zstd") as out:
        out.write("".join(json.dumps({"text": t}) + "\n" for t in texts[50:60]).encode())
    (folder / "d.txt").write_text(texts[60], encoding="utf-8")
    pq.write_table(pa.table({"text": texts[61:80]}), folder / "e.parquet", row_group_size=7)
    with pa.OSFile(str(folder / "f.arrow"), "wb") as sink, pa.ipc.new_file(sink, pa.schema([("text", pa.string())])) as writer:
        writer.write_table(pa.table({"text": texts[80:90]}))
    (folder / ".hidden.jsonl").write_bytes(lines[:100])
    (folder / "notes.md").write_text("not an input\n", encoding="utf-8")
    return folder


@pytest.fixture
def bucket(s3_env: S3Server, corpus: Path) -> S3Server:
    """The corpus uploaded as s3://corpora/corpus/..."""
    s3_env.upload(BUCKET, corpus, "corpus/")
    return s3_env


def mask_both(corpus: Path, tmp_path: Path, local_spec: str, url: str, *extra: str) -> tuple[Path, Path]:
    """Mask ``local_spec`` (relative to the corpus's parent) and ``url``; return both output folders."""
    local, remote_out = tmp_path / "local-out", tmp_path / "s3-out"
    cwd = os.getcwd()
    os.chdir(corpus.parent)
    try:
        assert run("mask", local_spec, "-o", local, *OPTIONS, *extra).exit_code == 0
    finally:
        os.chdir(cwd)
    result = run("mask", url, "-o", remote_out, *OPTIONS, *extra)
    assert result.exit_code == 0, result.output
    return local, remote_out


# --- the same shards as from local disk ------------------------------------------------------


@pytest.mark.parametrize(
    ("local_spec", "url"),
    [
        ("corpus/", f"s3://{BUCKET}/corpus/"),
        ("corpus", f"s3://{BUCKET}/corpus"),
        ("corpus/**/*.jsonl*", f"s3://{BUCKET}/corpus/**/*.jsonl*"),
        ("corpus/sub/b.jsonl.gz", f"s3://{BUCKET}/corpus/sub/b.jsonl.gz"),
        ("corpus/e.parquet", f"s3://{BUCKET}/corpus/e.parquet"),
        ("corpus/d.txt", f"s3://{BUCKET}/corpus/d.txt"),
    ],
    ids=["prefix", "prefix-without-slash", "glob", "gzip-object", "parquet-object", "text-object"],
)
def test_s3_inputs_give_the_shards_of_the_same_local_files(
    bucket: S3Server, corpus: Path, tmp_path: Path, local_spec: str, url: str
) -> None:
    local, on_s3 = mask_both(corpus, tmp_path, local_spec, url)
    local_tables, s3_tables = shard_tables(local), shard_tables(on_s3, f"s3://{BUCKET}/")
    assert len(s3_tables) == len(local_tables) >= 1
    for got, expected in zip(s3_tables, local_tables):
        assert got.equals(expected)
    local_manifest, s3_manifest = manifest(local), manifest(on_s3)
    assert s3_manifest["counts"] == local_manifest["counts"]
    # every input recorded with the size and hash of its bytes, as local inputs are: only the path differs
    assert [{**entry, "path": entry["path"].removeprefix(f"s3://{BUCKET}/")} for entry in s3_manifest["inputs"]] == local_manifest["inputs"]
    assert all("xxh3_128" in entry and entry["size"] > 0 for entry in s3_manifest["inputs"])


def test_a_prefix_reads_as_a_folder_does(bucket: S3Server, corpus: Path, tmp_path: Path) -> None:
    _, on_s3 = mask_both(corpus, tmp_path, "corpus/", f"s3://{BUCKET}/corpus/")
    recorded = manifest(on_s3)
    paths = [entry["path"] for entry in recorded["inputs"]]
    base = f"s3://{BUCKET}/corpus/"
    # sorted part by part, as a local walk: the sub/ folder's files where "sub" sorts
    assert paths == [base + name for name in ("a.jsonl", "d.txt", "e.parquet", "f.arrow", "sub/b.jsonl.gz", "sub/c.jsonl.zst")]
    assert sorted(recorded["ignored_inputs"]) == [base + ".hidden.jsonl", base + "notes.md"]


def test_resume_with_url_inputs_keeps_finished_shards(bucket: S3Server, tmp_path: Path) -> None:
    out = tmp_path / "out"
    url = f"s3://{BUCKET}/corpus/"
    assert run("mask", url, "-o", out, *OPTIONS).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.glob("data-*.arrow")}
    assert len(before) >= 3
    (out / "goldfish_manifest.json").unlink()
    last = sorted(before)[-1]
    (out / last).unlink()
    result = run("mask", url, "-o", out, *OPTIONS, "--resume")
    assert result.exit_code == 0, result.output
    assert {p.name: p.read_bytes() for p in out.glob("data-*.arrow")} == before


def test_a_shard_record_sees_an_object_by_its_etag(bucket: S3Server, corpus: Path) -> None:
    """S3's LastModified has whole seconds: an object rewritten to the same size within the second it was written
    differs from the one a shard was made from only by its ETag. So the ETag is part of what a shard record saw
    (``InputSnapshot.seen``, digested into ``"inputs_seen"``), and a resumed task redoes such a shard. Which second
    a write lands in cannot be chosen here: the rewrite is staged by giving the object the same time."""
    import dataclasses

    from goldfish_prep.format.ownership import inputs_seen
    from goldfish_prep.readers.options import InputSource
    from goldfish_prep.readers.snapshot import InputSnapshot

    url = f"s3://{BUCKET}/corpus/a.jsonl"
    first = InputSnapshot(InputSource(url, "jsonl"))
    data = (corpus / "a.jsonl").read_bytes()
    bucket.client().put_object(Bucket=BUCKET, Key="corpus/a.jsonl", Body=data.replace(b"Copyright", b"COPYRIGHT"))
    second = InputSnapshot(InputSource(url, "jsonl"))
    (state,) = first.before.values()
    (rewritten,) = second.before.values()
    assert rewritten.size == state.size and rewritten.version != state.version
    second.before[url] = dataclasses.replace(rewritten, mtime_ns=state.mtime_ns)  # as within the same second
    assert second.recorded() == first.recorded()  # size and time alone cannot tell them apart
    assert inputs_seen([second.seen()]) != inputs_seen([first.seen()])
    again = [InputSnapshot(InputSource(url, "jsonl")).seen() for _ in range(2)]
    assert inputs_seen(again[:1]) == inputs_seen(again[1:])  # an object left alone is seen the same
    bucket.client().put_object(Bucket=BUCKET, Key="corpus/a.jsonl", Body=data)


def test_resume_refuses_when_an_object_changed(bucket: S3Server, corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    url = f"s3://{BUCKET}/changing/"
    bucket.client().put_object(Bucket=BUCKET, Key="changing/a.jsonl", Body=(corpus / "a.jsonl").read_bytes())
    assert run("mask", url, "-o", out, *OPTIONS).exit_code == 0
    bucket.client().put_object(Bucket=BUCKET, Key="changing/a.jsonl", Body=(corpus / "a.jsonl").read_bytes()[:-500])
    line = error_line(run("mask", url, "-o", out, *OPTIONS, "--resume"))
    assert "different run" in line or "inputs" in line, line


def test_verify_retokenize_reads_url_inputs_back(bucket: S3Server, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run("mask", f"s3://{BUCKET}/corpus/", "-o", out, *OPTIONS).exit_code == 0
    result = run("verify", out, "--retokenize", 20, "-q")
    assert result.exit_code == 0, result.output
    assert "Retokenized 20 of 20 sampled documents from the inputs" in result.output, result.output


# --- one line for each way the store can refuse ------------------------------------------------


def test_a_bucket_that_does_not_exist(s3_env: S3Server, tmp_path: Path) -> None:
    line = error_line(run("mask", "s3://no-such-bucket-here/a.jsonl", "-o", tmp_path / "out", *OPTIONS))
    assert line.startswith("Error: s3://no-such-bucket-here/a.jsonl: the bucket does not exist"), line
    assert not (tmp_path / "out").exists()


def test_no_such_key(bucket: S3Server, tmp_path: Path) -> None:
    line = error_line(run("mask", f"s3://{BUCKET}/corpus/missing.jsonl", "-o", tmp_path / "out", *OPTIONS))
    assert (
        line
        == f"Error: s3://{BUCKET}/corpus/missing.jsonl: no such object or prefix. Check the URL; a prefix must hold at least one object"
    )


def test_a_pattern_that_matches_nothing(bucket: S3Server, tmp_path: Path) -> None:
    line = error_line(run("mask", f"s3://{BUCKET}/corpus/*.csv", "-o", tmp_path / "out", *OPTIONS))
    assert line == f"Error: s3://{BUCKET}/corpus/*.csv: the pattern matches no object. Check the pattern and the bucket"


@pytest.mark.parametrize("who", ["wrong-secret", "unknown-key", "no-permission"])
def test_credentials_the_store_refuses(bucket: S3Server, tmp_path: Path, who: str) -> None:
    """An object (HEAD, then GET), a prefix and a glob (listings), and a bucket that does not exist (which a
    refused caller is not told): each one line naming the URL and where S3 credentials come from, no secret."""
    url = f"s3://{BUCKET}/corpus/a.jsonl"
    with bucket.checking_credentials() as (allowed, denied):
        key = {
            "wrong-secret": (allowed[0], "not-the-secret-0123"),
            "unknown-key": ("AKIAUNKNOWN0000", "whatever-secret-42"),
            "no-permission": denied,
        }[who]
        assert run("mask", url, "-o", tmp_path / "ok", *OPTIONS, env=bucket.env(key=allowed)).exit_code == 0
        for spec in (url, f"s3://{BUCKET}/corpus/", f"s3://{BUCKET}/corpus/*.jsonl", "s3://no-such-bucket-here/corpus/"):
            result = run("mask", spec, "-o", tmp_path / "out", *OPTIONS, env=bucket.env(key=key))
            line = error_line(result)
            assert line.startswith(f"Error: {spec}: the store refused access ("), line
            assert line.endswith(
                "Check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile or a role; or --storage-options) "
                "and their permission to read it"
            ), line
            assert key[1] not in result.output
            assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("url", "package", "extra"),
    [
        ("gs://bucket/a.jsonl", "gcsfs", "gcs"),
        ("s3://bucket/a.jsonl", "s3fs", "s3"),
        ("az://container/a.jsonl", "adlfs", "azure"),
        ("https://example.com/a.jsonl", "aiohttp", "http"),
    ],
)
def test_a_missing_provider_package_names_the_extra(tmp_path: Path, url: str, package: str, extra: str) -> None:
    """Each store extra of the README's install table, from a base install (the package hidden as it is absent there)."""
    code = (
        f"import sys; sys.modules[{package!r}] = None\n"
        "from goldfish_prep_cli.main import cli\n"
        f"cli(['mask', {url!r}, '-o', sys.argv[1], '-q'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    scheme = url.split("://")[0]
    assert result.stderr.strip() == (
        f"Error: {url}: {scheme}:// URLs need the Python package {package!r}, which is not installed. Fix: pip install 'goldfish-prep[{extra}]'"
    )


def test_storage_options_the_provider_does_not_take(bucket: S3Server, tmp_path: Path) -> None:
    line = error_line(
        run("mask", f"s3://{BUCKET}/corpus/a.jsonl", "-o", tmp_path / "out", *OPTIONS, "--storage-options", '{"no_such_option": 1}')
    )
    assert line.startswith(f"Error: --storage-options do not fit the file system of s3://{BUCKET}/corpus/a.jsonl: "), line


def test_storage_options_must_be_a_json_object(tmp_path: Path) -> None:
    result = run("mask", "s3://b/a.jsonl", "-o", tmp_path / "out", "--storage-options", '{"secret": "s3kr1t-value"')
    assert result.exit_code == 2
    assert "not valid JSON" in result.output and "s3kr1t-value" not in result.output


# --- a store under load: retried without harm, or one line in bounded time ------------------


def test_503s_and_cut_bodies_are_retried_without_corrupting_anything(bucket: S3Server, corpus: Path, tmp_path: Path) -> None:
    def fail(method: str, path: str, attempt: int) -> str | None:
        if method == "GET" and "list-type" not in path and attempt == 0:
            return "503" if hash(path) % 2 else "cut"  # every object's first GET of each range fails once
        return None

    proxy = FaultyProxy(bucket.endpoint, fail)
    try:
        local, _ = mask_both(corpus, tmp_path, "corpus/", f"s3://{BUCKET}/corpus/")
        via_proxy = tmp_path / "via-proxy"
        result = run("mask", f"s3://{BUCKET}/corpus/", "-o", via_proxy, *OPTIONS, env=bucket.env(endpoint=proxy.endpoint))
    finally:
        proxy.close()
    assert result.exit_code == 0, result.output
    assert proxy.faults >= 6
    assert [t for t in shard_tables(via_proxy, f"s3://{BUCKET}/")] == shard_tables(local)
    assert [e["xxh3_128"] for e in manifest(via_proxy)["inputs"]] == [e["xxh3_128"] for e in manifest(local)["inputs"]]


def test_a_store_that_always_fails_ends_in_one_line(bucket: S3Server, tmp_path: Path) -> None:
    proxy = FaultyProxy(bucket.endpoint, lambda method, path, attempt: "503" if method == "GET" else None)
    # fewer retries than botocore's default (s3fs 5 x botocore 5 attempts, about 2 minutes), to keep the test short
    options = json.dumps({"config_kwargs": {"retries": {"max_attempts": 1}}})
    started = time.monotonic()
    try:
        result = run(
            "mask",
            f"s3://{BUCKET}/corpus/a.jsonl",
            "-o",
            tmp_path / "out",
            *OPTIONS,
            "--storage-options",
            options,
            env=bucket.env(endpoint=proxy.endpoint),
        )
    finally:
        proxy.close()
    line = error_line(result)
    assert line.startswith(f"Error: s3://{BUCKET}/corpus/a.jsonl: the request failed after retries ("), line
    gets = sum(n for request, n in proxy.counts.items() if request.startswith(f"GET /{BUCKET}/corpus/a.jsonl"))
    assert gets >= 2, proxy.counts  # retried (s3fs's own tries around botocore's attempts), then one line
    assert time.monotonic() - started < 60


def test_answers_slower_than_the_read_timeout_are_retried(bucket: S3Server, corpus: Path, tmp_path: Path) -> None:
    # each object's first GET stalls past the read timeout asked for; the retry gets the bytes
    proxy = FaultyProxy(bucket.endpoint, lambda method, path, attempt: "stall" if method == "GET" and attempt == 0 else None, stall_s=4)
    options = json.dumps({"config_kwargs": {"read_timeout": 1}})
    try:
        local, _ = mask_both(corpus, tmp_path, "corpus/sub/", f"s3://{BUCKET}/corpus/sub/")
        slow = tmp_path / "slow"
        result = run(
            "mask",
            f"s3://{BUCKET}/corpus/sub/",
            "-o",
            slow,
            *OPTIONS,
            "--storage-options",
            options,
            env=bucket.env(endpoint=proxy.endpoint),
        )
    finally:
        proxy.close()
    assert result.exit_code == 0, result.output
    assert proxy.faults >= 2
    assert shard_tables(slow, f"s3://{BUCKET}/") == shard_tables(local)


@pytest.mark.parametrize("name", ["a.jsonl", "sub/c.jsonl.zst", "e.parquet"])
def test_a_read_that_fails_mid_run_stops_even_under_skip(bucket: S3Server, tmp_path: Path, name: str) -> None:
    # the store fails once the run has described itself (run.json) and starts masking
    started = tmp_path / "out" / ".goldfish" / "run.json"
    proxy = FaultyProxy(
        bucket.endpoint, lambda method, path, attempt: "503" if method == "GET" and started.exists() and name in path else None
    )
    options = json.dumps({"config_kwargs": {"retries": {"max_attempts": 1}}})
    url = f"s3://{BUCKET}/corpus/{name}"
    try:
        result = run(
            "mask",
            url,
            "-o",
            tmp_path / "out",
            *OPTIONS,
            "--on-error",
            "skip",
            "--storage-options",
            options,
            env=bucket.env(endpoint=proxy.endpoint),
        )
    finally:
        proxy.close()
    assert proxy.faults >= 1
    line = error_line(result)
    assert line.startswith(f"Error: {url}: the request failed after retries ("), line
    assert not (tmp_path / "out" / "goldfish_manifest.json").exists()


@pytest.mark.parametrize("when", ["HEAD", "GET"], ids=["before-the-masking-pass-opens-it", "while-it-is-read"])
def test_an_object_replaced_after_the_run_resolved_it_fails(bucket: S3Server, corpus: Path, tmp_path: Path, when: str) -> None:
    # each open must find the ETag the run resolved, and s3fs reads with If-Match on it: the bytes masked are those of one version
    key, started, replaced = "replaced/a.jsonl", tmp_path / "out" / ".goldfish" / "run.json", []
    client = bucket.client()
    client.put_object(Bucket=BUCKET, Key=key, Body=(corpus / "a.jsonl").read_bytes())

    def replace_once(method: str, path: str, attempt: int) -> None:
        if method == when and started.exists() and not replaced:
            replaced.append(path)
            client.put_object(Bucket=BUCKET, Key=key, Body=(corpus / "a.jsonl").read_bytes()[:-700])

    proxy = FaultyProxy(bucket.endpoint, replace_once)
    try:
        result = run("mask", f"s3://{BUCKET}/{key}", "-o", tmp_path / "out", *OPTIONS, env=bucket.env(endpoint=proxy.endpoint))
    finally:
        proxy.close()
    assert replaced
    line = error_line(result)
    assert line == (
        f"Error: s3://{BUCKET}/{key}: the object changed while mask read it (its ETag is not the one listed at the start of the run). "
        "Rerun once the object holds still; --resume keeps the shards made from it only if its bytes are as they were"
    )
    assert not (tmp_path / "out" / "goldfish_manifest.json").exists()


# --- no secret in anything written or printed --------------------------------------------------


def test_no_credential_reaches_the_output_or_the_messages(bucket: S3Server, corpus: Path, tmp_path: Path) -> None:
    from botocore.config import Config

    signer = bucket.client(config=Config(signature_version="s3v4"))
    signed = signer.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "corpus/a.jsonl"}, ExpiresIn=600)
    signature = signed.split("X-Amz-Signature=")[1].split("&")[0]
    key, secret = bucket.env()["AWS_ACCESS_KEY_ID"], bucket.env()["AWS_SECRET_ACCESS_KEY"]
    options = json.dumps({"s3": {"key": key, "secret": secret}, "http": {}})
    out = tmp_path / "out"
    result = run("mask", signed, f"s3://{BUCKET}/corpus/d.txt", "-o", out, *OPTIONS, "--storage-options", options)
    assert result.exit_code == 0, result.output
    written = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    for value in (signature, secret):
        assert value.encode() not in written
        assert value not in result.output
    assert [entry["path"] for entry in manifest(out)["inputs"]] == [signed.split("?")[0], f"s3://{BUCKET}/corpus/d.txt"]
    # a signed URL is recorded without its query, and its bytes as any input's
    assert manifest(out)["inputs"][0]["xxh3_128"] == xxhash.xxh3_128_hexdigest((corpus / "a.jsonl").read_bytes())
    # failing runs name neither the signed query nor a secret given in --storage-options
    unsigned = signed.replace("corpus/a.jsonl", "corpus/nothing.jsonl")
    bad = run("mask", unsigned, "-o", tmp_path / "bad", *OPTIONS)
    assert (
        error_line(bad)
        == f"Error: {unsigned.split('?')[0]}: no such object or prefix. Check the URL; a prefix must hold at least one object"
    )
    made_up = json.dumps({"key": "AKIAMADEUPKEY0", "secret": "storage-option-secret-1234"})
    bad = run("mask", "s3://no-such-bucket-here/a.jsonl", "-o", tmp_path / "bad2", *OPTIONS, "--storage-options", made_up)
    assert "storage-option-secret-1234" not in error_line(bad) and signature not in bad.output


def test_scrub_removes_every_secret_it_knows() -> None:
    remote.use_storage_options({"key": "AKIAEXAMPLEKEY", "client_kwargs": {"aws_session_token": "session-token-xyz"}})
    try:
        text = scrub("refused AKIAEXAMPLEKEY with session-token-xyz at https://host/k?X-Amz-Signature=deadbeef&X-Amz-Credential=abc")
    finally:
        remote.use_storage_options(None)
    assert text == "refused <redacted> with <redacted> at https://host/k?<redacted>"
