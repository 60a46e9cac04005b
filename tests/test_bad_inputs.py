"""The bad-input matrix: every kind of dirty corpus and hostile surrounding that `mask` meets.

Each case states its expected behaviour. A bad *record* (or a file that cannot be read to
its end) stops the run by default with exactly one ``Error:`` line that names the file, the
line or record, the cause and the fix, exit code 1 and no traceback; under
``--on-error skip`` it is skipped and counted, the good documents are written, and the
manifest reconciles (``documents_read == documents_written + documents_skipped``).
Everything that is not a record (input paths, the tokenizer, the output folder, the disk,
Ctrl-C) stops under either setting and leaves no output that loads as complete.

Fixtures too small to be worth generating live in ``tests/data/bad/``, named after the
failure they hold; large and binary ones are made here in ``tmp_path``.

The matrix (kind: ``skipped_by_reason`` key under skip, or what happens instead)::

    invalid UTF-8 in a JSON line / a .txt file      invalid-utf8
    lone surrogate escape in JSON (half a pair)     invalid-utf8
    malformed JSON line / unclosed JSON array       invalid-json (the array: records before it kept)
    missing text field / missing --id-field         missing-text-field / missing-id-field
    non-string text / null text / not an object     non-string-text / null-text / not-an-object
    empty document / empty .txt / empty .jsonl      empty-document (an empty file is never silently 0 documents)
    ids negative / non-integer / strings            negative-id / non-integer-id
    ids >= 2**31 / beyond --tokenizer's vocabulary  id-too-large / id-beyond-vocab
    truncated .gz / .zst                            truncated-file (records before the break kept)
    binary data or gzip bytes named .jsonl          binary-file
    Parquet: text column of another type or name    non-string-text / missing-text-field
    Parquet: not Parquet at all                     corrupt-file
    compatible Parquet schemas (string/large_string, extra columns): read together
    a single 100 MB line                            missing-text-field, in bounded memory
    unreadable file (chmod 000, root-proof)         unreadable-file
    symlink loop in a folder / links in a cycle     stops in both modes, nothing written
    missing input                                   stops in both modes, nothing written
    corrupt tokenizer.json / .model / .tiktoken     stops in both modes, nothing written
    output folder holding other files / a file      refused, even with --overwrite/--resume
    read-only output location                       stops, one line
    full disk (file size limit; tiny tmpfs)         stops, one line, no partial file; --resume finishes
    Ctrl-C (SIGINT to the process group)            exit 130, one line, shards kept; --resume finishes
"""

from __future__ import annotations

import ctypes
import dataclasses
import gzip
import json
import os
import random
import re
import resource
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from goldfish_prep_cli.main import cli
from tests.faults_support import default_stop_signals

BAD = Path(__file__).parent / "data" / "bad"
SKIP_HINT = ", or pass --on-error skip to skip and count bad records"
MANIFEST = "goldfish_manifest.json"
CLI = [sys.executable, "-m", "goldfish_prep_cli"]
INTERRUPTED = "Error: interrupted; completed shards are kept, rerun with --resume to continue"


# ----------------------------------------------------------------------------- helpers


def mask(*args: object) -> Result:
    """`goldfish-prep mask ARGS -q` in process; exceptions are caught so a traceback is a failed assert."""
    return CliRunner().invoke(cli, ["mask", *(str(a) for a in args), "-q"])


def assert_one_error(result: Result, expected: str | re.Pattern[str], exit_code: int = 1) -> str:
    """Exit code 1, no traceback, and stderr is exactly one ``Error:`` line equal to (or matching) ``expected``."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        trace = "".join(traceback.format_exception(result.exception))
        pytest.fail(f"unhandled {type(result.exception).__name__} instead of an Error line:\n{trace}")
    return assert_error_text(result.exit_code, result.stderr, expected, exit_code)


def assert_error_text(code: int | None, stderr: str, expected: str | re.Pattern[str], exit_code: int = 1) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one Error line, got:\n{stderr}"
    line = lines[0]
    if isinstance(expected, str):
        assert line == expected
    else:
        assert expected.fullmatch(line), f"{line!r}\ndoes not match\n{expected.pattern!r}"
    assert code == exit_code, f"exit code {code}, expected {exit_code}"
    return line


def reconciled_manifest(out: Path) -> dict[str, object]:
    """The manifest, after checking that every document read is accounted for."""
    manifest: dict[str, object] = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    counts = manifest["counts"]
    assert isinstance(counts, dict)
    assert counts["documents_read"] == counts["documents_written"] + counts["documents_skipped"]
    assert sum(counts["skipped_by_reason"].values()) == counts["documents_skipped"]
    skipped = manifest["skipped"]
    assert isinstance(skipped, list) and len(skipped) == min(counts["documents_skipped"], 1000)
    assert datasets.load_from_disk(str(out)).num_rows == counts["documents_written"]
    return manifest


def assert_not_complete(out: Path) -> None:
    """Whatever a failed run left, neither goldfish-prep nor datasets takes it for a finished output."""
    assert not (out / MANIFEST).exists()
    assert not list(out.glob("*.partial")), "a half-written shard was left behind"
    with pytest.raises(FileNotFoundError):
        datasets.load_from_disk(str(out))


def write_good(folder: Path, name: str = "good.jsonl") -> Path:
    """Two good documents, read after the bad input so that a skip run has something to write."""
    path = folder / name
    path.write_text(
        '{"text": "A good document that follows the bad input."}\n{"text": "And a second good document."}\n',
        encoding="utf-8",
    )
    return path


def random_jsonl(count: int, seed: int = 0) -> bytes:
    """JSON lines of random words: text a compressor cannot squeeze into one block."""
    rng = random.Random(seed)
    words = ["goldfish", "loss", "token", "mask", "corpus", "shard", "arrow", "passage", "window", "hash"]
    lines = (json.dumps({"text": " ".join(rng.choice(words) + str(rng.randrange(1000)) for _ in range(30))}) for _ in range(count))
    return "".join(line + "\n" for line in lines).encode()


def zstd_bytes(data: bytes) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as stream:
        stream.write(data)
    return bytes(sink.getvalue().to_pybytes())


# ----------------------------------------------------------------------------- bad records


@dataclasses.dataclass(frozen=True)
class RecordCase:
    """A fixture whose line 2 (or record N) is bad between good documents."""

    fixture: str
    where: str
    cause: str
    fix: str
    reason: str
    written: int = 2
    options: tuple[str, ...] = ()

    def error_line(self) -> str:
        return f"Error: {BAD / self.fixture} {self.where}: {self.cause}. {self.fix}{SKIP_HINT}"


UTF8_FIX = "Re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
IDS_FIX = "Token ids must be integers (not booleans, floats or strings)"
RECORD_CASES = [
    RecordCase("invalid-utf8.jsonl", "line 2", "byte 13 of the line (b'\\xe9') is not valid UTF-8", UTF8_FIX, "invalid-utf8"),
    RecordCase(
        "lone-surrogate.jsonl",
        "line 2",
        "\"text\" holds an unpaired surrogate '\\ud83d' at character 23, which is not valid Unicode",
        "Fix the \\u escape (a surrogate pair needs both halves) or re-export the file as UTF-8",
        "invalid-utf8",
    ),
    RecordCase(
        "missing-text-field.jsonl",
        "line 2",
        'no "text" field (and no "input_ids" list of token ids)',
        "Is --text-field correct? Available keys: ['body', 'url']",
        "missing-text-field",
    ),
    RecordCase(
        "non-string-text.jsonl",
        "line 2",
        "\"text\" is an array (['a', 'list', 'of', 'words']), not a string",
        "Store the document text as a string, or name the text field with --text-field",
        "non-string-text",
    ),
    RecordCase("null-text.jsonl", "line 2", '"text" is null', "Fill in the text or remove the record", "null-text"),
    RecordCase("empty-document.jsonl", "line 2", '"text" is an empty string', "Remove empty documents from the input", "empty-document"),
    RecordCase(
        "not-an-object.jsonl",
        "line 2",
        "the JSON value is an array, not an object",
        'Write one JSON object per record, with the text under "text"',
        "not-an-object",
    ),
    RecordCase(
        "missing-id-field.jsonl",
        "line 2",
        'no "id" field to take the document id from (or it is null)',
        "Is --id-field correct? Available keys: ['text']. Leave --id-field out to use locations as ids",
        "missing-id-field",
        options=("--id-field", "id"),
    ),
    RecordCase("negative-ids.jsonl", "line 2", '"input_ids"[2] is -7, a negative token id', "Token ids start at 0", "negative-id"),
    RecordCase(
        "non-integer-ids.jsonl", "line 2", '"input_ids"[1] is a number (1176.5), not an integer token id', IDS_FIX, "non-integer-id"
    ),
    RecordCase("string-ids.jsonl", "line 2", "\"input_ids\"[0] is a string ('791'), not an integer token id", IDS_FIX, "non-integer-id"),
    RecordCase(
        "ids-beyond-int32.jsonl",
        "line 2",
        '"input_ids"[1] is 2147483648, beyond the int32 range of the output (ids < 2**31)',
        "Check the ids were written by a tokenizer, not hashed or offset",
        "id-too-large",
    ),
    RecordCase(
        "ids-beyond-vocab.jsonl",
        "line 2",
        "token id 150000 is outside the tokenizer's vocabulary of 100277 ids",
        "Pass the --tokenizer these ids were made with, or fix the ids",
        "id-beyond-vocab",
        options=("--tokenizer", "cl100k_base"),
    ),
    RecordCase(
        "unclosed-array.json",
        "record 2",
        "invalid JSON at character 119: Expecting ',' delimiter; the rest of the file was not read",
        "A .json file must hold one array of objects, or one object per line (JSON lines)",
        "invalid-json",
    ),
]


@pytest.mark.parametrize("case", RECORD_CASES, ids=lambda case: case.fixture)
def test_bad_record_stops_with_one_error_line(tmp_path: Path, case: RecordCase) -> None:
    out = tmp_path / "out"
    assert_one_error(mask(BAD / case.fixture, "-o", out, *case.options), case.error_line())
    assert_not_complete(out)


@pytest.mark.parametrize("case", RECORD_CASES, ids=lambda case: case.fixture)
def test_bad_record_is_skipped_and_counted(tmp_path: Path, case: RecordCase) -> None:
    out = tmp_path / "out"
    result = mask(BAD / case.fixture, "-o", out, "--on-error", "skip", *case.options)
    assert result.exit_code == 0, result.output
    assert f"Skipped 1 bad record ({case.reason}: 1)" in result.output
    manifest = reconciled_manifest(out)
    counts = manifest["counts"]
    assert isinstance(counts, dict)
    assert (counts["documents_written"], counts["documents_skipped"]) == (case.written, 1)
    assert counts["skipped_by_reason"] == {case.reason: 1}
    assert manifest["skipped"] == [{"location": f"{BAD / case.fixture} {case.where}", "reason": case.reason, "cause": case.cause}]


def test_malformed_json_line_names_line_and_column(tmp_path: Path) -> None:
    """The cause comes from Python's JSON decoder, so only its stable parts are pinned."""
    path = BAD / "malformed-json.jsonl"
    pattern = re.compile(
        rf"Error: {re.escape(str(path))} line 2: invalid JSON: (?!.*\bat at\b)Unterminated string.* column 10\. "
        rf"Each line must be one complete JSON object{re.escape(SKIP_HINT)}"
    )
    assert_one_error(mask(path, "-o", tmp_path / "out"), pattern)
    skipped = mask(path, "-o", tmp_path / "skip", "--on-error", "skip")
    assert skipped.exit_code == 0, skipped.output
    counts = reconciled_manifest(tmp_path / "skip")["counts"]
    assert isinstance(counts, dict) and counts["skipped_by_reason"] == {"invalid-json": 1}


def test_ids_beyond_the_vocabulary_need_an_explicit_tokenizer(tmp_path: Path) -> None:
    """Without --tokenizer, pre-tokenized ids are only held to int32: the user did not say which vocabulary."""
    out = tmp_path / "out"
    result = mask(BAD / "ids-beyond-vocab.jsonl", "-o", out)
    assert result.exit_code == 0, result.output
    assert 150000 in datasets.load_from_disk(str(out))[1]["input_ids"]
    # what mask accepted and wrote, verify must accept too
    verified = CliRunner().invoke(cli, ["verify", str(out), "-q"])
    assert verified.exit_code == 0, verified.output


# ----------------------------------------------------------------------------- bad files


@dataclasses.dataclass(frozen=True)
class FileCase:
    """A whole input file that is bad; a good file is read after it."""

    bad: Path
    error: str | re.Pattern[str]
    reason: str
    #: good inputs read before the bad one (the well-formed half of a mismatched pair)
    before: tuple[Path, ...] = ()
    #: documents read from the bad file before it failed (a truncated file keeps what precedes the break)
    kept: int = 0


def _truncated(tmp_path: Path, name: str, compress: Callable[[bytes], bytes]) -> FileCase:
    path = tmp_path / name
    whole = compress(random_jsonl(3000))
    path.write_bytes(whole[: len(whole) // 2])
    pattern = re.compile(
        rf"Error: {re.escape(str(path))}: the compressed data ends early after (\d+) records "
        r"\(an interrupted download or write\?\)\. Download or write the file again; the records before the break were read"
        + re.escape(SKIP_HINT)
    )
    return FileCase(path, pattern, "truncated-file", kept=-1)  # kept: read from the error line


def _binary(tmp_path: Path) -> FileCase:
    path = tmp_path / "binary-data.jsonl"
    path.write_bytes(bytes(range(256)) * 64)
    return FileCase(
        path,
        f"Error: {path}: not UTF-8 text: it looks like binary data (it holds NUL bytes). Check the file and its suffix{SKIP_HINT}",
        "binary-file",
    )


def _gzip_named_jsonl(tmp_path: Path) -> FileCase:
    path = tmp_path / "gzip-data-without-gz-suffix.jsonl"
    path.write_bytes(gzip.compress(random_jsonl(10)))
    return FileCase(
        path,
        f"Error: {path}: not UTF-8 text: it looks like gzip-compressed data. Name it with a .gz suffix{SKIP_HINT}",
        "binary-file",
    )


def _invalid_utf8_txt(tmp_path: Path) -> FileCase:
    path = BAD / "invalid-utf8.txt"
    return FileCase(path, f"Error: {path}: line 3 is not valid UTF-8 (byte 64 of the file). {UTF8_FIX}{SKIP_HINT}", "invalid-utf8")


def _empty_txt(tmp_path: Path) -> FileCase:
    path = tmp_path / "empty-file.txt"
    path.write_bytes(b"")
    return FileCase(
        path,
        f"Error: {path}: the file is empty: there is no document to tokenize. Remove the file from the input{SKIP_HINT}",
        "empty-document",
    )


def _empty_jsonl(tmp_path: Path) -> FileCase:
    """An empty .jsonl is a failed export or download far more often than an intended empty shard."""
    path = BAD / "empty-file.jsonl"
    return FileCase(path, re.compile(rf"Error: {re.escape(str(path))}: .*\bempty\b.*{re.escape(SKIP_HINT)}"), "")


def _good_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"text": ["A first Parquet document.", "A second one."]}), path)
    return path


def _parquet_wrong_type(tmp_path: Path) -> FileCase:
    path = tmp_path / "b.parquet"
    pq.write_table(pa.table({"text": [1, 2, 3]}), path)
    return FileCase(
        path,
        f'Error: {path}: column "text" holds int64, not strings. Name the text column with --text-field{SKIP_HINT}',
        "non-string-text",
        before=(_good_parquet(tmp_path),),
    )


def _parquet_other_column(tmp_path: Path) -> FileCase:
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"content": ["x", "y"]}), path)
    return FileCase(
        path,
        f'Error: {path}: no "text" field (and no "input_ids" list of token ids). '
        f"Is --text-field correct? Available keys: ['content']{SKIP_HINT}",
        "missing-text-field",
        before=(_good_parquet(tmp_path),),
    )


def _corrupt_parquet(tmp_path: Path) -> FileCase:
    path = tmp_path / "not-really.parquet"
    path.write_bytes(b"PAR1 these bytes are not a Parquet file PAR1")
    pattern = re.compile(
        rf"Error: {re.escape(str(path))}: the file is corrupt or not in the format its name says: .+\. "
        rf"Check the file, or give it the suffix of its real format{re.escape(SKIP_HINT)}"
    )
    return FileCase(path, pattern, "corrupt-file")


FILE_CASES: dict[str, Callable[[Path], FileCase]] = {
    "truncated.jsonl.gz": lambda tmp: _truncated(tmp, "truncated.jsonl.gz", gzip.compress),
    "truncated.jsonl.zst": lambda tmp: _truncated(tmp, "truncated.jsonl.zst", zstd_bytes),
    "binary-with-text-extension": _binary,
    "gzip-named-jsonl": _gzip_named_jsonl,
    "invalid-utf8.txt": _invalid_utf8_txt,
    "empty-file.txt": _empty_txt,
    "empty-file.jsonl": _empty_jsonl,
    "parquet-mismatched-column-type": _parquet_wrong_type,
    "parquet-mismatched-column-name": _parquet_other_column,
    "corrupt-parquet": _corrupt_parquet,
}


@pytest.mark.parametrize("name", FILE_CASES)
def test_bad_file_stops_then_is_skipped_and_counted(tmp_path: Path, name: str) -> None:
    case = FILE_CASES[name](tmp_path)
    inputs = [*case.before, case.bad, write_good(tmp_path)]
    line = assert_one_error(mask(*inputs, "-o", tmp_path / "out"), case.error)
    assert_not_complete(tmp_path / "out")
    kept = case.kept
    if kept < 0:
        match = re.search(r"after (\d+) records", line)
        assert match is not None
        kept = int(match.group(1))
        assert kept > 0  # the documents before the break are read, not lost with the file
    result = mask(*inputs, "-o", tmp_path / "skip", "--on-error", "skip")
    assert result.exit_code == 0, result.output
    manifest = reconciled_manifest(tmp_path / "skip")
    counts = manifest["counts"]
    assert isinstance(counts, dict) and isinstance(manifest["skipped"], list)
    assert counts["documents_written"] == 2 * len(case.before) + kept + 2
    assert counts["documents_skipped"] == 1
    assert manifest["skipped"][0]["location"] == str(case.bad)
    if case.reason:
        assert counts["skipped_by_reason"] == {case.reason: 1}


def test_compatible_parquet_schemas_are_read_together(tmp_path: Path) -> None:
    """Schemas that differ only in what the reader does not use (string vs large_string, extra columns) just work."""
    pq.write_table(pa.table({"text": pa.array(["First file, plain strings."], pa.string())}), tmp_path / "a.parquet")
    pq.write_table(
        pa.table({"url": ["https://example.org"], "text": pa.array(["Second file, large strings."], pa.large_string())}),
        tmp_path / "b.parquet",
    )
    out = tmp_path / "out"
    result = mask(tmp_path / "a.parquet", tmp_path / "b.parquet", "-o", out)
    assert result.exit_code == 0, result.output
    assert datasets.load_from_disk(str(out))["source"] == [f"{tmp_path / 'a.parquet'} record 0", f"{tmp_path / 'b.parquet'} record 0"]


@pytest.fixture(scope="module")
def hundred_mb_line(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A good line, one 100 MB JSON line whose text sits under the wrong key, and a good line."""
    path = tmp_path_factory.mktemp("huge") / "one-100mb-line.jsonl"
    chunk = b"lorem ipsum dolor sit amet " * 40_000  # 1.08 MB
    with open(path, "wb") as handle:
        handle.write(b'{"text": "A short good document."}\n{"body": "')
        for _ in range(93):
            handle.write(chunk)
        handle.write(b'"}\n{"text": "The last good document."}\n')
    assert path.stat().st_size > 100_000_000
    return path


def test_a_100mb_line_fails_clearly(tmp_path: Path, hundred_mb_line: Path) -> None:
    expected = (
        f'Error: {hundred_mb_line} line 2: no "text" field (and no "input_ids" list of token ids). '
        f"Is --text-field correct? Available keys: ['body']{SKIP_HINT}"
    )
    assert_one_error(mask(hundred_mb_line, "-o", tmp_path / "out"), expected)


#: runs its arguments as a child and prints that child's peak RSS (kilobytes on Linux). A small process must fork
#: the measured one: Linux counts the RSS a process had before exec in its peak, so a child forked straight from
#: a pytest process that has grown past 1 GB (trained models, loaded tokenizers) would report pytest's size.
_PEAK_RSS = (
    "import os, subprocess, sys\n"
    "child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
    "_, status, usage = os.wait4(child.pid, 0)\n"
    "child.returncode = 0\n"
    "print(usage.ru_maxrss)\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def test_a_100mb_line_is_skipped_in_bounded_memory(tmp_path: Path, hundred_mb_line: Path) -> None:
    """In a fresh process, so the peak RSS is this run's: a few copies of the line, not a blow-up."""
    out = tmp_path / "out"
    command = [*CLI, "mask", str(hundred_mb_line), "-o", str(out), "-q", "--on-error", "skip"]
    run = subprocess.run([sys.executable, "-c", _PEAK_RSS, *command], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    peak_mib = int(run.stdout.split()[-1]) / 1024
    counts = reconciled_manifest(out)["counts"]
    assert isinstance(counts, dict)
    assert (counts["documents_written"], counts["skipped_by_reason"]) == (2, {"missing-text-field": 1})
    assert peak_mib < 1024, f"peak RSS {peak_mib:.0f} MiB for a 100 MB line"


# ----------------------------------------------------------------------------- not records: stop in both modes


@pytest.fixture(params=["stop", "skip"])
def on_error(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_symlink_loop_in_an_input_folder(tmp_path: Path, on_error: str) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    write_good(corpus / "sub")
    (corpus / "sub" / "up").symlink_to("..")
    link = corpus / "sub" / "up"
    expected = (
        f"Error: {link}: symbolic link loop: {link} leads back into a folder that contains it ({corpus}). "
        "Remove the link, or name the folders to read one by one"
    )
    out = tmp_path / "out"
    assert_one_error(mask(corpus, "-o", out, "--on-error", on_error), expected)
    assert not out.exists()


def test_symlinks_pointing_at_each_other(tmp_path: Path, on_error: str) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.jsonl").symlink_to("b.jsonl")
    (corpus / "b.jsonl").symlink_to("a.jsonl")
    write_good(corpus, "c.jsonl")
    out = tmp_path / "out"
    link = corpus / "a.jsonl"
    pattern = re.compile(rf"Error: {re.escape(str(link))}: symbolic link loop\b.*\. Remove the link.*")
    assert_one_error(mask(corpus, "-o", out, "--on-error", on_error), pattern)
    assert not out.exists()


def test_missing_input(tmp_path: Path, on_error: str) -> None:
    path = tmp_path / "no-such-corpus.jsonl"
    expected = f"Error: {path}: no such file or folder. Check the path (relative paths start in the current folder)"
    assert_one_error(mask(path, "-o", tmp_path / "out", "--on-error", on_error), expected)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("fixture", "prefix", "suffix"),
    [
        (
            "corrupt-tokenizer.json",
            "not a Hugging Face tokenizer.json (",
            "). Fix: pass an intact tokenizer.json (as saved by tokenizers or transformers), or a .model / .tiktoken file",
        ),
        (
            "garbage-tokenizer.model",
            "not a SentencePiece model (",
            "). Fix: pass an intact tokenizer.model, or a tokenizer.json / .tiktoken file",
        ),
    ],
)
def test_corrupt_tokenizer_file(tmp_path: Path, on_error: str, fixture: str, prefix: str, suffix: str) -> None:
    spec = BAD / fixture
    pattern = re.compile(re.escape(f"Error: {spec}: {prefix}") + ".+" + re.escape(suffix))
    out = tmp_path / "out"
    assert_one_error(mask(write_good(tmp_path), "-o", out, "--tokenizer", spec, "--on-error", on_error), pattern)
    assert not out.exists()


def test_corrupt_tiktoken_ranks(tmp_path: Path) -> None:
    spec = tmp_path / "cut.tiktoken"
    spec.write_bytes(b"IQ== 0\nIg== 1\nthis line is not a rank\n")
    pattern = re.compile(re.escape(f"Error: {spec} line 3: ") + r".+\. Fix: pass an intact \.tiktoken file.*")
    assert_one_error(mask(write_good(tmp_path), "-o", tmp_path / "out", "--tokenizer", spec), pattern)


def test_output_folder_holding_other_files_is_never_touched(tmp_path: Path) -> None:
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    source = write_good(tmp_path)
    assert_one_error(
        mask(source, "-o", out),
        f"Error: output folder {out} already exists and is not empty; pass --overwrite to replace it, "
        "or --resume to finish an interrupted run",
    )
    for flag in ("--overwrite", "--resume"):
        assert_one_error(
            mask(source, "-o", out, flag),
            f"Error: output folder {out} holds files goldfish-prep did not write (thesis.tex); "
            "refusing to touch them. Choose a new or empty folder",
        )
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]
    assert (out / "thesis.tex").read_text() == "years of work"


def test_output_path_that_is_a_file(tmp_path: Path) -> None:
    """A usage error, caught by the option type: click's exit code 2, the file left alone."""
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    result = mask(write_good(tmp_path), "-o", target)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[-1].startswith("Error: Invalid value for '-o' / '--output'")
    assert target.read_text() == "keep me"


# ----------------------------------------------------------------------------- permissions (root-proof)

PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2


def _obey_file_modes() -> None:
    """``preexec_fn``: make root subject to file modes, as every other user is.

    Root ignores ``chmod`` through the CAP_DAC_* capabilities; dropping them from the
    bounding set before ``exec`` leaves the new process without them. Non-root users obey
    file modes already.
    """
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def mask_obeying_file_modes(*args: object) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [*CLI, "mask", *(str(a) for a in args), "-q"], capture_output=True, text=True, timeout=300, preexec_fn=_obey_file_modes
        )
    except subprocess.SubprocessError as exc:  # root without CAP_SETPCAP (some containers)
        pytest.skip(f"running as root and cannot drop CAP_DAC_OVERRIDE here, so chmod cannot make a file unreadable: {exc}")


def test_unreadable_file(tmp_path: Path) -> None:
    locked = tmp_path / "locked.jsonl"
    locked.write_text('{"text": "You cannot read me."}\n')
    locked.chmod(0)
    good = write_good(tmp_path)
    try:
        stop = mask_obeying_file_modes(locked, good, "-o", tmp_path / "out")
        expected = f"Error: {locked}: cannot read the file: Permission denied. Check the path and its permissions{SKIP_HINT}"
        assert_error_text(stop.returncode, stop.stderr, expected)
        assert_not_complete(tmp_path / "out")
        skip = mask_obeying_file_modes(locked, good, "-o", tmp_path / "skip", "--on-error", "skip")
        assert skip.returncode == 0, skip.stderr
    finally:
        locked.chmod(0o644)
    counts = reconciled_manifest(tmp_path / "skip")["counts"]
    assert isinstance(counts, dict)
    assert (counts["documents_written"], counts["skipped_by_reason"]) == (2, {"unreadable-file": 1})


@pytest.mark.parametrize("existing", [False, True], ids=["new-folder", "existing-empty-folder"])
def test_read_only_output_location(tmp_path: Path, existing: bool) -> None:
    parent = tmp_path / "read-only"
    parent.mkdir()
    out = parent / "out"
    if existing:
        out.mkdir()
        out.chmod(0o555)
    parent.chmod(0o555)
    try:
        run = mask_obeying_file_modes(write_good(tmp_path), "-o", out)
    finally:
        parent.chmod(0o755)
        if existing:
            out.chmod(0o755)
    expected = (
        f"Error: cannot write to output folder {out} (Permission denied); nothing in it was changed. "
        "Make it writable, or choose a writable location with -o"
    )
    assert_error_text(run.returncode, run.stderr, expected)
    if existing:
        assert list(out.iterdir()) == []
    else:
        assert not out.exists()


# ----------------------------------------------------------------------------- full disk


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 2 MB of JSON lines: a few dozen 64 KB shards."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_bytes(random_jsonl(8000, seed=1))
    return path


def _limit_file_size() -> None:
    # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG, as a full disk fails with ENOSPC
    resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))


def assert_disk_error(run: subprocess.CompletedProcess[str], out: Path, cause: str) -> None:
    """One Error line naming the output folder and the OS's reason; nothing half-written left behind."""
    pattern = re.compile(rf"Error: .*{re.escape(str(out))}.*{cause}.*")
    assert_error_text(run.returncode, run.stderr, pattern)
    assert_not_complete(out)


def test_full_disk_simulated_by_a_file_size_limit(tmp_path: Path, small_corpus: Path) -> None:
    """Shards of 1 MB input (about 2 MB of ids and labels) exceed the 300 KB limit: the write fails mid-shard."""
    out = tmp_path / "out"
    run = subprocess.run(
        [*CLI, "mask", str(small_corpus), "-o", str(out), "-q", "--shard-size", "1MB"],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_file_size,
    )
    assert_disk_error(run, out, "File too large")
    resumed = mask(small_corpus, "-o", out, "--shard-size", "1MB", "--resume")
    assert resumed.exit_code == 0, resumed.output
    reconciled_manifest(out)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs, where this process may mount one (root with CAP_SYS_ADMIN: CI is)."""
    mountpoint = tmp_path / "tiny-disk"
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mountpoint)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def test_full_disk_on_a_tiny_tmpfs(tiny_disk: Path, small_corpus: Path) -> None:
    out = tiny_disk / "out"
    run = subprocess.run(
        [*CLI, "mask", str(small_corpus), "-o", str(out), "-q", "--shard-size", "64KB"], capture_output=True, text=True, timeout=300
    )
    assert_disk_error(run, out, "No space left on device")


# ----------------------------------------------------------------------------- Ctrl-C


@pytest.mark.parametrize("num_proc", [1, 2])
def test_ctrl_c_keeps_completed_shards_and_resume_finishes(tmp_path: Path, small_corpus: Path, num_proc: int) -> None:
    """SIGINT to the whole process group, as a terminal sends it: workers included."""
    out = tmp_path / "out"
    job = [small_corpus, "-o", out, "--shard-size", "64KB"]
    command = [*CLI, "mask", *map(str, job), "-q", "--num-proc", str(num_proc)]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=default_stop_signals
    )
    try:
        deadline = time.monotonic() + 120
        while process.poll() is None and not list(out.glob(".goldfish/shard-*.json")) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert process.poll() is None, "the run ended before it could be interrupted; use a larger corpus"
        os.killpg(process.pid, signal.SIGINT)
        try:
            _, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("mask hung after Ctrl-C")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert_error_text(process.returncode, stderr, INTERRUPTED, exit_code=130)
    assert_not_complete(out)
    assert list(out.glob("data-*.arrow")), "the shards completed before Ctrl-C were deleted"
    resumed = mask(*job, "--resume")
    assert resumed.exit_code == 0, resumed.output
    clean = mask(small_corpus, "-o", tmp_path / "clean", "--shard-size", "64KB")
    assert clean.exit_code == 0, clean.output
    assert output_bytes(out) == output_bytes(tmp_path / "clean")


def output_bytes(folder: Path) -> dict[str, bytes]:
    """Every file of an output folder but the resume markers, by name."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
