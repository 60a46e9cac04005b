"""hf:// inputs against a hub speaking the Hugging Face hub's HTTP API (``tests/hub_server.py``).

``mask`` runs as a process that reaches the hub as a user reaches a private
one: ``HF_ENDPOINT`` and, for a private repository, ``HF_TOKEN`` (hub access
on for that process alone; the suite runs offline). Masking a repository's
files must give the shards that masking the same files on local disk gives
(only the input paths differ); a repository that does not exist or that a
caller may not read, a revision or a file that does not exist, and hub access
switched off are one ``Error:`` line each, naming the URL, the cause and the
fix, never the token. The hub's request log shows how files are read.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from goldfish_prep_cli.main import cli
from tests.hub_server import HubServer
from tests.output_tables import manifest, shard_tables

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = ("-q", "--shard-size", "40KB")
TOKEN = "hf_TestTokenThatMustNeverBePrinted0042"
REPO = "hf://datasets/goldfish/corpus"


def jsonl(texts: list[str]) -> bytes:
    return "".join(json.dumps({"text": text}) + "\n" for text in texts).encode()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, real_texts: list[str]) -> Path:
    """A dataset repository's files: JSON lines plain and gzipped in a folder and a subfolder, Parquet, a README
    (not an input) and the ``.gitattributes`` every hub repository has (hidden: passed over)."""
    root = tmp_path_factory.mktemp("hub") / "corpus"
    data = root / "data"
    (data / "sub").mkdir(parents=True)
    texts = [text for text in real_texts if 0 < len(text) < 12_000][:90]
    (root / ".gitattributes").write_text("*.parquet filter=lfs diff=lfs merge=lfs -text\n*.gz filter=lfs diff=lfs merge=lfs -text\n")
    (root / "README.md").write_text("# corpus\n", encoding="utf-8")
    (data / "a.jsonl").write_bytes(jsonl(texts[:30]))
    (data / "sub" / "b.jsonl.gz").write_bytes(gzip.compress(jsonl(texts[30:50])))
    (data / "c.jsonl").write_bytes(jsonl(texts[50:60]))
    pq.write_table(pa.table({"text": texts[60:90]}), data / "e.parquet", row_group_size=7)
    return root


@pytest.fixture(scope="module")
def older(tmp_path_factory: pytest.TempPathFactory, real_texts: list[str]) -> Path:
    """The same repository at branch ``v1``: other texts under the same name."""
    root = tmp_path_factory.mktemp("hub-v1") / "corpus"
    (root / "data").mkdir(parents=True)
    (root / "data" / "a.jsonl").write_bytes(jsonl([text for text in real_texts if 0 < len(text) < 12_000][100:110]))
    return root


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory, real_texts: list[str]) -> Path:
    """A repository holding one JSON lines file of about 20 MB: more than two of the reader's 8 MiB blocks (the
    hub keeps a file that large in LFS, so its bytes come from the CDN the hub redirects to)."""
    root = tmp_path_factory.mktemp("hub-big") / "big"
    root.mkdir()
    texts = [text for text in real_texts if 0 < len(text) < 20_000]
    lines, size, number = [], 0, 0
    while size < 20_000_000:
        lines.append(json.dumps({"text": f"{number}\n{texts[number % len(texts)]}"}) + "\n")
        size += len(lines[-1])
        number += 1
    (root / "big.jsonl").write_text("".join(lines), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def moving(tmp_path_factory: pytest.TempPathFactory, real_texts: list[str]) -> Path:
    """A repository whose one file a commit replaces (the hub's ``replace``) once a run has read it once: by its
    lines in the other order, so of the same size."""
    root = tmp_path_factory.mktemp("hub-moving")
    (root / "repo").mkdir()
    lines = [json.dumps({"text": text}) + "\n" for text in real_texts if 0 < len(text) < 12_000][:40]
    (root / "repo" / "moving.jsonl").write_text("".join(lines), encoding="utf-8")
    (root / "next.jsonl").write_text("".join(reversed(lines)), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def hub(repo: Path, older: Path, big: Path, moving: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    """The hub, serving the repository (branches main and v1) and a private copy of it; tree listings come in
    pages of 3 entries (the hub's are 1000), so every listing here follows the ``Link`` header's next pages."""
    repos = {
        "goldfish/corpus": {"revisions": {"main": str(repo), "v1": str(older)}},
        "goldfish/private": {"revisions": {"main": str(repo)}, "private": True},
        "goldfish/big": {"revisions": {"main": str(big)}},
        "goldfish/moving": {"revisions": {"main": str(moving / "repo")}},
    }
    replace = {str(moving / "repo" / "moving.jsonl"): {"with": str(moving / "next.jsonl"), "after": 1}}
    server = HubServer(tmp_path_factory.mktemp("hub-server"), repos, token=TOKEN, page_size=3, replace=replace)
    try:
        yield server
    finally:
        server.stop()


def mask(hub: HubServer, *args: object, token: str | None = None, offline: bool = False) -> subprocess.CompletedProcess[str]:
    """``goldfish-prep mask`` as a process that reaches ``hub`` by ``HF_ENDPOINT`` (and ``HF_TOKEN`` when given)."""
    command = [sys.executable, "-m", "goldfish_prep_cli", "mask", *(str(arg) for arg in args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=hub.env(token, offline), timeout=300)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a failed run prints (checked: exit 1, one line, no traceback, no token)."""
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    assert TOKEN not in result.stdout + result.stderr
    return lines[0]


def mask_locally(spec: str, cwd: Path, out: Path) -> None:
    """The same run on local files, in this process (``spec`` relative to ``cwd``)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        result = CliRunner().invoke(cli, ["mask", spec, "-o", str(out), *OPTIONS], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def assert_same_output(local: Path, remote: Path, prefix: str) -> None:
    """The shards of ``remote`` are ``local``'s, the input paths (``prefix`` + the local path) aside."""
    local_tables, remote_tables = shard_tables(local), shard_tables(remote, prefix)
    assert len(remote_tables) == len(local_tables) >= 1
    for got, expected in zip(remote_tables, local_tables):
        assert got.equals(expected)
    local_manifest, remote_manifest = manifest(local), manifest(remote)
    assert remote_manifest["counts"] == local_manifest["counts"]
    # each input's size and the hash of its bytes as on disk: only the path differs
    inputs = [{**entry, "path": entry["path"].removeprefix(prefix)} for entry in remote_manifest["inputs"]]
    assert inputs == local_manifest["inputs"]
    assert [path.removeprefix(prefix) for path in remote_manifest.get("ignored_inputs", [])] == local_manifest.get("ignored_inputs", [])


# --- the shards of the same local files ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("local_spec", "url"),
    [
        ("data/", f"{REPO}/data/"),
        ("data", f"{REPO}/data"),
        ("data/**/*.jsonl*", f"{REPO}/data/**/*.jsonl*"),
        ("data/sub/b.jsonl.gz", f"{REPO}/data/sub/b.jsonl.gz"),
        ("data/e.parquet", f"{REPO}/data/e.parquet"),
    ],
    ids=["folder", "folder-without-slash", "glob", "gzip-file", "parquet-file"],
)
def test_hf_inputs_give_the_shards_of_the_same_local_files(hub: HubServer, repo: Path, tmp_path: Path, local_spec: str, url: str) -> None:
    mask_locally(local_spec, repo, tmp_path / "local")
    result = mask(hub, url, "-o", tmp_path / "hub", *OPTIONS)
    assert result.returncode == 0, result.stderr
    assert_same_output(tmp_path / "local", tmp_path / "hub", f"{REPO}/")


def test_the_whole_repository_reads_as_its_folder_does(hub: HubServer, repo: Path, tmp_path: Path) -> None:
    """The repository's root: .gitattributes passed over as a hidden file, the README as one of no known format."""
    mask_locally(".", repo, tmp_path / "local")
    hub.forget()
    result = mask(hub, REPO, "-o", tmp_path / "hub", *OPTIONS)
    assert result.returncode == 0, result.stderr
    assert_same_output(tmp_path / "local", tmp_path / "hub", f"{REPO}/")
    assert f"{REPO}/.gitattributes" in manifest(tmp_path / "hub")["ignored_inputs"]
    listings = [entry for entry in hub.requests() if entry["path"] == "/api/datasets/goldfish/corpus/tree/main"]
    assert any("cursor=" in entry["query"] for entry in listings), listings  # the listing's later pages were followed


def test_a_revision_in_the_url_reads_that_revision(hub: HubServer, repo: Path, older: Path, tmp_path: Path) -> None:
    mask_locally("data/a.jsonl", older, tmp_path / "local")
    result = mask(hub, f"{REPO}@v1/data/a.jsonl", "-o", tmp_path / "hub", *OPTIONS)
    assert result.returncode == 0, result.stderr
    assert_same_output(tmp_path / "local", tmp_path / "hub", f"{REPO}@v1/")
    assert manifest(tmp_path / "hub")["inputs"][0]["path"] == f"{REPO}@v1/data/a.jsonl"
    main = mask(hub, f"{REPO}/data/a.jsonl", "-o", tmp_path / "main", *OPTIONS)
    assert main.returncode == 0, main.stderr
    assert manifest(tmp_path / "main")["inputs"][0]["xxh3_128"] != manifest(tmp_path / "hub")["inputs"][0]["xxh3_128"]
    # the same revision named by its commit id (asked of the hub's API)
    with urllib.request.urlopen(f"{hub.endpoint}/api/datasets/goldfish/corpus/revision/v1", timeout=30) as answer:
        commit = json.load(answer)["sha"]
    pinned = mask(hub, f"{REPO}@{commit}/data/a.jsonl", "-o", tmp_path / "pinned", *OPTIONS)
    assert pinned.returncode == 0, pinned.stderr
    assert_same_output(tmp_path / "local", tmp_path / "pinned", f"{REPO}@{commit}/")


def test_a_private_repository_is_read_with_hf_token(hub: HubServer, repo: Path, tmp_path: Path) -> None:
    mask_locally("data/", repo, tmp_path / "local")
    result = mask(hub, "hf://datasets/goldfish/private/data/", "-o", tmp_path / "hub", *OPTIONS, token=TOKEN)
    assert result.returncode == 0, result.stderr
    assert_same_output(tmp_path / "local", tmp_path / "hub", "hf://datasets/goldfish/private/")
    written = b"".join(path.read_bytes() for path in (tmp_path / "hub").rglob("*") if path.is_file())
    assert TOKEN.encode() not in written and TOKEN not in result.stdout + result.stderr


# --- one line for each refusal, never the token ---------------------------------------------------------


def test_a_repository_that_does_not_exist_is_one_line(hub: HubServer, tmp_path: Path) -> None:
    url = "hf://datasets/goldfish/no-such-repo/data/"
    assert error_line(mask(hub, url, "-o", tmp_path / "out", *OPTIONS)) == (
        f"Error: {url}: the hub shows no dataset repository goldfish/no-such-repo without a token: it does not exist, "
        "or it is private or gated (401 Repository Not Found). "
        "Check the repository id; for a private or gated repository set HF_TOKEN (or run `hf auth login`)"
    )
    line = error_line(mask(hub, url, "-o", tmp_path / "out", *OPTIONS, token=TOKEN))
    assert line == (
        f"Error: {url}: the hub shows no dataset repository goldfish/no-such-repo to the token sent: it does not exist, "
        "or the token may not read it (404 Repository Not Found). "
        "Check the repository id, and that the token (HF_TOKEN or hf auth login) may read it; a gated one needs access granted on its page"
    )
    assert not (tmp_path / "out").exists()


def test_a_model_url_meant_for_a_dataset_names_the_dataset_form(hub: HubServer, tmp_path: Path) -> None:
    line = error_line(mask(hub, "hf://goldfish/corpus/data/a.jsonl", "-o", tmp_path / "out", *OPTIONS))
    assert line.startswith("Error: hf://goldfish/corpus/data/a.jsonl: the hub shows no model repository goldfish/corpus without a token"), (
        line
    )
    assert line.endswith("; a dataset's URL is hf://datasets/OWNER/NAME/PATH"), line


def test_a_private_repository_without_a_token_names_hf_token(hub: HubServer, tmp_path: Path) -> None:
    url = "hf://datasets/goldfish/private/data/a.jsonl"
    line = error_line(mask(hub, url, "-o", tmp_path / "out", *OPTIONS))
    assert line.startswith(f"Error: {url}: the hub shows no dataset repository goldfish/private without a token: "), line
    assert "set HF_TOKEN" in line, line


def test_a_token_the_hub_does_not_know_is_refused_in_one_line_without_the_token(hub: HubServer, tmp_path: Path) -> None:
    wrong = "hf_WrongTokenThatMustNeverBePrinted77"
    result = mask(hub, "hf://datasets/goldfish/private/data/a.jsonl", "-o", tmp_path / "out", *OPTIONS, token=wrong)
    assert error_line(result) == (
        "Error: hf://datasets/goldfish/private/data/a.jsonl: the hub refused the token sent "
        "(401 Invalid credentials in Authorization header). Check HF_TOKEN (or the token `hf auth login` saved): the hub does not take it"
    )
    assert wrong not in result.stdout + result.stderr


def test_a_revision_that_does_not_exist_is_one_line(hub: HubServer, tmp_path: Path) -> None:
    url = f"{REPO}@v9/data/a.jsonl"
    assert error_line(mask(hub, url, "-o", tmp_path / "out", *OPTIONS)) == (
        f"Error: {url}: the dataset repository goldfish/corpus has no revision 'v9' (404 Revision Not Found). "
        "Check the revision after @: a branch, a tag or a commit id"
    )


def test_a_file_that_does_not_exist_is_one_line(hub: HubServer, tmp_path: Path) -> None:
    url = f"{REPO}/data/nothing.jsonl"
    assert error_line(mask(hub, url, "-o", tmp_path / "out", *OPTIONS)) == (
        f"Error: {url}: no such object or prefix. Check the URL; a prefix must hold at least one object"
    )


def test_a_pattern_that_matches_nothing_names_the_repository(hub: HubServer, tmp_path: Path) -> None:
    """A hub repository has no bucket: the line names the repository and revision the pattern was matched in."""
    for url, where in (
        (f"{REPO}/data/*.csv", "goldfish/corpus at revision 'main'"),
        (f"{REPO}@v1/**/*.csv", "goldfish/corpus at revision 'v1'"),
    ):
        assert error_line(mask(hub, url, "-o", tmp_path / "out", *OPTIONS)) == (
            f"Error: {url}: the pattern matches no file. Check the pattern and the path in the dataset repository {where}"
        )
    assert not (tmp_path / "out").exists()


def test_hub_access_switched_off_is_one_line_that_names_the_switch(hub: HubServer, tmp_path: Path) -> None:
    hub.forget()
    url = f"{REPO}/data/"
    assert error_line(mask(hub, url, "-o", tmp_path / "out", *OPTIONS, token=TOKEN, offline=True)) == (
        f"Error: {url}: hub access is off (HF_HUB_OFFLINE=1). Unset HF_HUB_OFFLINE (or set it to 0) to read hf:// URLs"
    )
    assert hub.requests() == []  # refused by the client itself: nothing reached the hub


def test_a_commit_that_replaces_a_file_while_a_run_reads_it_stops_the_run(hub: HubServer, moving: Path, tmp_path: Path) -> None:
    """The branch moves on under the run: the file keeps its size but its bytes (and git blob id) change after its
    first read. A run must not mask a mix of two versions: one line, no manifest."""
    url = "hf://datasets/goldfish/moving/moving.jsonl"
    line = error_line(mask(hub, url, "-o", tmp_path / "out", *OPTIONS))
    assert line == (
        f"Error: {url}: the file changed on the hub while mask read it (a commit gave it another blob id than the one "
        "listed at the start of the run). Name a commit after @ to read one version "
        "(hf://datasets/goldfish/moving@COMMIT/moving.jsonl), or rerun once the branch holds still; "
        "--resume keeps the shards made from it only if its bytes are as they were"
    )
    assert not (tmp_path / "out" / "goldfish_manifest.json").exists()
    assert (moving / "repo" / "moving.jsonl").stat().st_size == len((moving / "repo" / "moving.jsonl").read_bytes())


# --- streamed in ranges, never downloaded whole ----------------------------------------------------------


def test_a_large_file_is_read_in_ranges_and_about_once(hub: HubServer, big: Path, tmp_path: Path) -> None:
    """Every read of the file's bytes is one ranged GET of at most a block (8 MiB, and the 1 MiB read that asked for
    it); the masking pass reads the file once, front to back; before it, the run reads only the first block (to look
    at the first record), so the hub serves the file's size plus at most one block, not the file twice."""
    size = (big / "big.jsonl").stat().st_size
    hub.forget()
    result = mask(hub, "hf://datasets/goldfish/big/big.jsonl", "-o", tmp_path / "out", "-q", "--num-proc", "1")
    assert result.returncode == 0, result.stderr
    reads = [entry for entry in hub.requests() if entry["method"] == "GET" and entry["status"] in (200, 206)]
    reads = [entry for entry in reads if entry["path"].startswith(("/cdn/", "/datasets/goldfish/big/resolve/"))]
    assert reads and all(entry["status"] == 206 and entry["range"] for entry in reads), reads  # no whole download
    spans = [tuple(int(end) for end in entry["range"].removeprefix("bytes=").split("-")) for entry in reads]
    assert all(last - first + 1 <= 9 << 20 for first, last in spans), spans
    starts = [first for first, _ in spans]
    assert 1 <= starts.count(0) <= 2, spans  # the masking pass, and perhaps a look at the first record before it
    masking = spans[len(starts) - 1 - starts[::-1].index(0) :]
    # front to back, to the end (the last block's range may reach past it: the reader asks for whole blocks)
    assert [first for first, _ in masking] == [0] + [last + 1 for _, last in masking[:-1]] and masking[-1][1] >= size - 1, masking
    assert sum(entry["sent"] for entry in reads) <= size + (9 << 20)
