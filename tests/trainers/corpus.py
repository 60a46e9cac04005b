"""The trainers' test data: real `goldfish-prep mask` output with the real Llama 3 tokenizer, text and chat, and its exports.

Text: license paragraphs as documents, and the same packed into rows of 256.
Chat: conversations (multi-turn, some with a system turn) rendered with the
Llama-3-style template of tests/data/chat, prompts masked. Each comes with its
``--format hf`` and ``--format parquet`` exports. ``compare`` checks the labels
a trainer's model received against the export's rows, position by position.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import datasets

from goldfish_prep.export import export
from tests.chat_data import template_text, tokenizer_folder
from tests.shards import LICENSES, mask_texts

IGNORE_INDEX = -100


def paragraphs(count: int) -> list[str]:
    text = (LICENSES / "Apache-2.0").read_text(encoding="utf-8") + (LICENSES / "MPL-2.0").read_text(encoding="utf-8")
    return [p.strip() for p in re.split(r"\n\s*\n", text) if 150 <= len(p.strip()) <= 700][:count]


def conversations(count: int) -> list[dict[str, Any]]:
    records = []
    for i, paragraph in enumerate(paragraphs(count)):
        chat = [{"role": "user", "content": f"What does clause {i} of the licence say?"}, {"role": "assistant", "content": paragraph}]
        if i % 3 == 0:
            chat = [
                {"role": "system", "content": "Quote the licence."},
                *chat,
                {"role": "user", "content": "Thanks."},
                {"role": "assistant", "content": "You are welcome."},
            ]
        records.append({"messages": chat})
    return records


def make_corpus(folder: Path) -> dict[str, Path]:
    """Shards (text, packed text, chat) and their hf and parquet exports, plus the tokenizer folder."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer_folder(folder, "llama3", template_text("llama3"))
    made = {"tokenizer": tokenizer}
    made["text"] = mask_texts(folder, "text", paragraphs(16), "--tokenizer", str(tokenizer), "--k", "4")
    made["packed"] = mask_texts(folder, "packed", paragraphs(16), "--tokenizer", str(tokenizer), "--k", "4", "--pack", "256")
    chats = folder / "chat.jsonl"
    chats.write_text("".join(json.dumps(r) + "\n" for r in conversations(12)), encoding="utf-8")
    from tests.shards import run

    result = run("mask", chats, "-o", folder / "chat", "--tokenizer", tokenizer, "-q")
    assert result.exit_code == 0, result.output
    made["chat"] = folder / "chat"
    for name in ("text", "packed", "chat"):
        made[f"{name}-hf"] = export(made[name], folder / f"{name}-hf", "hf").out
        made[f"{name}-parquet"] = export(made[name], folder / f"{name}-parquet", "parquet").out
    return made


_MADE: dict[Path, dict[str, Path]] = {}


def shared_corpus(base: Path) -> dict[str, Path]:
    """``make_corpus`` once per pytest session (``base``: the session's base temporary folder), for every trainer's tests."""
    if base not in _MADE:
        _MADE[base] = make_corpus(base / "trainers-corpus")
    return _MADE[base]


def export_rows(hf_folder: Path) -> dict[tuple[int, ...], list[int]]:
    """The export's rows, real tokens only (attention mask 1), by their ids: ids -> labels."""
    rows = datasets.load_from_disk(str(hf_folder))
    table: dict[tuple[int, ...], list[int]] = {}
    for ids, labels, mask in zip(rows["input_ids"], rows["labels"], rows["attention_mask"]):
        n = sum(mask)
        table[tuple(ids[:n])] = labels[:n]
    return table


def recorded(path: Path) -> list[dict[str, list[list[int]]]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def compare(batches: Iterable[dict[str, list[list[int]]]], expected: dict[tuple[int, ...], list[int]], shift: int = 0) -> dict[str, int]:
    """Compare each recorded row's labels with its export row's, position by position.

    A recorded row is matched to the export row whose ids begin it (the rest is
    the collator's padding, whose labels must be -100). ``shift=1``: the trainer
    hands the model labels already shifted left by one (``labels[t]`` is the
    target of position ``t``), as litgpt and torchtune do. Returns the counts:
    rows, positions compared, mismatches, dropped positions (-100 in the export
    on a real token), and rows that matched no export row.
    """
    by_length: dict[int, dict[tuple[int, ...], list[int]]] = {}
    for ids, labels in expected.items():
        by_length.setdefault(len(ids), {})[ids] = labels
    counts = {"rows": 0, "positions": 0, "mismatches": 0, "dropped": 0, "unmatched": 0}
    for batch in batches:
        for ids, labels in zip(batch["input_ids"], batch["labels"]):
            match = next((n for n in sorted(by_length, reverse=True) if tuple(ids[:n]) in by_length[n]), None)
            if match is None:
                counts["unmatched"] += 1
                continue
            want = by_length[match][tuple(ids[:match])]
            want = want[shift:] + [IGNORE_INDEX] * shift  # the target of position t is the label at t + shift
            got = labels[:match]
            counts["rows"] += 1
            counts["positions"] += len(ids)
            counts["mismatches"] += sum(a != b for a, b in zip(got, want)) + sum(label != IGNORE_INDEX for label in labels[match:])
            counts["dropped"] += sum(label == IGNORE_INDEX for label in want[: len(want) - shift]) if shift else want.count(IGNORE_INDEX)
    return counts
