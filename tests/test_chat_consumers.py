"""Chat outputs of the real `goldfish-prep mask` through every consumer: stats, show, verify, train data, memorisation.

Conversations whose answers are licence paragraphs, rendered with the real Llama 3
tokenizer and the Llama-3-style template of tests/data/chat. Each figure is
checked against a count made row by row in plain Python from the shards' lists.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
from click.testing import CliRunner

from goldfish_prep.inspect.stats import compute_stats
from goldfish_prep.inspect.verify import verify_folder
from goldfish_prep.train.data import evaluation_rows, load_documents, load_shards
from goldfish_prep.train.memorization import MemorizationConfig, measure_memorization
from goldfish_prep_cli.main import cli
from tests.chat_data import template_text, tokenizer_folder
from tests.shards import LICENSES, Oracle


def conversations() -> list[dict[str, Any]]:
    """Licence paragraphs as answers: some conversations end with a short answer, some with a user turn."""
    text = (LICENSES / "GPL-3").read_text(encoding="utf-8")
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if 300 < len(p.strip()) < 900][:24]
    records = []
    for i, paragraph in enumerate(paragraphs):
        chat = [{"role": "user", "content": f"What does part {i} say?"}, {"role": "assistant", "content": paragraph}]
        if i % 3 == 0:
            chat.insert(0, {"role": "system", "content": "You answer questions about licences."})
        elif i % 3 == 1:
            chat += [{"role": "user", "content": "Is that all?"}, {"role": "assistant", "content": "Yes."}]
        else:
            chat += [{"role": "user", "content": "Thanks."}]  # ends on a prompt: the final answer is the paragraph
        records.append({"id": f"chat-{i}", "messages": chat, "k": [0, 4, 8][i % 3]})
    # the first answer again, after other prompts and at a later turn: it must carry the same mask
    again = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Repeat part 0."}]
    records.append({"id": "again-0", "messages": [*again, {"role": "assistant", "content": paragraphs[0]}], "k": 4})
    records.append(
        {
            "id": "again-1",
            "messages": [{"role": "user", "content": "Part zero, please."}, {"role": "assistant", "content": paragraphs[0]}],
            "k": 4,
        }
    )
    return records


def mask(base: Path, name: str, records: list[dict[str, Any]], folder: Path, *options: str) -> Path:
    source = base / f"{name}.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    result = CliRunner().invoke(
        cli, ["mask", str(source), "-o", str(base / name), "--tokenizer", str(folder), "--id-field", "id", "-q", *options]
    )
    assert result.exit_code == 0, result.output
    return base / name


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("chat")
    folder = tokenizer_folder(base, "llama3", template_text("llama3"))
    records = conversations()
    plain = [{key: value for key, value in r.items() if key != "k"} for r in records]
    from tokenizers import Tokenizer

    added = Tokenizer.from_file(str(folder / "tokenizer.json")).get_added_tokens_decoder()
    return {
        "records": records,
        "specials": {index for index, token in added.items() if token.special},
        "documents": mask(base, "documents", plain, folder),
        "mixed": mask(base, "mixed", records, folder, "--k-field", "k"),
        "packed": mask(base, "packed", plain, folder, "--pack", "256"),
    }


def by_hand(outputs: dict[str, Any], folder: str) -> tuple[list[int], list[int], list[int]]:
    """Per conversation: assistant tokens, eligible ones (not special, k >= 2), dropped ones (label -100 inside answers)."""
    rows = datasets.load_from_disk(str(outputs[folder]))
    ks = rows["k"] if "k" in rows.column_names else [4] * len(rows)
    assistant, eligible, dropped = [], [], []
    for row, k in zip(rows, ks):
        flags = row["assistant_masks"]
        assistant.append(sum(flags))
        eligible.append(sum(f == 1 and t not in outputs["specials"] for f, t in zip(flags, row["input_ids"])) if k else 0)
        dropped.append(sum(f == 1 and label == -100 for f, label in zip(flags, row["labels"])))
    return assistant, eligible, dropped


def final_answer(flags: list[int]) -> tuple[int, int]:
    """(start, end) of the last run of 1s."""
    end = max(i for i, f in enumerate(flags) if f) + 1
    start = end
    while start > 0 and flags[start - 1]:
        start -= 1
    return start, end


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
    result = CliRunner().invoke(cli, ["show", str(outputs["documents"]), "--row", "0", "--no-color"])
    assert result.exit_code == 0, result.output
    head, body = result.output.split("\n\n", 1)
    row = datasets.load_from_disk(str(outputs["documents"]))[0]
    prompt_runs = re.findall(r"\u27ea(.*?)\u27eb", body, flags=re.S)
    assert prompt_runs[0].startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou answer questions about licences.")
    assert all("\u27e6" not in run for run in prompt_runs)  # no prompt token is shown as dropped
    assistant = sum(row["assistant_masks"])
    assert body.count("\u27e6") == row["num_dropped"] > 0
    assert f"{assistant:,} assistant tokens, {row['num_tokens'] - assistant:,} prompt" in head
    page = outputs["documents"].parent / "row.html"
    assert CliRunner().invoke(cli, ["show", str(outputs["documents"]), "--row", "0", "--html", str(page)]).exit_code == 0
    assert '<span class="p">' in page.read_text(encoding="utf-8")


@pytest.mark.parametrize("folder", ["documents", "mixed", "packed"])
def test_verify_accepts_real_chat_outputs(outputs: dict[str, Any], folder: str) -> None:
    report = verify_folder(outputs[folder])
    assert report.ok, [str(p) for p in report.problems]
    assert (
        report.chat
        and report.total("assistant") == json.loads((outputs[folder] / "goldfish_manifest.json").read_text())["counts"]["assistant_tokens"]
    )


def tamper(outputs: dict[str, Any], tmp_path: Path, folder: str, change: Any) -> list[str]:
    """A copy of an output with one label changed by ``change(row) -> position``; what verify reports."""
    import shutil

    import pyarrow as pa

    copy = tmp_path / folder
    shutil.copytree(outputs[folder], copy)
    path = copy / "data-00000.arrow"
    table = pa.ipc.open_stream(pa.OSFile(str(path))).read_all()
    labels = table.column("labels").to_pylist()
    row = table.slice(0, 1).to_pylist()[0]
    position, value = change(row)
    labels[0][position] = value
    table = table.set_column(table.schema.get_field_index("labels"), "labels", pa.array(labels, pa.list_(pa.int32())))
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return [str(p) for p in verify_folder(copy).problems]


def test_verify_names_a_supervised_prompt_token(outputs: dict[str, Any], tmp_path: Path) -> None:
    problems = tamper(outputs, tmp_path, "documents", lambda row: (3, row["input_ids"][3]))
    assert any("row 0 position 3" in p and "not the assistant's" in p for p in problems)


def test_verify_names_an_answer_token_dropped_against_the_rule(outputs: dict[str, Any], tmp_path: Path) -> None:
    def kept_answer_token(row: dict[str, Any]) -> tuple[int, int]:
        position = next(i for i, (flag, label) in enumerate(zip(row["assistant_masks"], row["labels"])) if flag and label != -100)
        return position, -100

    problems = tamper(outputs, tmp_path, "documents", kept_answer_token)
    assert any("the recomputed mask keeps this token" in p for p in problems)


def test_repeats_searches_answers_and_finds_repeated_answers_with_one_mask(outputs: dict[str, Any]) -> None:
    result = CliRunner().invoke(cli, ["repeats", str(outputs["documents"]), "--json", "--min-length", "20"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    rows = datasets.load_from_disk(str(outputs["documents"]))
    # by hand: every answer (run of assistant tokens) with its drops, grouped by ids
    seen: dict[tuple[int, ...], list[tuple[bool, ...]]] = {}
    for row in rows:
        flags, ids, labels = row["assistant_masks"], row["input_ids"], row["labels"]
        t = 0
        while t < len(ids):
            if flags[t]:
                end = t
                while end < len(ids) and flags[end]:
                    end += 1
                seen.setdefault(tuple(ids[t:end]), []).append(tuple(label == -100 for label in labels[t:end]))
                t = end
            else:
                t += 1
    repeated = {ids: masks for ids, masks in seen.items() if len(masks) > 1}
    assert report["searched_answers"] == report["answers"]["answers"] == sum(len(m) for m in seen.values())
    assert report["total_tokens"] == sum(len(ids) * len(m) for ids, m in seen.items())  # passages: in answers only
    assert report["passages"] >= 1 and report["passages_differing"] == 0  # paragraph 0, said three times
    assert report["answers"]["repeated"] == len(repeated) == 2 and report["answers"]["copies"] == 11  # "Yes." x 8, paragraph 0 x 3
    assert all(len(set(masks)) == 1 for masks in repeated.values()) and report["answers"]["differing"] == 0
    # with --k-field, paragraph 0 is said under k = 0 once and k = 4 twice: copies are compared within one k
    mixed = json.loads(CliRunner().invoke(cli, ["repeats", str(outputs["mixed"]), "--json"]).output)["answers"]
    assert (mixed["repeated"], mixed["copies"], mixed["differing"]) == (2, 10, 0)


def test_trainer_data_keeps_the_prompt_out_of_validation_loss(outputs: dict[str, Any]) -> None:
    data = load_shards(outputs["documents"])
    assert data.assistant is not None
    rows = evaluation_rows(data, 64)
    scored = sum(int((targets != -100).sum()) for _, targets in rows)
    assert scored == int(data.assistant.sum())  # every assistant token is a target (none opens a conversation)


def test_train_and_memorization_commands_run_on_chat_shards(outputs: dict[str, Any]) -> None:
    run = outputs["documents"].parent / "run"
    trained = CliRunner().invoke(cli, ["train", str(outputs["documents"]), "-o", str(run), "--n-layer", "1", "--n-embd", "16", "--n-head", "1",
                                       "--block-size", "320", "--batch-size", "1", "--max-steps", "1", "--device", "cpu", "-q"])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    measured = CliRunner().invoke(
        cli, ["memorization", str(run), str(outputs["documents"]), "--whole-answer", "--max-documents", "2", "--json", "-q"]
    )
    assert measured.exit_code == 0, measured.output
    report = json.loads(measured.output)
    rows = datasets.load_from_disk(str(outputs["documents"]))
    lengths = [end - start for start, end in (final_answer(flags) for flags in rows["assistant_masks"][:2])]
    assert [len(d["suffix"]) for d in report["documents"]] == [len(d["generated"]) for d in report["documents"]] == lengths


@pytest.mark.parametrize("folder", ["documents", "packed"])
def test_memorization_suffix_is_the_end_of_the_final_answer(outputs: dict[str, Any], folder: str) -> None:
    rows = datasets.load_from_disk(str(outputs["documents"]))
    oracle = Oracle(rows["input_ids"], 128256)  # whole conversations, the user turns after the final answer included
    report = measure_memorization(oracle, outputs[folder], MemorizationConfig(suffix_length=50))  # type: ignore[arg-type]
    spans = [final_answer(flags) for flags in rows["assistant_masks"]]
    long_final = [i for i, (a, b) in enumerate(spans) if b - a >= 50]
    assert len(report.documents) == len(long_final) == 18 and report.skipped_short == 8  # the "Yes." conversations
    for score, i in zip(report.documents, long_final):
        end = spans[i][1]
        assert score.suffix == rows[i]["input_ids"][end - 50 : end] and score.suffix[-1] == 128009  # ends with <|eot_id|>
        assert score.prefix_length == end - 50 and score.exact_match
        # the goldfish drops of the suffix, read from the labels (the divergence analysis compares with them)
        assert score.dropped == [j for j, label in enumerate(rows[i]["labels"][end - 50 : end]) if label == -100]
    cut = [i for i in long_final if spans[i][1] < len(rows[i]["input_ids"])]
    assert len(cut) == 8  # conversations that go on after their final answer are cut there
    whole = measure_memorization(oracle, outputs[folder], MemorizationConfig(whole_answer=True))  # type: ignore[arg-type]
    assert len(whole.documents) == 26 and all(d.exact_match for d in whole.documents)
    assert sum(len(d.dropped) for d in report.documents) > 0  # the answers are goldfish-masked
    assert [len(d.suffix) for d in whole.documents] == [end - start for start, end in spans]


def test_load_documents_of_packed_and_document_chat_outputs_agree(outputs: dict[str, Any]) -> None:
    packed, plain = load_documents(outputs["packed"]), load_documents(outputs["documents"])
    assert [(d.ids.tolist(), d.answer_start) for d in packed] == [(d.ids.tolist(), d.answer_start) for d in plain]
    assert np.all([d.answer_start is not None and 0 < d.answer_start < len(d.ids) for d in plain])


def test_the_manifest_records_the_special_ids_so_verify_needs_no_tokenizer(outputs: dict[str, Any], tmp_path: Path) -> None:
    import shutil

    manifest = json.loads((outputs["documents"] / "goldfish_manifest.json").read_text())
    assert set(manifest["chat"]["special_ids"]) == outputs["specials"]
    copy = tmp_path / "moved"
    shutil.copytree(outputs["documents"], copy)
    manifest["tokenizer"]["spec"] = str(tmp_path / "no-such-tokenizer")  # the tokenizer folder is gone
    (copy / "goldfish_manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    report = verify_folder(copy)
    assert report.ok, [str(p) for p in report.problems]
