"""A conversation record (JSON object or table row) in, checked messages out.

Three shapes are read, with no new command (docs/chat.md):

- ``{"messages": [{"role": ..., "content": ...}, ...]}``: the HF/OpenAI/TRL
  conversational format (the field is ``--messages-field``, default ``messages``);
- TRL's prompt-completion records, ``prompt`` and ``completion``, each a string
  (a user turn, an assistant turn) or a list of messages;
- ShareGPT ``conversations`` of ``{"from": ..., "value": ...}`` with
  ``--messages-field conversations``; ``from`` is mapped by ``SHAREGPT_ROLES``.

Every check lives here, so JSON lines, Parquet, Arrow and ``save_to_disk``
inputs refuse the same records with the same ``reason`` keys. Keys whose value
is null are dropped from a message, as transformers' ``apply_chat_template``
does (a Parquet struct column fills absent keys with nulls).
"""

from __future__ import annotations

from typing import Any

from goldfish_prep.errors import InputError
from goldfish_prep.readers.fields import (
    article,
    doc_id_of,
    json_type,
    surrogate_problem,
    utf8_size,
)
from goldfish_prep.readers.options import ReaderOptions
from goldfish_prep.readers.records import Record

ROLES = ("system", "user", "assistant", "tool")
#: ShareGPT's ``from`` values and the role each becomes (also accepted: the four roles themselves)
SHAREGPT_ROLES = {
    "human": "user",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "observation": "tool",
    "function": "tool",
}
ROLE_MAP = {**{role: role for role in ROLES}, **SHAREGPT_ROLES}
#: names a message's reasoning comes under; transformers fills the first two from whichever is there
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


def chat_record_from_object(obj: dict[str, Any], location: str, options: ReaderOptions, weight: int | None = None) -> Record | InputError:
    """Check one decoded record and make it a chat ``Record`` (``messages`` set).

    >>> r = chat_record_from_object({"prompt": "Hi", "completion": "Hello!"}, "a line 1", ReaderOptions(chat=True))
    >>> [m["role"] for m in r.messages]
    ['user', 'assistant']
    >>> chat_record_from_object({"messages": []}, "a line 2", ReaderOptions(chat=True)).reason
    'no-messages'
    """
    doc_id = doc_id_of(obj, location, options)
    if isinstance(doc_id, InputError):
        return doc_id
    k = record_k(obj, location, options.k_field)
    if isinstance(k, InputError):
        return k
    raw = _conversation(obj, location, options.messages_field)
    if isinstance(raw, InputError):
        return raw
    messages = []
    for index, message in enumerate(raw):
        checked = check_message(message, f"{location} message {index}")
        if isinstance(checked, InputError):
            return checked
        messages.append(checked)
    if not any(m["role"] == "assistant" for m in messages):
        return InputError(
            location,
            "the conversation has no assistant turn, so nothing in it would be trained on",
            "Add the assistant's answer, or leave the record out",
            "no-assistant-turn",
        )
    size = sum(utf8_size(m["content"]) for m in messages) if weight is None else weight
    return Record(doc_id, location, messages=messages, weight=size, k=k)


def _conversation(obj: dict[str, Any], location: str, field: str) -> list[Any] | InputError:
    """The record's list of messages, from ``field`` or from prompt + completion."""
    if field in obj and obj[field] is not None:
        value = obj[field]
        if not isinstance(value, list) or not value:
            what = "an empty list" if isinstance(value, list) else f"{article(json_type(value))}, not a list of messages"
            return InputError(location, f'"{field}" is {what}', "Give each record a non-empty list of messages", "no-messages")
        return value
    if "prompt" in obj and "completion" in obj:
        turns = []
        for key, role in (("prompt", "user"), ("completion", "assistant")):
            part = obj[key]
            if isinstance(part, str):
                turns.append({"role": role, "content": part})
            elif isinstance(part, list) and part:
                turns.extend(part)
            else:
                return InputError(
                    location,
                    f'"{key}" is {article(json_type(part))}, not a string or a list of messages',
                    "Store prompt and completion as strings or lists of messages",
                    "no-messages",
                )
        return turns
    keys = list(obj.keys())[:20]
    return InputError(
        location,
        f'no "{field}" list of messages (and no "prompt" and "completion")',
        f"Is --messages-field correct (ShareGPT data: --messages-field conversations)? Available keys: {keys}",
        "no-messages",
    )


def check_message(message: object, location: str) -> dict[str, Any] | InputError:
    """One message as ``{"role", "content", ...}`` with null keys dropped, or why not."""
    if not isinstance(message, dict):
        return InputError(
            location,
            f"the message is {article(json_type(message))}, not an object",
            'Write each message as {"role": ..., "content": ...}',
            "invalid-message",
        )
    message = {key: value for key, value in message.items() if value is not None}
    if "role" not in message and "from" in message:  # ShareGPT
        message = {"role": message.pop("from"), "content": message.pop("value", None), **message}
        if message["content"] is None:
            del message["content"]
    for key in ("role", "content"):
        if key not in message:
            return InputError(
                location,
                f'the message has no "{key}" (keys: {list(message)[:10]})',
                'Give every message a "role" and a "content" (ShareGPT: "from" and "value")',
                "invalid-message",
            )
    role, content = message["role"], message["content"]
    if not isinstance(role, str) or role not in ROLE_MAP:
        known = ", ".join(sorted(ROLE_MAP))
        return InputError(location, f"unknown role {role!r}", f"Use one of: {known} (see the role map in docs/chat.md)", "unknown-role")
    if not isinstance(content, str):
        return InputError(
            location,
            f'"content" is {article(json_type(content))}, not a string',
            "Store each message's content as a string (content parts are not read)",
            "non-string-content",
        )
    if not content.isascii():
        problem = surrogate_problem(content, location, "content")
        if problem is not None:
            return problem
    message["role"] = ROLE_MAP[role]
    reasoning = next((message[key] for key in _REASONING_FIELDS if key in message), None)
    if reasoning is not None:  # as transformers does: templates read "reasoning_content" (gpt-oss ones "thinking")
        message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
    return message


def record_k(obj: dict[str, Any], location: str, field: str | None) -> int | None | InputError:
    """The record's own k from ``--k-field`` (absent or null: 0, standard loss), or None without the option."""
    if field is None:
        return None
    value = obj.get(field)
    if value is None:
        return 0
    if type(value) is not int or value < 0 or value == 1 or value >= 2**31:
        return InputError(
            location,
            f'"{field}" is {value!r}, not 0 (standard loss) or an integer k >= 2',
            f"Store each record's k as an integer (0 for standard loss) under {field!r}",
            "invalid-k",
        )
    return value
