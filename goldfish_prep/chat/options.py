"""What the user told ``mask`` about conversations, and how a run decides it reads them.

A run reads chat records when asked (``--messages-field``, ``--chat-template``,
``--k-field``, ``--train-on-prompt``) or when its first record is one: an object
with a list of messages under ``--messages-field`` or with ``prompt`` and
``completion`` and no text field. The decision is made once, before any
worker starts, because it decides the shards' columns.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from goldfish_prep.chat.masking import ChatSetup, masks_answers
from goldfish_prep.chat.render import special_ids
from goldfish_prep.chat.template import (
    ChatTemplate,
    compile_template,
    find_chat_template,
)
from goldfish_prep.config import MaskConfig
from goldfish_prep.errors import ConfigError
from goldfish_prep.readers import InputSource, ReaderOptions, iter_records
from goldfish_prep.readers.conversations import ROLE_MAP
from goldfish_prep.readers.records import Record
from goldfish_prep.strategies.answer_local import RULE
from goldfish_prep.tokenizers import Tokenizer


@dataclasses.dataclass(frozen=True)
class ChatOptions:
    """``enabled``: None detects chat records from the first record. ``template_file``: ``--chat-template``."""

    enabled: bool | None = None
    template_file: str | None = None
    train_on_prompt: bool = False
    keep_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if any(type(i) is not int or i < 0 for i in self.keep_ids):
            raise ConfigError(f"--keep-ids must be non-negative token ids, got {list(self.keep_ids)}")


def reads_chat(options: ChatOptions, reader: ReaderOptions, sources: list[InputSource]) -> bool:
    """Whether this run reads conversations (see the module docstring)."""
    if options.enabled is not None:
        return options.enabled
    if reader.chat or options.template_file is not None or options.train_on_prompt or options.keep_ids:
        return True
    if not sources:
        return False
    text_view = next(iter_records(sources[:1], reader), None)
    if isinstance(text_view, Record) or text_view is None:
        return False
    chat_view = next(iter_records(sources[:1], dataclasses.replace(reader, chat=True)), None)
    if isinstance(chat_view, Record):
        return True
    # a bad first conversation (an unknown role, say) is still a conversation: read it as one, to report it
    return getattr(text_view, "reason", "") == "missing-text-field" and getattr(chat_view, "reason", "no-messages") != "no-messages"


def chat_setup(options: ChatOptions, tokenizer: Tokenizer, mask: MaskConfig) -> tuple[ChatSetup, ChatTemplate]:
    """The worker's setup and the template, after checking the options and the tokenizer fit chat records."""
    tokenizer_spec = tokenizer.spec
    if not masks_answers(mask):
        raise ConfigError(
            f"--strategy {mask.strategy} is a rule for whole documents; chat records are masked answer by answer "
            "with the goldfish hash (docs/mask-spec.md, answer-local). Fix: use --strategy goldfish or none"
        )
    template = find_chat_template(tokenizer_spec, options.template_file)
    if not hasattr(tokenizer, "chat_backend"):
        raise ConfigError(
            f"tokenizer {tokenizer_spec!r} is a {tokenizer.kind} tokenizer; chat records need the model's Hugging Face "
            "tokenizer (a folder or tokenizer.json), whose offsets map the assistant's text to tokens. Fix: pass it with --tokenizer"
        )
    compile_template(template.text)  # a template that does not compile stops the run here, not in a worker
    return ChatSetup(template.text, options.train_on_prompt, tuple(sorted(set(options.keep_ids)))), template


def describe_chat(setup: ChatSetup, template: ChatTemplate, reader: ReaderOptions, tokenizer: Tokenizer) -> dict[str, Any]:
    """The manifest's ``chat`` object (docs/format.md)."""
    return {
        "template_sha256": template.sha256,
        "template_source": template.source,
        "generation_block": template.has_generation_block,
        "messages_field": reader.messages_field,
        "role_map": dict(sorted(ROLE_MAP.items())),
        "train_on_prompt": setup.train_on_prompt,
        "keep_ids": list(setup.keep_ids),
        "special_ids": special_ids(tokenizer.chat_backend()),  # type: ignore[attr-defined]
        "mask_rule": RULE,
    }
