"""Hypothesis fuzzing: whatever the input, only goldfish-prep's own errors, and no document lost.

The readers get random bytes under every file name they accept (plain, inside valid
compression, and cut short), and random JSON records in JSON lines, JSON arrays and Parquet.
The real `mask` command gets random bytes end to end. The masking API gets random ids and
random configurations, sensible and absurd. Everything must either work or raise a
``goldfish_prep.errors`` type; a ``TypeError`` or ``IndexError`` escaping is a bug, and so is
a record that neither becomes a document nor an error.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import resource
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from goldfish_prep import ConfigError, GoldfishError, MaskConfig, goldfish_mask
from goldfish_prep.errors import InputError
from goldfish_prep.readers import ReaderOptions, iter_records, resolve_inputs
from goldfish_prep.readers.records import Record
from goldfish_prep_cli.main import cli

READER_NAMES = ["x.jsonl", "x.json", "x.txt", "x.ndjson", "x.jsonl.gz", "x.json.zst", "x.txt.gz", "x.parquet", "x.arrow"]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for every example (Hypothesis reruns a test body; function-scoped tmp_path would be shared anyway)."""
    return tmp_path_factory.mktemp("fuzz")


def zstd(data: bytes) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as stream:
        stream.write(data)
    return bytes(sink.getvalue().to_pybytes())


def read_all(path: Path, options: ReaderOptions = ReaderOptions()) -> list[Record | InputError]:
    """Resolve and read one input, asserting the reader contract on every item."""
    try:
        sources = resolve_inputs([str(path)]).sources
        items = list(iter_records(sources, options))
    except GoldfishError:
        return []
    for item in items:
        check_item(item, str(path))
    return items


def check_item(item: object, path: str) -> None:
    assert isinstance(item, (Record, InputError)), f"reader yielded {type(item).__name__}"
    if isinstance(item, InputError):
        assert item.location.startswith(path), f"error does not name the file: {item}"
        assert item.cause and item.reason and "\n" not in str(item)
        return
    assert item.location.startswith(path)
    assert (item.text is None) != (item.input_ids is None)
    if item.text is not None:
        assert isinstance(item.text, str) and item.text
        item.text.encode("utf-8")  # no lone surrogates reach a tokenizer
    else:
        ids = item.input_ids
        assert ids is not None and len(ids) > 0
        assert all(type(i) is int and 0 <= i < 2**31 for i in ids)


# ----------------------------------------------------------------------------- readers: random bytes


@FAST
@given(name=st.sampled_from(READER_NAMES), data=st.binary(max_size=2000))
def test_readers_survive_random_bytes(scratch: Path, name: str, data: bytes) -> None:
    path = scratch / name
    path.write_bytes(data)
    read_all(path)


line_bytes = st.lists(
    st.one_of(
        st.binary(max_size=60),
        st.builds(lambda text: json.dumps({"text": text}).encode(), st.text(max_size=30)),
        st.sampled_from([b'{"text": "ok"}', b'{"text": "\\ud800"}', b"\xef\xbb\xbf{}", b"[", b"{", b'{"input_ids": [1, -1]}', b"\r"]),
    ),
    max_size=20,
).map(lambda lines: b"\n".join(lines))


@FAST
@given(name=st.sampled_from(["x.jsonl.gz", "x.jsonl.zst", "x.txt.gz", "x.json.gz"]), data=line_bytes, cut=st.floats(0, 1))
def test_readers_survive_compressed_and_truncated_data(scratch: Path, name: str, data: bytes, cut: float) -> None:
    compressed = gzip.compress(data) if name.endswith(".gz") else zstd(data)
    path = scratch / name
    path.write_bytes(compressed[: math.ceil(len(compressed) * cut)])
    read_all(path)


# ----------------------------------------------------------------------------- readers: random records, none lost

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=10
)
ids_values = st.one_of(
    st.lists(st.integers(-5, 2**32), max_size=8),
    st.lists(st.one_of(st.integers(0, 100), st.booleans(), st.floats(0, 10), st.text(max_size=2)), max_size=5),
    json_values,
)
records = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={"text": st.one_of(st.text(max_size=40), json_values), "id": json_values, "input_ids": ids_values, "other": json_values},
    ),
)
options = st.builds(ReaderOptions, text_field=st.sampled_from(["text", "other"]), id_field=st.sampled_from([None, "id"]))


@FAST
@given(rows=st.lists(records, max_size=25), reader=options, array=st.booleans())
def test_every_json_record_becomes_a_document_or_an_error(scratch: Path, rows: list[Any], reader: ReaderOptions, array: bool) -> None:
    if array:
        path = scratch / "records.json"
        path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    else:
        path = scratch / "records.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    items = read_all(path, reader)
    if not rows:
        assert len(items) <= 1  # an empty file: nothing, or one error if refused as empty
        assert all(isinstance(item, InputError) for item in items)
        return
    assert len(items) == len(rows), "a record was lost or doubled"
    for row, item in zip(rows, items):
        if isinstance(item, Record) and item.text is not None:
            assert isinstance(row, dict) and item.text == row[reader.text_field]
        if isinstance(item, Record) and reader.id_field is not None:
            assert isinstance(row, dict) and item.doc_id == str(row[reader.id_field])


parquet_texts = st.lists(st.one_of(st.none(), st.text(max_size=30)), min_size=1, max_size=30)
parquet_ids = st.lists(
    st.one_of(st.none(), st.lists(st.one_of(st.none(), st.integers(-(2**40), 2**40)), max_size=6)), min_size=1, max_size=30
)


@FAST
@given(column=st.one_of(parquet_texts, parquet_ids), name=st.sampled_from(["text", "input_ids", "body"]), batch=st.integers(1, 8))
def test_every_parquet_row_becomes_a_document_or_an_error(scratch: Path, column: list[Any], name: str, batch: int) -> None:
    path = scratch / "rows.parquet"
    pq.write_table(pa.table({name: column}), path, row_group_size=batch)
    items = read_all(path)
    # a column of the wrong type or name is one error for the file; otherwise one item per row
    assert len(items) in (1, len(column))
    if len(items) != len(column):
        assert isinstance(items[0], InputError)


# ----------------------------------------------------------------------------- the real command


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=line_bytes, name=st.sampled_from(["x.jsonl", "x.json", "x.txt"]), on_error=st.sampled_from(["stop", "skip"]))
def test_mask_command_on_random_bytes(scratch: Path, data: bytes, name: str, on_error: str) -> None:
    folder = scratch / "command"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    out = scratch / "command-out"
    result = CliRunner().invoke(cli, ["mask", str(path), "-o", str(out), "-q", "--overwrite", "--on-error", on_error])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code in (0, 1), result.output
    if result.exit_code == 1:
        # one Error line; a failed --overwrite may first note that the output it was replacing is back in place
        lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("note: the run failed, so the finished output")]
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
        return
    counts = json.loads((out / "goldfish_manifest.json").read_text())["counts"]
    assert counts["documents_read"] == counts["documents_written"] + counts["documents_skipped"]


# ----------------------------------------------------------------------------- the masking API

strategies_ = st.sampled_from(["goldfish", "hash-table", "static", "none"])


@settings(max_examples=300, deadline=None)
@given(
    ids=st.lists(st.integers(0, 2**32 - 1), max_size=200),
    strategy=strategies_,
    k=st.integers(2, 1000),
    context_width=st.integers(1, 300),
    seed=st.integers(0, 2**64 - 1),
)
def test_goldfish_mask_on_sensible_configs(ids: list[int], strategy: str, k: int, context_width: int, seed: int) -> None:
    drop = goldfish_mask(np.array(ids, dtype=np.uint64), k=k, context_width=context_width, strategy=strategy, seed=seed)
    assert drop.dtype == np.bool_ and drop.shape == (len(ids),)
    if strategy == "hash-table":  # goldfish spec v2, the default, decides a document's first positions too
        assert not drop[:context_width].any()
    if strategy == "goldfish":
        v1 = goldfish_mask(ids, k=k, context_width=context_width, seed=seed, spec_version=1)
        assert not v1[:context_width].any() and np.array_equal(v1[context_width:], drop[context_width:])
    assert np.array_equal(drop, goldfish_mask(ids, k=k, context_width=context_width, strategy=strategy, seed=seed))


anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**80), 2**80),
    st.floats(),
    st.text(max_size=10),
    st.binary(max_size=10),
    st.lists(st.integers(0, 5), max_size=3),
)
token_ids = st.one_of(
    st.lists(st.integers(-(2**70), 2**70), max_size=50),
    st.lists(st.integers(0, 1000), max_size=50),
    st.lists(st.one_of(st.integers(0, 9), st.floats(), st.booleans(), st.text(max_size=2), st.none()), max_size=10),
    st.lists(st.lists(st.integers(0, 9), max_size=3), max_size=3),
    anything,
)


@settings(max_examples=400, deadline=None)
@given(
    ids=token_ids,
    strategy=st.one_of(strategies_, anything),
    k=st.one_of(st.integers(-5, 2**70), anything),
    context_width=st.one_of(st.integers(-5, 2**70), anything),
    seed=st.one_of(st.integers(-5, 2**70), anything),
)
@example(ids=[[], [0]], strategy="goldfish", k=2, context_width=1, seed=0)  # found by this test: ragged lists
def test_goldfish_mask_on_anything_raises_only_config_errors(ids: Any, strategy: Any, k: Any, context_width: Any, seed: Any) -> None:
    try:
        drop = goldfish_mask(ids, k=k, context_width=context_width, strategy=strategy, seed=seed)
    except ConfigError as error:
        assert str(error) and "\n" not in str(error)
        return
    assert drop.dtype == np.bool_ and drop.ndim == 1


@settings(max_examples=300, deadline=None)
@given(
    ids=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=100),
    strategy=strategies_,
    k=st.integers(-5, 2**80),
    context_width=st.integers(-5, 2**80),
    seed=st.integers(-5, 2**80),
)
# found by this test; pinned so that they are tried first, whatever the random draw
@example(ids=[0], strategy="goldfish", k=2, context_width=2**60, seed=0)
@example(ids=list(range(40)), strategy="hash-table", context_width=2**40, k=4, seed=0)
@example(ids=list(range(20)), strategy="static", k=2**63, context_width=1, seed=0)
def test_goldfish_mask_on_extreme_integers_raises_only_config_errors(
    ids: list[int], strategy: str, k: int, context_width: int, seed: int
) -> None:
    """Valid ids and strategy, any integer for k, context_width and seed: a mask or a ConfigError, never a crash.

    Under a memory ceiling: a huge ``context_width`` must not become a huge allocation (on a
    shared machine it would be the OOM killer's business, not this test's).
    """
    with memory_ceiling(2 << 30):
        try:
            drop = goldfish_mask(ids, k=k, context_width=context_width, strategy=strategy, seed=seed)
        except ConfigError:
            return
    assert drop.shape == (len(ids),)


@contextlib.contextmanager
def memory_ceiling(extra: int) -> Iterator[None]:
    """Cap this process's address space at its current size plus ``extra`` bytes while the block runs."""
    with open("/proc/self/status", encoding="ascii") as status:
        size_kib = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    ceiling = size_kib * 1024 + extra
    resource.setrlimit(resource.RLIMIT_AS, (ceiling if hard == resource.RLIM_INFINITY else min(ceiling, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@settings(max_examples=200, deadline=None)
@given(
    data=st.dictionaries(
        st.sampled_from(["strategy", "k", "context_width", "seed", "spec_version", "ignore_index"]), anything | strategies_
    )
)
def test_mask_config_from_any_manifest_dict(data: dict[str, Any]) -> None:
    """A manifest's "mask" entry is user-editable JSON: any content is a config or a ConfigError."""
    try:
        config = MaskConfig.from_dict(data)
    except ConfigError:
        return
    assert MaskConfig.from_dict(config.to_dict()) == config


def _chunks(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    """``data`` cut at ``sizes``; like every real byte stream, never an empty chunk."""
    start = 0
    for size in sizes:
        if data[start : start + size]:
            yield data[start : start + size]
        start += size
    if data[start:]:
        yield data[start:]


@FAST
@given(
    lines=st.lists(st.binary(max_size=30).filter(lambda b: b"\n" not in b), max_size=15), sizes=st.lists(st.integers(1, 20), max_size=20)
)
def test_line_splitting_is_independent_of_chunk_boundaries(lines: list[bytes], sizes: list[int]) -> None:
    """A file's lines are the same however the decompressor happens to cut its bytes."""
    from goldfish_prep.readers.streams import iter_lines

    data = b"\n".join(lines)
    assume(data)
    expected = data.split(b"\n")
    if expected and expected[-1] == b"":
        expected.pop()
    assert list(iter_lines(_chunks(data, sizes))) == expected
