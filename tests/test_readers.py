"""Input readers on real files: every format, the order guarantees, and every kind of bad input.

Files are written in ``tmp_path`` with the real writers (pyarrow compression
streams, Parquet and Arrow writers, ``datasets.save_to_disk``); the tests run
from inside ``tmp_path`` so locations read as a user sees them (``a.jsonl line 3``).
Fixtures in ``tests/data/readers`` are named after what they hold.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goldfish_prep.errors import InputError
from goldfish_prep.readers import InputSource, ReaderOptions, iter_records, resolve_inputs, streams
from goldfish_prep.readers.jsonl import parse_line
from goldfish_prep.readers.records import JsonLine, Record

DATA = Path(__file__).parent / "data" / "readers"
Item = Record | InputError


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run inside tmp_path, so specs and locations are short relative paths."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: str | Path, data: bytes) -> Path:
    """Write ``data``, compressed as the suffix says (real gzip / zstd streams from pyarrow)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = {".gz": "gzip", ".zst": "zstd"}.get(path.suffix)
    if codec is None:
        path.write_bytes(data)
    else:
        with pa.CompressedOutputStream(str(path), codec) as out:
            out.write(data)
    return path


def jsonl(*objects: object) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objects)


def read(*specs: str | Path, **options: object) -> list[Item]:
    resolved = resolve_inputs([str(s) for s in specs])
    return list(iter_records(resolved.sources, ReaderOptions(**options)))  # type: ignore[arg-type]


def errors(items: list[Item]) -> list[InputError]:
    return [i for i in items if isinstance(i, InputError)]


def records(items: list[Item]) -> list[Record]:
    return [i for i in items if isinstance(i, Record)]


def only_error(items: list[Item]) -> InputError:
    (error,) = errors(items)
    return error


# --- formats -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz", ".zst"])
def test_jsonl_plain_and_compressed(here: Path, suffix: str) -> None:
    lines = [b'{"text": "first"}', b"", b"  ", b'{"text": "caf\xc3\xa9", "n": 2}\r', b'{"text": "last, no newline"}']
    write(f"a.jsonl{suffix}", b"\n".join(lines))
    items = read(f"a.jsonl{suffix}")
    assert all(isinstance(i, Record) for i in items)
    # blank lines are not documents but count in line numbers; weight is the raw line length in bytes
    assert [(r.location, r.doc_id, r.text, r.weight) for r in records(items)] == [
        (f"a.jsonl{suffix} line 1", f"a.jsonl{suffix} line 1", "first", 17),
        (f"a.jsonl{suffix} line 4", f"a.jsonl{suffix} line 4", "café", 26),
        (f"a.jsonl{suffix} line 5", f"a.jsonl{suffix} line 5", "last, no newline", 28),
    ]


def test_multi_member_gzip_and_utf8_bom(here: Path) -> None:
    Path("m.jsonl.gz").write_bytes(gzip.compress(b'\xef\xbb\xbf{"text": "a"}\n') + gzip.compress(b'{"text": "b"}\n'))
    assert [r.text for r in records(read("m.jsonl.gz"))] == ["a", "b"]


def test_json_file_is_an_array_or_json_lines_by_its_first_byte(here: Path) -> None:
    write("array.json", b'\n  [{"text": "a", "id": 1},\n {"text": "b", "id": 2}, {"input_ids": [3, 4], "id": 3}]\n')
    write("lines.json", jsonl({"text": "c", "id": 4}))
    resolved = resolve_inputs(["array.json", "lines.json"])
    assert [(s.path, s.kind, s.local) for s in resolved.sources] == [("array.json", "json-array", True), ("lines.json", "jsonl", True)]
    items = list(iter_records(resolved.sources, ReaderOptions(id_field="id")))
    assert [(r.doc_id, r.location, r.text, r.input_ids) for r in records(items)] == [
        ("1", "array.json record 0", "a", None),
        ("2", "array.json record 1", "b", None),
        ("3", "array.json record 2", None, [3, 4]),
        ("4", "lines.json line 1", "c", None),
    ]
    assert records(items)[0].weight == len('{"text": "a", "id": 1}')


def test_json_array_elements_across_chunk_boundaries(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny chunks cut every element, number, escape and multi-byte character somewhere."""
    monkeypatch.setattr(streams, "_PLAIN_CHUNK", 7)
    elements = [{"text": "x" * n + "é\\u00e9\n", "n": n * 1.5e-3, "deep": [[n, -n, 1e10], {"k": None}]} for n in range(0, 300, 7)]
    write("big.json", json.dumps(elements, ensure_ascii=False, indent=1).encode())
    got = read("big.json")
    assert [r.text for r in records(got)] == [e["text"] for e in elements] and not errors(got)


def test_json_array_streams_a_large_file_with_big_elements(here: Path) -> None:
    elements = [{"text": f"{i} " + "word " * (i % 7 * 40000)} for i in range(40)]  # some elements > one 1 MiB chunk
    write("big.json.zst", json.dumps(elements).encode())
    assert [r.text for r in records(read("big.json.zst"))] == [e["text"] for e in elements]


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_text_file_is_one_document_or_one_per_line(here: Path, suffix: str) -> None:
    write(f"book.txt{suffix}", b"Chapter 1\r\n\r\nIt was a dark night.\n   \nThe end.")
    (whole,) = read(f"book.txt{suffix}")
    assert isinstance(whole, Record)
    assert (whole.doc_id, whole.location, whole.text, whole.weight) == (f"book.txt{suffix}",) * 2 + (
        "Chapter 1\r\n\r\nIt was a dark night.\n   \nThe end.",
        46,
    )
    lines = read(f"book.txt{suffix}", text_per_line=True)
    assert [(r.location, r.text, r.weight) for r in records(lines)] == [
        (f"book.txt{suffix} line 1", "Chapter 1", 10),
        (f"book.txt{suffix} line 3", "It was a dark night.", 20),
        (f"book.txt{suffix} line 5", "The end.", 8),
    ]


def test_parquet_text_with_ids_read_in_row_order(here: Path) -> None:
    texts = [f"document {i} é" for i in range(1000)]
    pq.write_table(pa.table({"text": texts, "doc": list(range(1000)), "other": [0.5] * 1000}), "t.parquet", row_group_size=300)
    got = records(read("t.parquet", id_field="doc"))
    assert [r.text for r in got] == texts
    assert (got[999].doc_id, got[999].location, got[999].weight) == ("999", "t.parquet record 999", len(texts[999].encode()))


def test_parquet_and_arrow_pretokenized(here: Path) -> None:
    table = pa.table({"input_ids": pa.array([[1, 2, 3], [7], [0, 2**31 - 1]], pa.list_(pa.int64()))})
    pq.write_table(table, "ids.parquet")
    for label, item in zip(["record 0", "record 1", "record 2"], records(read("ids.parquet"))):
        assert item.location == f"ids.parquet {label}" and item.text is None
    assert [(r.input_ids, r.weight) for r in records(read("ids.parquet"))] == [([1, 2, 3], 12), ([7], 4), ([0, 2**31 - 1], 8)]


@pytest.mark.parametrize("layout", ["file", "stream"])
def test_arrow_ipc_file_and_stream_formats(here: Path, layout: str) -> None:
    table = pa.table({"text": ["a", "bb", "ccc"], "id": ["x", "y", "z"]})
    opener = pa.ipc.new_file if layout == "file" else pa.ipc.new_stream
    with opener("t.arrow", table.schema) as writer:
        for batch in table.to_batches(max_chunksize=2):
            writer.write_batch(batch)
    got = records(read("t.arrow", id_field="id"))
    assert [(r.doc_id, r.location, r.text, r.weight) for r in got] == [
        ("x", "t.arrow record 0", "a", 1),
        ("y", "t.arrow record 1", "bb", 2),
        ("z", "t.arrow record 2", "ccc", 3),
    ]


def test_save_to_disk_folder_reads_its_shards_in_order(here: Path) -> None:
    texts = [f"doc {i}" for i in range(10)]
    datasets.Dataset.from_dict({"text": texts, "id": list(range(10))}).save_to_disk("saved", num_shards=3)
    resolved = resolve_inputs(["saved"])
    assert resolved.sources == [InputSource("saved", "hf-disk", True)] and resolved.ignored == []
    got = records(list(iter_records(resolved.sources, ReaderOptions(id_field="id"))))
    assert [r.text for r in got] == texts
    assert [r.location for r in got[3:5]] == ["saved record 3", "saved record 4"] and got[9].doc_id == "9"


def test_save_to_disk_folder_found_inside_a_folder_and_dataset_dict_refused(here: Path) -> None:
    dataset = datasets.Dataset.from_dict({"text": ["a", "b"]})
    datasets.DatasetDict({"train": dataset, "test": dataset}).save_to_disk("corpus/dd")
    with pytest.raises(InputError) as caught:
        resolve_inputs(["corpus/dd"])
    assert caught.value.reason == "dataset-dict"
    assert (
        str(caught.value)
        == "corpus/dd: this is a DatasetDict folder (splits: test, train), not one dataset. Name one split's subfolder, e.g. corpus/dd/test"
    )
    # inside a walked folder, its splits are simply inputs
    resolved = resolve_inputs(["corpus"])
    assert [(s.path, s.kind) for s in resolved.sources] == [("corpus/dd/test", "hf-disk"), ("corpus/dd/train", "hf-disk")]
    assert resolved.ignored == ["corpus/dd/dataset_dict.json"]


# --- order -----------------------------------------------------------------------------------------


def test_folder_walk_is_sorted_recursive_and_ignores_hidden_and_unknown(here: Path) -> None:
    for name in [
        "c/b.jsonl",
        "c/a/z.txt",
        "c/a/y.jsonl.gz",
        "c/B.txt",
        "c/.hidden.jsonl",
        "c/.git/x.jsonl",
        "c/notes.md",
        "c/a/data.csv.gz",
    ]:
        write(name, jsonl({"text": name}))
    resolved = resolve_inputs(["c/"])
    assert [s.path for s in resolved.sources] == ["c/B.txt", "c/a/y.jsonl.gz", "c/a/z.txt", "c/b.jsonl"]
    assert [s.kind for s in resolved.sources] == ["text", "jsonl", "text", "jsonl"]
    assert resolved.ignored == ["c/.git", "c/.hidden.jsonl", "c/a/data.csv.gz", "c/notes.md"]


def test_specs_keep_their_order_and_a_file_is_read_once(here: Path) -> None:
    for name in ["d/1.jsonl", "d/2.jsonl", "e.jsonl"]:
        write(name, jsonl({"text": name}))
    os.symlink("../e.jsonl", "d/3-link.jsonl")
    resolved = resolve_inputs(["e.jsonl", "d", "./e.jsonl", "d/2.jsonl"])
    assert [s.path for s in resolved.sources] == ["e.jsonl", "d/1.jsonl", "d/2.jsonl"]
    assert [r.text for r in records(list(iter_records(resolved.sources, ReaderOptions())))] == ["e.jsonl", "d/1.jsonl", "d/2.jsonl"]


def test_globs_are_sorted(here: Path) -> None:
    for name in ["g/b.jsonl", "g/a.jsonl", "g/sub/c.jsonl", "g/x.md"]:
        write(name, jsonl({"text": name}))
    assert [s.path for s in resolve_inputs(["g/*.jsonl"]).sources] == ["g/a.jsonl", "g/b.jsonl"]
    resolved = resolve_inputs(["g/**/*"])
    assert [s.path for s in resolved.sources] == ["g/a.jsonl", "g/b.jsonl", "g/sub/c.jsonl"] and resolved.ignored == ["g/x.md"]


def test_always_fatal_inputs_raise_with_what_to_do(here: Path) -> None:
    write("notes.md", b"hello")
    write("only-md/readme.md", b"hello")
    os.makedirs("loop/inner")
    os.symlink("..", "loop/inner/up")
    cases = {
        "missing.jsonl": (
            "missing-input",
            "missing.jsonl: no such file or folder. Check the path (relative paths start in the current folder)",
        ),
        "nothing/*.jsonl": (
            "missing-input",
            "nothing/*.jsonl: the pattern matches no file or folder. Check the pattern and the current folder",
        ),
        "notes.md": (
            "unknown-format",
            "notes.md: cannot tell the file's format from its name. Supported: .jsonl, .json, .txt (each plain, .gz or .zst), .parquet, .arrow, a datasets.save_to_disk folder; rename the file, or pass --assume-format text (or jsonl)",
        ),
        "only-md": ("missing-input", "only-md: the folder holds no input files (it holds only only-md/readme.md). Supported:"),
        "*.md": ("missing-input", "*.md: the pattern matches no input of a known format (only notes.md). Supported:"),
        "loop": ("symlink-loop", "loop/inner/up: symbolic link loop: loop/inner/up leads back into a folder that contains it"),
    }
    for spec, (reason, message) in cases.items():
        with pytest.raises(InputError) as caught:
            resolve_inputs([spec])
        assert caught.value.reason == reason and str(caught.value).startswith(message), spec


def test_self_referencing_symlink_is_a_loop(here: Path) -> None:
    os.makedirs("s")
    write("s/a.jsonl", jsonl({"text": "a"}))
    os.symlink("self.jsonl", "s/self.jsonl")
    with pytest.raises(InputError, match="symbolic link loop") as caught:
        resolve_inputs(["s"])
    assert caught.value.location == "s/self.jsonl"


def test_hub_id_with_hub_offline_fails_at_once_without_importing_datasets(here: Path) -> None:
    code = (
        "import sys\n"
        "from goldfish_prep.errors import InputError\n"
        "from goldfish_prep.readers import resolve_inputs\n"
        "try:\n    resolve_inputs(['someone/some-corpus'])\n"
        "except InputError as exc:\n    print(exc.reason, '|', exc, '|', 'datasets' in sys.modules)\n"
    )
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip() == (
        "hub-unavailable | someone/some-corpus: not an existing file or folder, and it cannot be streamed as an HF hub "
        "dataset: hub access is off (HF_DATASETS_OFFLINE=1). Check the path; to read the hub dataset, unset "
        "HF_DATASETS_OFFLINE on a machine with network access | False"
    )


def test_hub_reader_yields_an_error_when_the_hub_cannot_be_reached(here: Path) -> None:
    (error,) = list(iter_records([InputSource("someone/some-corpus", "hub", local=False)], ReaderOptions()))
    assert isinstance(error, InputError) and error.reason == "hub-unavailable"
    assert str(error).startswith("someone/some-corpus: cannot stream split 'train' of this HF hub dataset:")


# --- bad records -----------------------------------------------------------------------------------


def test_each_bad_record_kind_has_its_reason_and_names_the_line() -> None:
    path = DATA / "bad-records.jsonl"
    items = list(iter_records([InputSource(str(path), "jsonl")], ReaderOptions()))
    expected = {
        3: "invalid-json",
        4: "not-an-object",
        5: "missing-text-field",
        6: "null-text",
        7: "non-string-text",
        8: "empty-document",
        9: "invalid-utf8",
        10: "invalid-utf8",
        11: "non-integer-id",
        12: "non-integer-id",
        13: "negative-id",
        14: "id-too-large",
        15: "empty-document",
        16: "invalid-input-ids",
    }
    assert [i.location for i in records(items)] == [f"{path} line 1", f"{path} line 18"]
    assert records(items)[1].input_ids == [0, 2**31 - 1]
    assert [(e.location, e.reason) for e in errors(items)] == [(f"{path} line {n}", reason) for n, reason in expected.items()]
    by_line = {int(e.location.rsplit(" ", 1)[1]): str(e) for e in errors(items)}
    assert (
        by_line[3] == f"{path} line 3: invalid JSON: Unterminated string starting at: column 10. Each line must be one complete JSON object"
    )
    assert by_line[5].endswith("Is --text-field correct? Available keys: ['body', 'id']")
    assert "is a number (2.0), not an integer token id" in by_line[11] and "(True)" in by_line[12]


@pytest.mark.parametrize("fixture", ["bad-records.jsonl", "bad-truncated.jsonl.gz"])
def test_lines_left_unparsed_for_the_workers_parse_to_the_same_items(fixture: str) -> None:
    """``mask`` reads JSON lines with ``parse=False`` and its workers parse them: same records, same errors, same order."""
    source = [InputSource(str(DATA / fixture), "jsonl")]
    options = ReaderOptions(id_field=None)
    eager = list(iter_records(source, options))
    lazy = list(iter_records(source, options, parse=False))
    assert any(isinstance(item, JsonLine) for item in lazy)
    parsed = [parse_line(item.line, item.location, options) if isinstance(item, JsonLine) else item for item in lazy]
    assert [(type(i), str(i) if isinstance(i, InputError) else i) for i in parsed] == [
        (type(i), str(i) if isinstance(i, InputError) else i) for i in eager
    ]
    # shards are cut by weight before parsing: a line's weight is its parsed record's weight
    assert all(line.weight == record.weight for line, record in zip(lazy, parsed) if isinstance(record, Record))


def test_missing_id_field_lists_the_keys(here: Path) -> None:
    write("a.jsonl", jsonl({"text": "a", "key": 1}, {"text": "b", "doc_id": None}, {"text": "c", "doc_id": 7}))
    items = read("a.jsonl", id_field="doc_id")
    assert [e.location for e in errors(items)] == ["a.jsonl line 1", "a.jsonl line 2"]
    assert errors(items)[0].reason == "missing-id-field" and "Available keys: ['text', 'key']" in str(errors(items)[0])
    assert records(items)[0].doc_id == "7"


def test_bad_text_files(here: Path) -> None:
    write("latin1.txt", "line one\nna\xefve\n".encode("latin-1"))
    write("empty.txt", b"")
    write("blank.txt", b" \n\t\n")
    items = read("latin1.txt", "empty.txt", "blank.txt")
    assert [(e.location, e.reason) for e in errors(items)] == [
        ("latin1.txt", "invalid-utf8"),
        ("empty.txt", "empty-document"),
        ("blank.txt", "empty-document"),
    ]
    assert str(errors(items)[0]).startswith("latin1.txt: line 2 is not valid UTF-8")
    per_line = read("latin1.txt", text_per_line=True)
    assert [r.text for r in records(per_line)] == ["line one"] and only_error(per_line).location == "latin1.txt line 2"


def test_deep_nesting_and_huge_numbers_are_invalid_json_not_crashes(here: Path) -> None:
    write("deep.jsonl", b"[" * 100_000 + b"\n" + b'{"input_ids": [' + b"9" * 5000 + b"]}\n")
    assert [(e.location, e.reason) for e in errors(read("deep.jsonl"))] == [
        ("deep.jsonl line 1", "invalid-json"),
        ("deep.jsonl line 2", "invalid-json"),
    ]


def test_bad_json_array_reports_the_element_and_stops(here: Path) -> None:
    write("broken.json", b'[{"text": "ok"}, {"text": "fine"} {"text": "lost"}]')
    items = read("broken.json")
    assert [r.text for r in records(items)] == ["ok", "fine"]
    error = only_error(items)
    assert (error.location, error.reason) == ("broken.json record 2", "invalid-json")
    assert "Expecting ',' delimiter; the rest of the file was not read" in error.cause


# --- file-level failures ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".gz", ".zst"])
def test_truncated_file_yields_its_records_then_one_error_then_the_next_file(here: Path, suffix: str) -> None:
    lines = [{"text": f"document {i} " + os.urandom(30).hex()} for i in range(5000)]
    blob = write(f"cut.jsonl{suffix}", jsonl(*lines)).read_bytes()
    Path(f"cut.jsonl{suffix}").write_bytes(blob[: len(blob) // 2])
    write("next.jsonl", jsonl({"text": "after"}))
    items = read(f"cut.jsonl{suffix}", "next.jsonl")
    read_before = records(items)[:-1]
    assert 1000 < len(read_before) < 2500  # zstd may lose a part of its last internal block
    assert [r.text for r in read_before] == [line["text"] for line in lines[: len(read_before)]]
    error = only_error(items)
    assert items[-2] is error and items[-1].location == "next.jsonl line 1"
    assert (error.location, error.reason) == (f"cut.jsonl{suffix}", "truncated-file")
    assert f"the compressed data ends early after {len(read_before)} records" in error.cause


def test_truncated_gzip_fixture_loses_nothing_before_the_break() -> None:
    path = str(DATA / "bad-truncated.jsonl.gz")
    items = list(iter_records([InputSource(path, "jsonl")], ReaderOptions()))
    # gzip is inflated with zlib directly: every complete line before the break comes out
    assert len(records(items)) == 976 and items[-1].reason == "truncated-file"  # type: ignore[union-attr]


def test_binary_data_under_a_text_name_is_one_error(here: Path) -> None:
    write("nul.txt", b"text\x00\x01\x02 with NUL bytes")
    write("utf16.jsonl", '{"text": "hi"}\n'.encode("utf-16"))
    items = read(str(DATA / "bad-gzip-named-plain.jsonl"), "nul.txt", "utf16.jsonl")
    assert [e.reason for e in errors(items)] == ["binary-file"] * 3 and not records(items)
    assert str(errors(items)[0]).endswith(
        "bad-gzip-named-plain.jsonl: not UTF-8 text: it looks like gzip-compressed data. Name it with a .gz suffix"
    )
    assert "UTF-16 text. Re-encode it as UTF-8" in str(errors(items)[2])


def test_corrupt_and_unreadable_files_are_one_error_each(here: Path) -> None:
    Path("garbage.jsonl.gz").write_bytes(b"this is not gzip at all")
    Path("garbage.jsonl.zst").write_bytes(b"this is not zstd at all")
    write("garbage.parquet", b"PAR1 but nothing else")
    os.makedirs("links")
    os.symlink("nowhere.jsonl", "links/broken.jsonl")
    write("good.jsonl", jsonl({"text": "survivor"}))
    items = read("garbage.jsonl.gz", "garbage.jsonl.zst", "garbage.parquet", "links", "good.jsonl")
    assert [(e.location, e.reason) for e in errors(items)] == [
        ("garbage.jsonl.gz", "corrupt-file"),
        ("garbage.jsonl.zst", "corrupt-file"),
        ("garbage.parquet", "corrupt-file"),
        ("links/broken.jsonl", "unreadable-file"),
    ]
    assert (
        str(errors(items)[3]) == "links/broken.jsonl: cannot read the file: No such file or directory. Check the path and its permissions"
    )
    assert [r.text for r in records(items)] == ["survivor"]


def test_parquet_schema_problems_are_one_error_per_file(here: Path) -> None:
    pq.write_table(pa.table({"content": ["a", "b"], "meta": [1, 2]}), "wrong-field.parquet")
    pq.write_table(pa.table({"text": [1, 2]}), "int-text.parquet")
    pq.write_table(pa.table({"input_ids": [[1.0], [2.5]]}), "float-ids.parquet")
    pq.write_table(pa.table({"text": ["a"]}), "no-id.parquet")
    pq.write_table(pa.table({"text": ["kept"]}), "ok.parquet")
    items = read("wrong-field.parquet", "int-text.parquet", "float-ids.parquet", "ok.parquet")
    assert [(e.location, e.reason) for e in errors(items)] == [
        ("wrong-field.parquet", "missing-text-field"),
        ("int-text.parquet", "non-string-text"),
        ("float-ids.parquet", "non-integer-id"),
    ]
    assert str(errors(items)[0]) == (
        "wrong-field.parquet: no \"text\" field (and no \"input_ids\" list of token ids). Is --text-field correct? Available keys: ['content', 'meta']"
    )
    assert [r.text for r in records(items)] == ["kept"]
    assert only_error(read("no-id.parquet", id_field="doc")).reason == "missing-id-field"


def test_bad_rows_in_columnar_files(here: Path) -> None:
    pq.write_table(pa.table({"text": ["a", None, ""], "id": ["x", "y", None]}), "rows.parquet")
    got = read("rows.parquet", id_field="id")
    assert [(i.location, getattr(i, "reason", "ok")) for i in got] == [
        ("rows.parquet record 0", "ok"),
        ("rows.parquet record 1", "null-text"),
        ("rows.parquet record 2", "missing-id-field"),
    ]
    ids = pa.array([[1, 2], [], None, [-3], [2**31]], pa.list_(pa.int64()))
    pq.write_table(pa.table({"input_ids": ids}), "ids.parquet")
    assert [getattr(i, "reason", "ok") for i in read("ids.parquet")] == [
        "ok",
        "empty-document",
        "invalid-input-ids",
        "negative-id",
        "id-too-large",
    ]


# --- robustness ---------------------------------------------------------------------------------------


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.lists(
            st.sampled_from(
                [b"{", b"}", b"[", b"]", b'"text"', b'"input_ids"', b":", b",", b"\n", b"1", b"-", b"\xff", b"\x00", b"null", b'"\\ud800"']
            ),
            max_size=40,
        ).map(b"".join),
    ),
    name=st.sampled_from(["f.jsonl", "f.txt", "f.jsonl.gz", "f.json", "f.json.gz", "f.txt.zst"]),
    compress=st.sampled_from(["as-named", "raw", "truncated"]),
    per_line=st.booleans(),
)
def test_random_bytes_only_ever_yield_records_or_errors(tmp_path: Path, data: bytes, name: str, compress: str, per_line: bool) -> None:
    path = tmp_path / name
    if compress == "raw" or not name.endswith((".gz", ".zst")):
        path.write_bytes(data)
    else:
        write(path, data)
        if compress == "truncated":
            path.write_bytes(path.read_bytes()[:-5])
    resolved = resolve_inputs([str(path)])
    for item in iter_records(resolved.sources, ReaderOptions(text_per_line=per_line, id_field=None)):
        assert isinstance(item, (Record, InputError))
        if isinstance(item, Record):
            assert (item.text is None) != (item.input_ids is None) and item.weight > 0
            if item.text is not None:
                item.text.encode("utf-8")  # every text can be tokenized: valid Unicode
        else:
            assert item.location.startswith(str(path)) and item.reason
