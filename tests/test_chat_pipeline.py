"""``goldfish-prep mask`` on conversations: every input format, the contract's columns, options, bad records.

Real Llama 3 tokenizer with the Llama-3-style template of tests/data/chat.
The shard contract (docs/format.md, chat shards) is checked row by row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from goldfish_prep_cli.main import cli
from tests.chat_data import template_text, tokenizer_folder

EOT = 128009
CONVERSATIONS = [
    [
        {"role": "system", "content": "You answer questions about Unix commands."},
        {"role": "user", "content": f"What does command number {i} do?"},
        {"role": "assistant", "content": f"Command {i} copies files from one place to another, keeping their permissions and times."},
    ]
    for i in range(40)
] + [
    [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "List files."},
        {"role": "assistant", "content": "Use ls -la to list every file, hidden ones included."},
    ],
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tokenizer_folder(tmp_path_factory.mktemp("tok"), "llama3", template_text("llama3"))


def run(*args: Any) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def mask(source: Path, out: Path, folder: Path, *options: Any) -> tuple[datasets.Dataset, dict[str, Any]]:
    result = run("mask", source, "-o", out, "--tokenizer", folder, "-q", *options)
    assert result.exit_code == 0, result.output
    return datasets.load_from_disk(str(out)), json.loads((out / "goldfish_manifest.json").read_text())


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def check_contract(row: dict[str, Any]) -> None:
    ids, labels, assistant = row["input_ids"], row["labels"], row["assistant_masks"]
    assert len(ids) == len(labels) == len(assistant) == row["num_tokens"]
    dropped = 0
    for token, label, flag in zip(ids, labels, assistant):
        assert label in (token, -100)
        if not flag:
            assert label == -100
        elif label == -100:
            dropped += 1
            assert token != EOT  # special tokens are never dropped
    assert dropped == row["num_dropped"]


def test_every_format_gives_the_same_contract_rows(tmp_path: Path, folder: Path) -> None:
    records = [{"messages": m} for m in CONVERSATIONS]
    jsonl = write_jsonl(tmp_path / "chat.jsonl", records)
    table = pa.Table.from_pylist(records)
    pq.write_table(table, tmp_path / "chat.parquet")
    with pa.OSFile(str(tmp_path / "chat.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    datasets.Dataset.from_list(records).save_to_disk(str(tmp_path / "saved"))
    (tmp_path / "chat.json").write_text(json.dumps(records), encoding="utf-8")
    sources = {
        "jsonl": jsonl,
        "json-array": tmp_path / "chat.json",
        "parquet": tmp_path / "chat.parquet",
        "arrow": tmp_path / "chat.arrow",
        "saved": tmp_path / "saved",
    }
    outputs = {}
    for name, source in sources.items():
        ds, manifest = mask(source, tmp_path / f"out-{name}", folder)
        assert ds.column_names == ["id", "source", "input_ids", "labels", "num_tokens", "num_dropped", "assistant_masks"]
        assert ds.features["assistant_masks"].feature.dtype == "int8"
        outputs[name] = [(r["input_ids"], r["labels"], r["assistant_masks"]) for r in ds]
        for row in ds:
            check_contract(row)
        counts = manifest["counts"]
        assert counts["documents_read"] == counts["documents_written"] == len(CONVERSATIONS)
        assert counts["assistant_tokens"] == sum(sum(r["assistant_masks"]) for r in ds)
        assert counts["dropped_tokens"] == sum(r["num_dropped"] for r in ds) > 0
        assert manifest["chat"]["mask_rule"] == "answer-local v1" and manifest["chat"]["generation_block"] is True
        assert manifest["k_field"] is None
    assert outputs["jsonl"] == outputs["json-array"] == outputs["parquet"] == outputs["arrow"] == outputs["saved"]


def test_prompt_completion_and_sharegpt_equal_messages(tmp_path: Path, folder: Path) -> None:
    pairs = [(c[-2]["content"], c[-1]["content"]) for c in CONVERSATIONS]
    messages = write_jsonl(
        tmp_path / "m.jsonl", [{"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": a}]} for p, a in pairs]
    )
    completion = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": p, "completion": a} for p, a in pairs])
    sharegpt = write_jsonl(
        tmp_path / "sg.jsonl", [{"conversations": [{"from": "human", "value": p}, {"from": "gpt", "value": a}]} for p, a in pairs]
    )
    rows = [
        mask(messages, tmp_path / "a", folder)[0],
        mask(completion, tmp_path / "b", folder)[0],
        mask(sharegpt, tmp_path / "c", folder, "--messages-field", "conversations")[0],
    ]
    as_lists = [[(r["input_ids"], r["labels"], r["assistant_masks"]) for r in ds] for ds in rows]
    assert as_lists[0] == as_lists[1] == as_lists[2]


def test_k_field_mixes_standard_loss_and_goldfish(tmp_path: Path, folder: Path) -> None:
    records = [{"messages": m, **({"k": [0, 2, 4, None][i % 4]} if i % 5 else {})} for i, m in enumerate(CONVERSATIONS)]
    ds, manifest = mask(write_jsonl(tmp_path / "k.jsonl", records), tmp_path / "out", folder, "--k-field", "k")
    assert ds.column_names[-1] == "k" and manifest["k_field"] == "k"
    for record, row in zip(records, ds):
        check_contract(row)
        assert row["k"] == (record.get("k") or 0)
        if row["k"] == 0:
            assert row["num_dropped"] == 0
    assert sum(row["num_dropped"] for row in ds if row["k"] == 2) > 0


def test_packed_rows_keep_assistant_masks(tmp_path: Path, folder: Path) -> None:
    source = write_jsonl(tmp_path / "chat.jsonl", [{"messages": m} for m in CONVERSATIONS])
    documents, _ = mask(source, tmp_path / "docs", folder)
    packed, _ = mask(source, tmp_path / "packed", folder, "--pack", 128)

    def flat(ds: datasets.Dataset, col: str) -> list[int]:
        return [v for row in ds for v in row[col]]

    n = len(flat(documents, "input_ids"))
    assert flat(packed, "input_ids")[:n] == flat(documents, "input_ids")
    assert flat(packed, "labels")[:n] == flat(documents, "labels")
    assert flat(packed, "assistant_masks")[:n] == flat(documents, "assistant_masks")
    assert set(flat(packed, "assistant_masks")[n:]) <= {0}
    assert sum(r["num_dropped"] for r in packed) == sum(r["num_dropped"] for r in documents)


def test_train_on_prompt_and_keep_ids(tmp_path: Path, folder: Path) -> None:
    source = write_jsonl(tmp_path / "chat.jsonl", [{"messages": m} for m in CONVERSATIONS])
    everything, manifest = mask(source, tmp_path / "all", folder, "--train-on-prompt")
    assert manifest["chat"]["train_on_prompt"] is True
    for row in everything:
        check_contract(row)
        assert set(row["assistant_masks"]) == {1}
    assert sum(label == -100 for row in everything for label, t in zip(row["labels"], row["input_ids"]) if t < 128000) > 0
    full_stop = 13  # "." in Llama 3
    kept, manifest = mask(source, tmp_path / "kept", folder, "--keep-ids", f"{full_stop}")
    assert manifest["chat"]["keep_ids"] == [full_stop]
    assert all(
        label != -100
        for row in kept
        for label, t, a in zip(row["labels"], row["input_ids"], row["assistant_masks"])
        if t == full_stop and a
    )


def test_num_proc_gives_identical_bytes(tmp_path: Path, folder: Path) -> None:
    source = write_jsonl(tmp_path / "chat.jsonl", [{"messages": m} for m in CONVERSATIONS * 5])
    mask(source, tmp_path / "one", folder, "--shard-size", "4KB")
    mask(source, tmp_path / "two", folder, "--shard-size", "4KB", "--num-proc", 2)
    names = sorted(p.name for p in (tmp_path / "one").iterdir() if p.is_file())
    assert len([n for n in names if n.startswith("data-")]) > 1
    assert all((tmp_path / "one" / n).read_bytes() == (tmp_path / "two" / n).read_bytes() for n in names)


BAD = [
    ({"messages": []}, "no-messages"),
    ({"text": "not a conversation"}, "no-messages"),
    ({"messages": [{"content": "no role"}]}, "invalid-message"),
    ({"messages": [{"role": "user"}]}, "invalid-message"),
    ({"messages": ["just a string"]}, "invalid-message"),
    ({"messages": [{"role": "user", "content": ["a", "list"]}, {"role": "assistant", "content": "x"}]}, "non-string-content"),
    ({"messages": [{"role": "wizard", "content": "hi"}, {"role": "assistant", "content": "x"}]}, "unknown-role"),
    ({"messages": [{"role": "user", "content": "only a question"}]}, "no-assistant-turn"),
    ({"messages": [{"role": "assistant", "content": "first"}, {"role": "user", "content": "q"}]}, "template-error"),
]


def test_bad_records_are_named_and_counted(tmp_path: Path, folder: Path) -> None:
    good = [{"messages": CONVERSATIONS[0]}]
    records = good + [record for record, _ in BAD] + good
    source = write_jsonl(tmp_path / "bad.jsonl", records)
    ds, manifest = mask(source, tmp_path / "out", folder, "--on-error", "skip")
    assert ds.num_rows == 2
    expected: dict[str, int] = {}
    for _, reason in BAD:
        expected[reason] = expected.get(reason, 0) + 1
    assert manifest["counts"]["skipped_by_reason"] == expected
    locations = [s["location"] for s in manifest["skipped"]]
    assert [loc.split(" message ")[0] for loc in locations] == [f"{source} line {i}" for i in range(2, 2 + len(BAD))]
    assert locations[2] == f"{source} line 4 message 0"  # a bad message is named within its record
    for index, (record, reason) in enumerate(BAD):
        one = write_jsonl(tmp_path / f"one-{index}.jsonl", good + [record])
        result = CliRunner().invoke(cli, ["mask", str(one), "-o", str(tmp_path / f"o{index}"), "--tokenizer", str(folder), "-q"])
        assert result.exit_code != 0
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"Error: {one} line 2") and "--on-error skip" in lines[0], (reason, result.output)
        assert "Traceback" not in result.output


def test_a_tokenizer_without_a_template_is_refused_with_the_fix(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "chat.jsonl", [{"messages": CONVERSATIONS[0]}])
    result = CliRunner().invoke(cli, ["mask", str(source), "-o", str(tmp_path / "out"), "-q"])
    assert result.exit_code != 0 and "has no chat template" in result.output and "--chat-template FILE.jinja" in result.output
    assert len(result.output.strip().splitlines()) == 1
    plain = tokenizer_folder(tmp_path / "tok", "deepseek", None)
    result = CliRunner().invoke(cli, ["mask", str(source), "-o", str(tmp_path / "out"), "--tokenizer", str(plain), "-q"])
    assert result.exit_code != 0 and "has no chat template" in result.output
    template = Path(__file__).parent / "data" / "chat" / "chatml.jinja"
    result = CliRunner().invoke(
        cli, ["mask", str(source), "-o", str(tmp_path / "out"), "--tokenizer", str(plain), "--chat-template", str(template), "-q"]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "goldfish_manifest.json").read_text())
    assert manifest["chat"]["template_source"] == str(template)
    result = CliRunner().invoke(cli, ["mask", str(source), "-o", str(tmp_path / "o2"), "--chat-template", str(template), "-q"])
    assert result.exit_code != 0 and "is a tiktoken tokenizer" in result.output and len(result.output.strip().splitlines()) == 1


def test_document_strategies_are_refused_for_chat(tmp_path: Path, folder: Path) -> None:
    source = write_jsonl(tmp_path / "chat.jsonl", [{"messages": CONVERSATIONS[0]}])
    result = CliRunner().invoke(
        cli, ["mask", str(source), "-o", str(tmp_path / "out"), "--tokenizer", str(folder), "--strategy", "static", "-q"]
    )
    assert result.exit_code != 0 and "answer by answer" in result.output
