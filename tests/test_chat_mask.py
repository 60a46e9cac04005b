"""Answer-local goldfish (docs/mask-spec.md): the spec's vectors, content addressing in conversations, real rates.

The pipeline tests run ``goldfish-prep mask`` on chat JSONL with the real Llama 3
tokenizer and the Llama-3-style template of tests/data/chat.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import xxhash
from click.testing import CliRunner

from goldfish_prep.strategies.answer_local import answer_drops
from goldfish_prep.strategies.goldfish import drop_flat
from goldfish_prep_cli.main import cli
from tests.chat_data import template_text, tokenizer_folder
from tests.reference_answer_local import answer_dropped

VECTORS = Path(__file__).parent / "data" / "answer_local_v1_vectors.json"


def test_vectors() -> None:
    cases = json.loads(VECTORS.read_text())["cases"]
    assert len(cases) >= 30
    for case in cases:
        ids = np.array(case["answer"], dtype=np.int64)
        drop = answer_drops(ids, np.array([0]), np.array(case["eligible"]), case["k"], case["context_width"], case["seed"])
        assert np.flatnonzero(drop).tolist() == case["dropped"], case


def test_vectorised_equals_reference_on_many_answers_end_to_end() -> None:
    rng = random.Random(7)
    for _ in range(40):
        h = rng.choice([1, 3, 13, 32])
        answers = [[rng.randrange(0, 200) for _ in range(rng.randint(1, 30))] for _ in range(rng.randint(1, 6))]
        ks = [rng.choice([0, 2, 4, 9]) for _ in answers]
        eligible = [[rng.random() > 0.1 for _ in a] for a in answers]
        flat = np.array([t for a in answers for t in a])
        starts = np.cumsum([0] + [len(a) for a in answers[:-1]])
        k_tokens = np.repeat(ks, [len(a) for a in answers])
        drop = answer_drops(flat, starts, np.concatenate([np.array(e) for e in eligible]), k_tokens, h, 3)
        expected = [d for a, e, k in zip(answers, eligible, ks) for d in answer_dropped(a, e, k, h, 3)]
        assert drop.tolist() == expected


def test_full_windows_equal_the_document_rule() -> None:
    ids = np.random.default_rng(0).integers(0, 100_000, 5000)
    answer = answer_drops(ids, np.array([0]), np.ones(len(ids), bool), 4, 13, 0)
    document = drop_flat(ids, 13, 4, 0)
    assert (answer[13:] == document[13:]).all()
    assert answer[:13].any() or answer_drops(ids[:200], np.array([0]), np.ones(200, bool), 2, 13, 0)[:13].any()


def _mask(tmp_path: Path, records: list[dict[str, Any]], *options: str) -> tuple[datasets.Dataset, dict[str, Any]]:
    folder = tokenizer_folder(tmp_path / "tok", "llama3", template_text("llama3"))
    source = tmp_path / "chat.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["mask", str(source), "-o", str(out), "--tokenizer", str(folder), "-q", "--overwrite", *options], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return datasets.load_from_disk(str(out)), json.loads((out / "goldfish_manifest.json").read_text())


def _answers(row: dict[str, Any]) -> list[tuple[list[int], list[int]]]:
    """(ids, labels) of each maximal run of assistant tokens in a row."""
    mask = row["assistant_masks"]
    runs, start = [], None
    for i, flag in enumerate(mask + [0]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((row["input_ids"][start:i], row["labels"][start:i]))
            start = None
    return runs


def test_the_same_answer_gets_the_same_drops_wherever_it_appears(tmp_path: Path) -> None:
    answer = "The GNU General Public License is a free, copyleft license for software and other kinds of works."
    short = "Yes, it is."
    records = [
        {"messages": [{"role": "user", "content": "What is the GPL?"}, {"role": "assistant", "content": answer}]},
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Tell me about licences, in one sentence please."},
                {"role": "assistant", "content": short},
                {"role": "user", "content": "And the GPL?"},
                {"role": "assistant", "content": answer},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": "Is it free?"},
                {"role": "assistant", "content": short},
                {"role": "user", "content": "Define it."},
                {"role": "assistant", "content": answer},
                {"role": "user", "content": "Sure?"},
                {"role": "assistant", "content": short},
            ]
        },
        {"prompt": "GPL, quickly", "completion": answer},
    ]
    ds, manifest = _mask(tmp_path, records, "--k", "3")
    runs = [run for row in ds for run in _answers(row)]
    by_ids: dict[tuple[int, ...], set[tuple[int, ...]]] = {}
    for ids, labels in runs:
        by_ids.setdefault(tuple(ids), set()).add(tuple(labels))
    assert len(runs) == 7 and len(by_ids) == 2  # 4 times the long answer, 3 times the short one
    for label_sets in by_ids.values():
        assert len(label_sets) == 1, "a repeated answer must carry one mask"
        (labels,) = label_sets
        assert labels[-1] == 128009  # <|eot_id|> is never dropped
    assert any(-100 in labels for label_sets in by_ids.values() for labels in label_sets)
    assert manifest["chat"]["mask_rule"] == "answer-local v1"


def _band(eligible: int, k: int) -> tuple[float, float]:
    p = 1 / k
    sigma = math.sqrt(p * (1 - p) / eligible)
    return p - 3.29 * sigma, p + 3.29 * sigma  # two-sided 99.9%


def test_real_answers_drop_one_in_k_also_when_short(tmp_path: Path, real_texts: list[str]) -> None:
    """Answers are real licence sentences and phrases of 2-12 tokens. Decisions are per distinct window
    (content addressing: the same window, the same decision), so the binomial band applies to the
    distinct windows, over all answers and over the short ones alone."""
    sentences = sorted({s.strip() for text in real_texts[:300] for s in re.split(r"(?<=[.!?])\s+", text) if 40 < len(s.strip()) < 400})
    words = " ".join(sentences).split()
    rng = random.Random(11)
    phrases = sorted({" ".join(words[i : i + rng.randint(1, 8)]) for i in rng.sample(range(len(words) - 10), 6000)})
    records = [{"prompt": f"Question {i}?", "completion": answer} for i, answer in enumerate(sentences[:1500] + phrases)]
    k = 4
    ds, manifest = _mask(tmp_path, records, "--k", str(k), "--num-proc", "2")
    windows: dict[tuple[int, ...], bool] = {}
    short: dict[tuple[int, ...], bool] = {}
    for row in ds:
        for ids, labels in _answers(row):
            text_tokens = len(ids) - 1  # the answer's last token is <|eot_id|>, never dropped
            assert labels[-1] == ids[-1] == 128009
            for t in range(text_tokens):
                window = tuple(ids[max(0, t - 12) : t + 1])
                windows[window] = labels[t] == -100
                if 2 <= text_tokens <= 12:
                    short[window] = windows[window]
    assert manifest["counts"]["eligible_tokens"] == sum(len(ids) - 1 for row in ds for ids, _ in _answers(row))
    assert len(short) > 10_000
    for decisions in (windows, short):
        low, high = _band(len(decisions), k)
        assert low <= sum(decisions.values()) / len(decisions) <= high, (sum(decisions.values()), len(decisions))


def test_repeats_reports_that_repeated_answers_carry_one_mask(tmp_path: Path) -> None:
    import pyarrow as pa

    from goldfish_prep.inspect.answers import answer_agreement

    answer = "Use ls -la to list every file in the folder, hidden ones included, with sizes and dates."
    records = [
        {
            "messages": [
                {"role": "user", "content": f"Question {i}?"},
                {"role": "assistant", "content": answer if i % 2 else f"Unique answer {i}."},
            ]
        }
        for i in range(10)
    ]
    ds, _ = _mask(tmp_path, records, "--k", "2")
    agreement = answer_agreement(tmp_path / "out")
    assert agreement is not None
    assert (agreement.answers, agreement.distinct, agreement.repeated, agreement.copies, agreement.differing) == (10, 6, 1, 5, 0)
    assert agreement.dropped_tokens == sum(label == -100 for ids, labels in _answers(ds[1]) for label in labels) > 0
    result = CliRunner().invoke(cli, ["repeats", str(tmp_path / "out"), "--min-length", "5"])
    assert "every copy of every repeated answer carries the same mask" in result.output, result.output
    # a copy whose mask was changed is noticed
    shard = tmp_path / "out" / "data-00000.arrow"
    table = pa.ipc.open_stream(shard.read_bytes()).read_all()
    labels = table.column("labels").to_pylist()
    row = labels[3]
    position = ds[3]["assistant_masks"].index(1)
    row[position] = -100 if row[position] != -100 else ds[3]["input_ids"][position]
    table = table.set_column(table.schema.get_field_index("labels"), "labels", pa.array(labels, type=pa.list_(pa.int32())))
    with pa.OSFile(str(shard), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    # as if the folder had been written so (a masking bug, not a damaged file): the manifest records the new bytes,
    # so the readers' checksum check lets it through and the agreement check is what must notice
    manifest_path = tmp_path / "out" / "goldfish_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["shards"]:
        if entry["filename"] == shard.name:
            entry["sha256"] = hashlib.sha256(shard.read_bytes()).hexdigest()
            entry["xxh3_128"] = xxhash.xxh3_128_hexdigest(shard.read_bytes())
    manifest_path.write_text(json.dumps(manifest))
    changed = answer_agreement(tmp_path / "out")
    assert changed is not None and changed.differing == 1
