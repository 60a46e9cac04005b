"""Conversations to token ids and the assistant's tokens: render, find the assistant's text, tokenize.

Ids: the template renders the conversation (``add_generation_prompt=False``,
``tools`` and ``documents`` None, the tokenizer's named special tokens as
variables) and the text is encoded with ``add_special_tokens=False``, special
token text read as special tokens: what ``apply_chat_template(messages,
tokenize=True)`` does, so the ids are equal (``tests/test_chat_render.py``).

The assistant's part, in characters of the rendered text:

- with ``{% generation %}`` blocks: what the blocks cover;
- without: each assistant message's content (or, if the template trims it, its
  stripped form), plus the end-of-turn marker right after it: optional
  whitespace, then the tokenizer's longest special token there, else a
  ``<...>`` marker such as ``<|im_end|>`` or ``</s>``. The content is placed
  by a second render with a sentinel in its stead (``content_spans``), so the
  same words in the prompt or the markup are never taken for it.

Characters to tokens, the rule at a span's edge: a token is the assistant's
iff its character offsets overlap a span (``end > span_start and start <
span_end``), so a token straddling the edge counts as the assistant's. That
is the rule of transformers' ``return_assistant_tokens_mask``, so the masks
equal transformers' for templates with generation blocks.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from goldfish_prep.chat.encode import ChatEncoder
from goldfish_prep.chat.template import compile_template
from goldfish_prep.errors import ConfigError, InputError
from goldfish_prep.readers.records import Record

_MARKER = re.compile(r"\s*<[^<>\s]{1,64}>")
_SPACE = re.compile(r"\s*")


@dataclasses.dataclass(frozen=True)
class RenderedChat:
    """One conversation: ids (int32), the assistant's tokens, and tokens never dropped (special or kept ids)."""

    ids: npt.NDArray[np.int32]
    assistant: npt.NDArray[np.bool_]
    protected: npt.NDArray[np.bool_]


class ChatRenderer:
    """Renders and tokenizes conversations with one tokenizer and template (one per worker process)."""

    def __init__(self, tokenizer_spec: str, template_text: str, keep_ids: tuple[int, ...] = ()) -> None:
        from goldfish_prep.tokenizers import load_tokenizer

        tokenizer = load_tokenizer(tokenizer_spec)
        if not hasattr(tokenizer, "chat_backend"):
            raise ConfigError(
                f"tokenizer {tokenizer_spec!r} is a {tokenizer.kind} tokenizer; chat records need the model's Hugging Face "
                "tokenizer (a folder or tokenizer.json), whose offsets map the assistant's text to tokens. Fix: pass it with --tokenizer"
            )
        backend = tokenizer.chat_backend()
        self._encoder = ChatEncoder(backend)
        self._variables: dict[str, Any] = dict(getattr(tokenizer, "special_tokens_map", {}))
        self._template = compile_template(template_text)
        added = backend.get_added_tokens_decoder()
        special = special_ids(backend)
        self._protected_ids = np.array(sorted({*special, *keep_ids}), dtype=np.int64)
        # longest first, so <|eot_id|> wins over a shorter token it starts with
        self._special_texts = sorted((added[index].content for index in special), key=len, reverse=True)

    def render_batch(self, records: Sequence[Record], train_on_prompt: bool) -> list[RenderedChat | InputError]:
        """Each record's ``RenderedChat``, or the ``InputError`` (template error, no assistant text) in its place."""
        texts: list[str] = []
        spans: list[list[tuple[int, int]]] = []
        results: list[RenderedChat | InputError | None] = []
        for record in records:
            rendered = self._render(record)
            if isinstance(rendered, InputError):
                results.append(rendered)
                continue
            texts.append(rendered[0])
            spans.append(rendered[1])
            results.append(None)
        encoded = self._encoder.encode(texts, spans)
        # one isin over the batch: per conversation it costs more than the rest of the bookkeeping
        flat = np.concatenate([ids for ids, _, _ in encoded]) if encoded else np.zeros(0, np.int32)
        protected = iter(np.split(np.isin(flat, self._protected_ids), np.cumsum([len(ids) for ids, _, _ in encoded])[:-1]))
        chats = iter(encoded)
        out: list[RenderedChat | InputError] = []
        for result in results:
            if result is not None:
                out.append(result)
                continue
            ids, offsets, token_spans = next(chats)
            assistant = np.ones(len(ids), np.bool_) if train_on_prompt else tokens_in_spans(offsets, token_spans)
            out.append(RenderedChat(ids, assistant, next(protected)))
        return out

    def _render(self, record: Record) -> tuple[str, list[tuple[int, int]]] | InputError:
        variables = {**self._variables, "messages": record.messages, "tools": None, "documents": None, "add_generation_prompt": False}
        try:
            text, spans = self._template.render(variables)
        except Exception as exc:  # noqa: BLE001 -- a template raises what its code raises: raise_exception, TypeError, UndefinedError...
            cause = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return InputError(
                record.location,
                f"the chat template failed on this conversation: {cause}",
                "Fix the record or the template (--chat-template)",
                "template-error",
            )
        if not self._template.has_generation:
            messages = record.messages or []
            try:
                probe, _ = self._template.render({**variables, "messages": probe_messages(messages)})
            except Exception:  # noqa: BLE001 -- a template that reads the answer's words: no way to place them
                probe = ""
            found = content_spans(text, probe, messages, self._special_texts)
            if isinstance(found, str):
                return InputError(
                    record.location,
                    found,
                    "Add a {% generation %} block around the assistant's part in the template (--chat-template)",
                    "template-error",
                )
            spans = found
        if not any(end > start for start, end in spans):
            return InputError(
                record.location,
                "the template rendered no assistant text (its {% generation %} blocks are empty)",
                "Check the template's generation blocks",
                "template-error",
            )
        return text, spans


@functools.lru_cache(maxsize=4)
def chat_renderer(tokenizer_spec: str, template_text: str, keep_ids: tuple[int, ...]) -> ChatRenderer:
    """The renderer for this process, built once."""
    return ChatRenderer(tokenizer_spec, template_text, keep_ids)


def tokens_in_spans(offsets: npt.NDArray[np.int64], spans: Sequence[tuple[int, int]]) -> npt.NDArray[np.bool_]:
    """True for each token whose character offsets overlap a span (spans in order, as rendered).

    >>> tokens_in_spans(np.array([[0, 2], [2, 5], [5, 6]]), [(3, 5)]).tolist()
    [False, True, False]
    """
    if not spans or len(offsets) == 0:
        return np.zeros(len(offsets), np.bool_)
    bounds = np.asarray(spans, dtype=np.int64)
    # the first span ending after the token's start; the token is in it iff it ends after that span's start
    first = np.searchsorted(bounds[:, 1], offsets[:, 0], side="right")
    inside = first < len(bounds)
    inside[inside] = offsets[inside, 1] > bounds[first[inside], 0]
    return inside


def content_spans(text: str, probe: str, messages: Sequence[dict[str, Any]], special_texts: Sequence[str]) -> list[tuple[int, int]] | str:
    """Assistant spans without a generation block (module docstring), or why they cannot be found.

    ``probe`` is the same conversation rendered with each assistant content
    replaced by ``sentinel(j)``: the text before an answer does not depend on
    the answer, so the sentinel's place (shifted by the lengths of the answers
    before it) is where the answer starts, wherever else the same words occur.
    """
    spans = []
    shift = 0
    answers = [m["content"] for m in messages if m["role"] == "assistant"]
    for index, content in enumerate(answers):
        mark = sentinel(index)
        found = probe.find(mark)
        if found < 0:
            return f"answer {index} does not appear in the rendered conversation, so its tokens cannot be found"
        start = found + shift
        length = next((len(form) for form in (content, content.strip()) if text.startswith(form, start)), -1)
        if length < 0:
            return f"the template changes answer {index} ({_preview(content)}) while rendering it, so its tokens cannot be found"
        end = _after_marker(text, start + length, special_texts)
        spans.append((start, end))
        shift += length - len(mark)
    return spans


def sentinel(index: int) -> str:
    """A stand-in for answer ``index`` in the probe render: private-use characters no tokenizer merges with the markup."""
    return f"\ue000{index}\ue001"


def probe_messages(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages with each assistant content replaced by its sentinel."""
    probe = []
    index = 0
    for message in messages:
        if message["role"] == "assistant":
            message = {**message, "content": sentinel(index)}
            index += 1
        probe.append(message)
    return probe


def _after_marker(text: str, end: int, special_texts: Sequence[str]) -> int:
    """Where the end-of-turn marker after position ``end`` ends (``end`` itself when there is none)."""
    stripped = _SPACE.match(text, end).end()  # type: ignore[union-attr]  # \s* always matches
    for token in special_texts:
        if token and text.startswith(token, stripped):
            return stripped + len(token)
    marker = _MARKER.match(text, end)
    return marker.end() if marker else end


def _preview(text: str, limit: int = 40) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"


def special_ids(backend: Any) -> list[int]:
    """The ids a chat mask never drops besides ``--keep-ids``: the tokenizer's added tokens marked special.

    Recorded in the manifest (``chat.special_ids``) so that ``verify`` and
    ``stats`` recompute the rule without loading the tokenizer.
    """
    return sorted(int(index) for index, token in backend.get_added_tokens_decoder().items() if token.special)
