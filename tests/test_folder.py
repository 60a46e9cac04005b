"""The output folder object: task ownership and resume rules on names, the life cycle on real folders, the commit
protocol, and shard reads that check their checksum in the same pass."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from goldfish_prep.errors import ConfigError, InputError, OutputError
from goldfish_prep.format.commit import PendingFile, committed_file, file_sha256, json_bytes
from goldfish_prep.format.folder import OutputFolder, Task, open_folder, run_digest
from goldfish_prep.format.local_folder import LocalFolder
from goldfish_prep.format.names import shard_filename, shard_record_name
from goldfish_prep.format.ownership import is_output_entry, stale_entries, stale_progress
from goldfish_prep.format.reader import open_shards
from goldfish_prep.format.schema import shard_schema
from goldfish_prep.format.shard_bytes import ChecksumError
from goldfish_prep.format.url_folder import UrlFolder
from goldfish_prep.pipeline._finish import finalize_output
from goldfish_prep.pipeline._writer import ShardWriter, int32_array, list_array, string_array

RUN: dict[str, Any] = {"mask": {"k": 4}, "tokenizer": {"name": "t", "engine": "fastokens"}, "layout": {"pack": None}}


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_every_shard_and_record_has_exactly_one_owner(count: int) -> None:
    tasks = [Task(i, count) for i in range(count)]
    for shard in range(40):
        for name in (
            shard_filename(shard),
            shard_filename(shard) + ".partial",
            shard_record_name(shard),
            shard_record_name(shard) + ".9.partial",
        ):
            assert [t.index for t in tasks if t.owns(name)] == [shard % count]
    # files that describe the whole folder belong to a run alone, never to one of several tasks
    assert [t.index for t in tasks if t.owns("state.json")] == ([0] if count == 1 else [])


def test_only_goldfish_entries_count_as_ours() -> None:
    ours = [
        "data-00000.arrow",
        "data-00003.arrow.partial",
        "goldfish_manifest.json",
        "state.json.123.partial",
        ".goldfish",
        "dataset_info.json",
    ]
    assert all(is_output_entry(name) for name in ours)
    assert not any(is_output_entry(name) for name in ["notes.txt", "data-00000.parquet", "train.bin", "state.json.bak"])


def test_a_resumed_task_deletes_its_unfinished_shards_and_the_finishing_files_only() -> None:
    entries = [
        "data-00000.arrow",  # task 0, complete: kept
        "data-00001.arrow",  # task 1's: not ours to touch
        "data-00002.arrow",  # task 0, not complete: redone
        "data-00004.arrow.partial",  # task 0's temporary
        "data-00005.arrow.partial",  # task 1's temporary
        "goldfish_manifest.json",
        "state.json",
        "dataset_info.json.77.partial",
        ".goldfish",
    ]
    stale = stale_entries(entries, ["data-00000.arrow"], Task(0, 2))
    assert stale == ["data-00002.arrow", "data-00004.arrow.partial", "goldfish_manifest.json", "state.json", "dataset_info.json.77.partial"]
    # a run alone owns every shard
    assert "data-00001.arrow" in stale_entries(entries, ["data-00000.arrow"], Task())


def test_a_resumed_task_keeps_other_tasks_progress_and_its_completed_records() -> None:
    entries = [
        "run.json",
        "shard-00000.json",  # task 0, complete
        "shard-00001.json",  # task 1's
        "shard-00002.json",  # task 0, its shard was not kept
        "shard-00004.json.12.partial",  # task 0's record temporary
        "task-00000-of-00002.json",  # this task's own end record: it is running again
        "task-00001-of-00002.json",  # the other task's: kept
        "task-00000-of-00003.json",  # an earlier split into 3: stale for everyone
        "run.json.5.partial",
    ]
    assert stale_progress(entries, [0], Task(0, 2)) == [
        "shard-00002.json",
        "shard-00004.json.12.partial",
        "task-00000-of-00002.json",
        "task-00000-of-00003.json",
    ]
    # alone, a run also clears temporaries it does not recognise, and every other task's file
    assert "run.json.5.partial" in stale_progress(entries, [0], Task()) and "task-00001-of-00002.json" in stale_progress(
        entries, [0], Task()
    )


def _finished_shard(folder: LocalFolder, index: int, payload: bytes) -> None:
    name = shard_filename(index)
    with committed_file(folder.file(name)) as out:
        out.write(payload)
    assert out.hexdigest() == ""  # hashed only when asked: exports and checkpoints need no checksum
    folder.write_shard_record({"index": index, "filename": name, "sha256": hashlib.sha256(payload).hexdigest()})


def test_resume_keeps_exactly_the_shards_whose_record_and_checksum_match(tmp_path: Path) -> None:
    folder = LocalFolder(tmp_path / "out")
    assert folder.prepare(RUN, "refuse") == {}
    for index in range(3):
        _finished_shard(folder, index, f"shard {index}".encode())
    folder.file("data-00001.arrow").write_bytes(b"changed after it was written")
    folder.file(".goldfish/shard-00002.json").unlink()  # killed between the shard and its record
    folder.file("data-00003.arrow.partial").write_bytes(b"torn")
    # a different engine gives the same ids: still the same run
    completed = folder.prepare({**RUN, "tokenizer": {"name": "t", "engine": "tiktoken"}}, "resume")
    assert sorted(completed) == [0]
    assert folder.entries() == [".goldfish", "data-00000.arrow"]
    assert folder.entries(".goldfish") == ["run.json", "shard-00000.json"]


def test_resume_refuses_other_settings_and_names_the_first_difference(tmp_path: Path) -> None:
    folder = LocalFolder(tmp_path / "out")
    folder.prepare(RUN, "refuse")
    _finished_shard(folder, 0, b"x")
    with pytest.raises(OutputError, match=r"different settings \(mask\.k: 4 then, 5 now\)"):
        folder.prepare({**RUN, "mask": {"k": 5}}, "resume")


def test_resume_over_another_runs_inputs_names_the_first_input_not_both_lists(tmp_path: Path) -> None:
    """A newcomer who reuses an output folder for another corpus with --resume gets one readable line
    (it used to hold both runs' whole input lists, every size and hash)."""
    folder = LocalFolder(tmp_path / "out")
    before = [{"path": f"data/part{i}.jsonl.gz", "size": 40_000 + i, "xxh3_128": "be7f" * 8} for i in range(2)]
    after = [{"path": f"corpus/{i}.txt", "size": 11_358 + i, "mtime_ns": 1796531903104771863} for i in range(5)]
    folder.prepare({**RUN, "inputs": before}, "refuse")
    _finished_shard(folder, 0, b"x")
    with pytest.raises(OutputError) as refused:
        folder.prepare({**RUN, "inputs": after}, "resume")
    expected = "(inputs: 2 item(s) then, 5 now; the first: inputs[0].path: 'data/part0.jsonl.gz' then, 'corpus/0.txt' now)"
    assert expected in str(refused.value) and "xxh3" not in str(refused.value)
    # one input changed in place: its own field is named
    touched = [{**before[0], "size": 1}, before[1]]
    with pytest.raises(OutputError, match=r"\(inputs\[0\]\.size: 40000 then, 1 now\)"):
        folder.prepare({**RUN, "inputs": touched}, "resume")


def test_a_task_matches_its_run_against_the_description_it_read_not_a_newer_one(tmp_path: Path) -> None:
    """Tasks of one run start together: task 1 may finish and record its inputs' hashes between task 0
    reading run.json and task 0 preparing; task 0 then compares against what it read, once (CI saw
    "cannot resume ... different settings" from a Ray run before this)."""
    folder = LocalFolder(tmp_path / "out")
    started = {**RUN, "inputs": [{"path": "a.jsonl", "size": 3, "mtime_ns": 7}]}
    folder.prepare(started, "resume", Task(1, 2))
    previous = folder.previous_run()
    assert previous == started
    finished = {**RUN, "inputs": [{"path": "a.jsonl", "size": 3, "xxh3_128": "f0"}]}
    folder.write_run(finished)  # task 1 finished
    assert folder.prepare(started, "resume", Task(0, 2), previous) == {}
    folder.write_run(finished)
    with pytest.raises(OutputError, match=r"different settings \(inputs\[0\]\.mtime_ns: absent then, 7 now\)"):
        folder.prepare(started, "resume", Task(0, 2))  # read again now: the newer description differs


def test_resume_without_a_readable_run_description_is_refused(tmp_path: Path) -> None:
    folder = LocalFolder(tmp_path / "out")
    folder.prepare(RUN, "refuse")
    _finished_shard(folder, 0, b"x")
    folder.file(".goldfish/run.json").write_text("{torn")
    with pytest.raises(OutputError, match=r"no readable \.goldfish/run\.json; pass --overwrite"):
        folder.previous_run()


def test_refuse_overwrite_and_foreign_files(tmp_path: Path) -> None:
    folder = LocalFolder(tmp_path / "out")
    folder.prepare(RUN, "refuse")
    _finished_shard(folder, 0, b"x")
    with pytest.raises(OutputError, match="already exists and is not empty; pass --overwrite"):
        folder.prepare(RUN, "refuse")
    assert folder.prepare(RUN, "overwrite") == {} and folder.entries() == [".goldfish"]
    folder.file("notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"holds files goldfish-prep did not write \(notes\.txt\)"):
        folder.prepare(RUN, "overwrite")
    assert folder.file("notes.txt").read_text() == "mine"


def test_an_overwriting_task_leaves_the_other_tasks_shards(tmp_path: Path) -> None:
    folder = LocalFolder(tmp_path / "out")
    folder.prepare(RUN, "resume", Task(0, 2))
    for index in range(4):
        _finished_shard(folder, index, bytes([index]))
    folder.prepare(RUN, "overwrite", Task(1, 2))
    assert folder.entries() == [".goldfish", "data-00000.arrow", "data-00002.arrow"]


def test_run_digest_ignores_key_order_and_the_engine() -> None:
    reordered = json.loads(json.dumps(RUN, sort_keys=True))
    assert run_digest(RUN) == run_digest(reordered) == run_digest({**RUN, "tokenizer": {"name": "t"}})
    assert run_digest(RUN) != run_digest({**RUN, "mask": {"k": 3}})


def test_a_commit_leaves_the_final_file_or_nothing(tmp_path: Path) -> None:
    final = tmp_path / "file.bin"
    pending = PendingFile(final)
    pending.write(b"half")
    assert not final.exists()
    pending.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError), committed_file(final) as out:
        out.write(b"half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    pending = PendingFile(final)
    pending.write(b"whole")
    assert pending.commit() == hashlib.sha256(b"whole").hexdigest() == file_sha256(final)
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_json_files_are_sorted_and_end_in_a_newline(tmp_path: Path) -> None:
    folder = LocalFolder(tmp_path)
    folder.write_json("x.json", {"b": 1, "a": [1, 2]})
    assert folder.read_bytes("x.json") == json_bytes({"a": [1, 2], "b": 1}) == b'{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    assert folder.entries() == ["x.json"]


def test_a_shard_is_read_and_hashed_in_one_pass(tmp_path: Path) -> None:
    folder = LocalFolder(tmp_path)
    table = pa.table({"input_ids": pa.array([[1, 2], [3]], pa.list_(pa.int32()))})
    with committed_file(folder.file("data-00000.arrow")) as out, pa.ipc.new_stream(pa.PythonFile(out, mode="w"), table.schema) as writer:
        writer.write_table(table)
    digest = file_sha256(folder.file("data-00000.arrow"))
    shard = folder.read_shard_bytes("data-00000.arrow")
    assert shard.table().equals(table) and shard.sha256 == digest
    assert folder.read_shard("data-00000.arrow", sha256=digest).equals(table)
    with pytest.raises(ChecksumError, match="the file changed after it was written") as caught:
        folder.read_shard("data-00000.arrow", sha256="0" * 64)
    assert isinstance(caught.value, InputError) and caught.value.location.endswith("data-00000.arrow")


def _life_of_a_folder(folder: OutputFolder) -> None:
    """Prepare, write two shards and their records through the pipeline's writer, finish, resume: as `mask` does."""
    folder.prepare(RUN_FULL, "refuse")
    for index in range(2):
        writer = ShardWriter(folder, shard_filename(index), shard_schema(False))
        ids = np.arange(10 * index, 10 * index + 7, dtype=np.int32)
        offsets = np.array([0, 3, 7], dtype=np.int64)
        writer.write(
            {
                "id": string_array([f"doc {index}.0", f"doc {index}.1"]),
                "source": string_array(["a line 1", "a line 2"]),
                "input_ids": list_array(ids, offsets),
                "labels": list_array(ids, offsets),
                "num_tokens": int32_array(np.diff(offsets)),
                "num_dropped": int32_array(np.zeros(2)),
            }
        )
        checksums = writer.close()
        counts = {
            "documents_read": 2,
            "documents_written": 2,
            "documents_skipped": 0,
            "tokens": 7,
            "eligible_tokens": 0,
            "dropped_tokens": 0,
        }
        folder.write_shard_record(
            {
                "index": index,
                "filename": shard_filename(index),
                **checksums,
                "num_rows": 2,
                "num_documents": 2,
                "num_tokens": 7,
                "num_dropped": 0,
                **counts,
                "skipped_by_reason": {},
                "skipped": [],
            }  # fmt: skip
        )
    finalize_output(folder, 2)
    assert sorted(folder.prepare(RUN_FULL, "resume")) == [0, 1]
    finalize_output(folder, 2)


RUN_FULL: dict[str, Any] = {
    "tool": {"name": "goldfish-prep", "version": "test"},
    "mask": {"strategy": "none", "k": 4, "context_width": 13, "seed": 0},
    "tokenizer": {"spec": "t", "vocab_size": 100},
    "reader": {},
    "inputs": [],
    "layout": {"pack": None, "shard_size": 1},
}


def _files(folder: OutputFolder, under: str = "") -> dict[str, bytes]:
    files = {}
    for name in folder.entries(under):
        path = f"{under}/{name}" if under else name
        files.update(_files(folder, path) if name == ".goldfish" else {path: folder.read_bytes(path)})
    return files


def test_a_url_folder_is_the_same_folder_on_another_storage(tmp_path: Path) -> None:
    pytest.importorskip("fsspec")
    local, remote = LocalFolder(tmp_path / "out"), open_folder("memory://goldfish-test/out")
    assert isinstance(remote, UrlFolder)
    for folder in (local, remote):
        _life_of_a_folder(folder)
    assert _files(remote) == _files(local) and len(_files(local)) == 8
    shards = open_shards(remote, check_sha256=True)
    assert [doc.id for doc in shards.documents()] == ["doc 0.0", "doc 0.1", "doc 1.0", "doc 1.1"]
    remote.write_bytes("data-00001.arrow", local.read_bytes("data-00000.arrow"))  # a shard replaced after the fact
    with pytest.raises(ChecksumError):
        list(open_shards(remote, check_sha256=True).batches())
    with pytest.raises(ConfigError, match="cannot open nosuchscheme://x"):
        open_folder("nosuchscheme://x")
    assert isinstance(open_folder("shards/"), LocalFolder) and open_folder("shards/").where() == "shards/"
