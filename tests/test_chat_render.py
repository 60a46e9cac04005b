"""Chat ids equal transformers' ``apply_chat_template``, and the assistant's tokens equal its mask.

Real tokenizers (Llama 3, DeepSeek V4), a Llama-3-style and a ChatML-style
template held in tests/data/chat, each with a ``{% generation %}`` block and
without one (the ``_plain`` twins), on a few hundred random conversations:
multi-turn, system and tool turns, unicode, odd spacing, text that looks like
markup or special tokens.
"""

from __future__ import annotations

import random
import zlib
from pathlib import Path

import numpy as np
import pytest

from goldfish_prep.chat.render import ChatRenderer, tokens_in_spans
from goldfish_prep.readers.conversations import check_message
from goldfish_prep.readers.records import Record
from tests.chat_data import conversation, template_text, tokenizer_folder

transformers = pytest.importorskip("transformers")
N_CONVERSATIONS = 150


def _records(seed: int, n: int) -> list[Record]:
    rng = random.Random(seed)
    records = []
    for i in range(n):
        messages = [check_message(m, "test") for m in conversation(rng)]
        assert all(isinstance(m, dict) for m in messages)
        records.append(Record(str(i), f"conversation {i}", messages=messages))  # type: ignore[arg-type]
    return records


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    base = tmp_path_factory.mktemp("tokenizers")
    return {
        (tok, name): tokenizer_folder(base, tok, template_text(name)) for tok in ("llama3", "deepseek") for name in ("llama3", "chatml")
    }


@pytest.mark.parametrize("tokenizer", ["llama3", "deepseek"])
@pytest.mark.parametrize("template", ["llama3", "chatml"])
def test_ids_and_assistant_masks_equal_transformers(folders: dict[tuple[str, str], Path], tokenizer: str, template: str) -> None:
    folder = folders[tokenizer, template]
    reference = transformers.AutoTokenizer.from_pretrained(str(folder))
    records = _records(seed=zlib.crc32(f"{tokenizer}-{template}".encode()), n=N_CONVERSATIONS)
    ours = ChatRenderer(str(folder), template_text(template)).render_batch(records, train_on_prompt=False)
    plain = ChatRenderer(str(folder), template_text(template + "_plain")).render_batch(records, train_on_prompt=False)
    for record, mine, mine_plain in zip(records, ours, plain):
        assert not isinstance(mine, Exception) and not isinstance(mine_plain, Exception), (mine, mine_plain)
        expected = reference.apply_chat_template(record.messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        assert mine.ids.tolist() == expected["input_ids"], record.messages
        assert mine.assistant.astype(int).tolist() == expected["assistant_masks"], record.messages
        # without a generation block: the same ids, and content + end-of-turn marker are the same tokens
        plain_ids = reference.apply_chat_template(
            record.messages, tokenize=True, return_dict=False, chat_template=template_text(template + "_plain")
        )
        assert mine_plain.ids.tolist() == plain_ids
        assert mine_plain.assistant.tolist() == mine.assistant.tolist(), record.messages


def test_special_tokens_are_protected(folders: dict[tuple[str, str], Path]) -> None:
    folder = folders["llama3", "llama3"]
    record = _records(1, 1)[0]
    rendered = ChatRenderer(str(folder), template_text("llama3"), keep_ids=(13,)).render_batch([record], False)[0]
    assert not isinstance(rendered, Exception)
    ids = rendered.ids
    assert rendered.protected[ids == 128009].all() and rendered.protected[ids == 13].all()  # <|eot_id|> and a kept "."
    assert not rendered.protected[(ids < 128000) & (ids != 13)].any()
    assert rendered.assistant[ids == 128009].sum() == sum(m["role"] == "assistant" for m in record.messages or [])


def test_train_on_prompt_marks_every_token(folders: dict[tuple[str, str], Path]) -> None:
    record = _records(2, 1)[0]
    rendered = ChatRenderer(str(folders["llama3", "chatml"]), template_text("chatml")).render_batch([record], True)[0]
    assert not isinstance(rendered, Exception) and rendered.assistant.all()


def test_template_errors_name_the_record(folders: dict[tuple[str, str], Path]) -> None:
    record = Record("x", "chat.jsonl line 3", messages=[{"role": "assistant", "content": "hi"}, {"role": "user", "content": "q"}])
    error = ChatRenderer(str(folders["llama3", "llama3"]), template_text("llama3")).render_batch([record], False)[0]
    assert isinstance(error, Exception) and error.reason == "template-error"  # type: ignore[union-attr]
    assert str(error).startswith("chat.jsonl line 3: the chat template failed on this conversation: Conversations must not start")


def test_straddling_token_counts_as_the_assistants() -> None:
    offsets = np.array([[0, 3], [3, 7], [7, 9], [9, 12]])
    # a span starting inside token 1 and ending inside token 2: both straddle an edge, both count
    assert tokens_in_spans(offsets, [(5, 8)]).tolist() == [False, True, True, False]
    assert tokens_in_spans(offsets, [(3, 7), (9, 12)]).tolist() == [False, True, False, True]
    assert tokens_in_spans(offsets, []).tolist() == [False] * 4


def test_both_encoding_paths_are_exercised(folders: dict[tuple[str, str], Path]) -> None:
    """Llama 3 (byte-level BPE, no normalizer) takes the byte-length path, DeepSeek (a normalizer) the offsets path;
    the comparison with transformers above covers both."""
    from goldfish_prep.chat.encode import ChatEncoder
    from goldfish_prep.tokenizers import load_tokenizer

    llama = ChatEncoder(load_tokenizer(str(folders["llama3", "llama3"])).chat_backend())  # type: ignore[attr-defined]
    deepseek = ChatEncoder(load_tokenizer(str(folders["deepseek", "llama3"])).chat_backend())  # type: ignore[attr-defined]
    assert llama._token_bytes is not None and deepseek._token_bytes is None
    text = "<|begin_of_text|>héllo 中文 👍🏽<|eot_id|>"
    ids, offsets, spans = llama.encode([text], [[(17, 29)]])[0]
    assert offsets[-1, 1] == len(text.encode()) and spans == [(17, len(text[:29].encode()))]
    assert ids[0] == 128000 and ids[-1] == 128009


def test_reasoning_and_null_keys_reach_the_template_as_in_transformers(folders: dict[tuple[str, str], Path]) -> None:
    template = (
        "{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n"
        "{% if m.reasoning_content is defined %}<think>{{ m.reasoning_content }}|{{ m.thinking }}</think>{% endif %}"
        "{% if m.name is defined %}({{ m.name }}){% endif %}"
        "{% if m.role == 'assistant' %}{% generation %}{{ m.content }}<|eot_id|>{% endgeneration %}{% else %}{{ m.content }}<|eot_id|>{% endif %}"
        "{% endfor %}"
    )
    folder = tokenizer_folder(folders["llama3", "llama3"].parent, "llama3", template)
    messages = [{"role": "user", "content": "Why?", "name": None}, {"role": "assistant", "content": "Because.", "reasoning": "think first"}]
    checked = [check_message(m, "test") for m in messages]
    record = Record("x", "x", messages=checked)  # type: ignore[arg-type]
    mine = ChatRenderer(str(folder), template).render_batch([record], False)[0]
    expected = transformers.AutoTokenizer.from_pretrained(str(folder)).apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    assert not isinstance(mine, Exception)
    assert mine.ids.tolist() == expected["input_ids"] and mine.assistant.astype(int).tolist() == expected["assistant_masks"]
