"""Chat outputs through every consumer: stats over assistant tokens, show, the trainer's data, memorisation.

Each figure is checked against a count made conversation by conversation in
plain Python from the rendered messages, not from the code under test.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from goldfish_prep.inspect.stats import compute_stats
from goldfish_prep.train.data import evaluation_rows, load_documents, load_shards
from goldfish_prep.train.memorization import MemorizationConfig, measure_memorization
from goldfish_prep_cli.main import cli
from tests.chat_shards import IM_END, chat_bpe, render, write_chat_output
from tests.shards import LICENSES


def conversations() -> list[list[dict[str, str]]]:
    """Licence paragraphs as answers; every other conversation ends with a two-token answer instead."""
    text = (LICENSES / "GPL-3").read_text(encoding="utf-8")
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if 300 < len(p.strip()) < 900][:24]
    chats = []
    for i, paragraph in enumerate(paragraphs):
        chat = [{"role": "system", "content": "You answer questions about licences."}, {"role": "user", "content": f"What does part {i} say?"},
                {"role": "assistant", "content": paragraph}]  # fmt: skip
        if i % 2:
            chat += [{"role": "user", "content": "Is that all?"}, {"role": "assistant", "content": "Yes."}]
        chats.append(chat)
    return chats


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("chat")
    chats = conversations()
    tokenizer = chat_bpe(base, [m["content"] for chat in chats for m in chat])
    return {
        "chats": chats,
        "tokenizer": tokenizer,
        "documents": write_chat_output(base / "documents", tokenizer, chats),
        "mixed": write_chat_output(base / "mixed", tokenizer, chats, row_k=[0, 4, 8] * 8),
        "packed": write_chat_output(base / "packed", tokenizer, chats, pack=200),
    }


def by_hand(outputs: dict[str, Any], folder: str) -> tuple[list[int], list[int], list[int]]:
    """Per conversation: assistant tokens, eligible ones (not special), dropped ones (label -100 inside answers)."""
    import datasets

    specials = {outputs["tokenizer"].token_to_id(t) for t in ("<|endoftext|>", "<|im_start|>", IM_END)}
    rows = datasets.load_from_disk(str(outputs[folder]))
    ks = rows["k"] if "k" in rows.column_names else [4] * len(rows)
    assistant, eligible, dropped = [], [], []
    for row, k in zip(rows, ks):
        flags = row["assistant_masks"]
        assistant.append(sum(flags))
        eligible.append(sum(f == 1 and t not in specials for f, t in zip(flags, row["input_ids"])) if k else 0)
        dropped.append(sum(f == 1 and label == -100 for f, label in zip(flags, row["labels"])))
    return assistant, eligible, dropped


@pytest.mark.parametrize("folder", ["documents", "mixed"])
def test_stats_rates_cover_assistant_tokens_only(outputs: dict[str, Any], folder: str) -> None:
    result = compute_stats(outputs[folder])
    assistant, eligible, dropped = by_hand(outputs, folder)
    assert result.chat is not None
    assert result.chat.assistant.tolist() == assistant
    assert result.eligible.tolist() == eligible and result.dropped.tolist() == dropped
    assert result.column_disagreements == 0  # num_dropped counts drops among assistant tokens only
    assert int(result.tokens.sum()) > 1.2 * sum(assistant)  # the prompt is there, and is not rated
    assert abs(result.overall_rate - 0.25) < 0.05 if folder == "documents" else True


def test_stats_reports_rates_per_k(outputs: dict[str, Any]) -> None:
    groups = {g["k"]: g for g in compute_stats(outputs["mixed"]).to_dict()["chat"]["by_k"]}
    assert sorted(groups) == [0, 4, 8]
    assert groups[0]["units"] == 8 and groups[0]["eligible"] == 0 and groups[0]["dropped"] == 0
    for k in (4, 8):
        low, high = groups[k]["rate_band"]
        assert groups[k]["expected_rate"] == 1 / k and low <= groups[k]["rate"] <= high
    assert "short_answers" in groups[4]  # the two-token "Yes." answers of k=4 rows
    text = CliRunner().invoke(cli, ["stats", str(outputs["mixed"])]).output
    assert "k=0 (standard loss)" in text and "k=8" in text and "assistant" in text


def test_stats_of_a_packed_chat_output_match_its_documents(outputs: dict[str, Any]) -> None:
    packed, documents = compute_stats(outputs["packed"]), compute_stats(outputs["documents"])
    assert packed.unit == "row"
    assert int(packed.eligible.sum()) == int(documents.eligible.sum()) and int(packed.dropped.sum()) == int(documents.dropped.sum())
    assert packed.chat is not None and documents.chat is not None
    assert packed.chat.short == documents.chat.short


def test_show_marks_prompt_tokens_apart_from_dropped_ones(outputs: dict[str, Any]) -> None:
    result = CliRunner().invoke(cli, ["show", str(outputs["documents"]), "--row", "1", "--no-color"])
    assert result.exit_code == 0, result.output
    head, body = result.output.split("\n\n", 1)
    chat = outputs["chats"][1]
    ids, flags = render(outputs["tokenizer"], chat)
    prompt_runs = re.findall(r"\u27ea(.*?)\u27eb", body, flags=re.S)
    assert prompt_runs[0].startswith("<|im_start|>system\nYou answer questions about licences.")
    assert all("\u27e6" not in run for run in prompt_runs)  # no prompt token is shown as dropped
    _, _, dropped = by_hand(outputs, "documents")
    assert body.count("\u27e6") == dropped[1] and f"{sum(flags)} assistant tokens, {len(ids) - sum(flags)} prompt" in head
    html = CliRunner().invoke(cli, ["show", str(outputs["documents"]), "--row", "1", "--html", str(outputs["documents"].parent / "row.html")])
    assert html.exit_code == 0 and '<span class="p">' in (outputs["documents"].parent / "row.html").read_text(encoding="utf-8")


def test_trainer_data_keeps_the_prompt_out_of_validation_loss(outputs: dict[str, Any]) -> None:
    data = load_shards(outputs["documents"])
    assert data.assistant is not None
    rows = evaluation_rows(data, 64)
    scored = sum(int((targets != -100).sum()) for _, targets in rows)
    # every assistant token is a target but a document's first (never an answer's, which follow a prompt)
    assert scored == int(data.assistant.sum())


class Oracle:
    """A 'model' that has memorised every conversation whole: it continues any of their prefixes exactly."""

    def __init__(self, sequences: list[list[int]], vocab_size: int) -> None:
        self.next = {tuple(s[:i]): s[i] for s in sequences for i in range(1, len(s))}
        self.vocab_size, self.context_length, self.device, self.description = vocab_size, 4096, torch.device("cpu"), {"kind": "oracle"}

    def _logprobs(self, prefixes: list[tuple[int, ...]]) -> torch.Tensor:
        out = torch.full((len(prefixes), self.vocab_size), -30.0)
        for i, prefix in enumerate(prefixes):
            out[i, self.next.get(prefix, 0)] = 0.0
        return out

    def prefill(self, ids: torch.Tensor) -> tuple[Any, torch.Tensor]:
        cache = [tuple(row) for row in ids.tolist()]
        return cache, self._logprobs(cache)

    def extend(self, cache: Any, rows: torch.Tensor, tokens: torch.Tensor) -> tuple[Any, torch.Tensor]:
        grown = [cache[r] + (t,) for r, t in zip(rows.tolist(), tokens.tolist())]
        return grown, self._logprobs(grown)


@pytest.mark.parametrize("folder", ["documents", "packed"])
def test_memorization_suffix_is_the_end_of_the_final_answer(outputs: dict[str, Any], folder: str) -> None:
    rendered = [render(outputs["tokenizer"], chat)[0] for chat in outputs["chats"]]
    oracle = Oracle(rendered, 600)  # the whole rendering, trailing template newline included
    report = measure_memorization(oracle, outputs[folder], MemorizationConfig(suffix_length=50))  # type: ignore[arg-type]
    end = outputs["tokenizer"].token_to_id(IM_END)
    long_final = [i for i, chat in enumerate(outputs["chats"]) if len(chat) == 3]
    assert len(report.documents) == len(long_final) and report.skipped_short == len(outputs["chats"]) - len(long_final)
    for score, i in zip(report.documents, long_final):
        ids = rendered[i]
        answer_end = len(ids) - 1  # the final answer ends with <|im_end|>, before the template's newline
        assert ids[answer_end - 1] == end and score.suffix == ids[answer_end - 50 : answer_end]
        assert score.prefix_length == answer_end - 50 and score.exact_match
    whole = measure_memorization(oracle, outputs[folder], MemorizationConfig(whole_answer=True))  # type: ignore[arg-type]
    assert len(whole.documents) == len(outputs["chats"]) and all(d.exact_match for d in whole.documents)
    assert [len(d.suffix) for d in whole.documents][1] == len(outputs["tokenizer"].encode("Yes.").ids) + 1


def test_load_documents_of_packed_and_document_chat_outputs_agree(outputs: dict[str, Any]) -> None:
    packed, plain = load_documents(outputs["packed"]), load_documents(outputs["documents"])
    assert [(d.ids.tolist(), d.answer_start) for d in packed] == [(d.ids.tolist(), d.answer_start) for d in plain]
    assert np.all([d.answer_start is not None and 0 < d.answer_start < len(d.ids) for d in plain])
