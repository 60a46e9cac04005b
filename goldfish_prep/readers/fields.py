"""The checks every input format applies to a record's fields, with the same ``reason`` keys.

JSON objects (``document.record_from_object``), conversations
(``conversations``) and columnar rows (``columnar``, ``chat_columns``) all refuse
a bad id, text or token list through these functions, so the manifest counts
the same reasons whatever the format.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from goldfish_prep.errors import InputError
from goldfish_prep.readers.options import ReaderOptions

#: The field a pre-tokenized record keeps its ids in.
IDS_FIELD = "input_ids"
#: Ids are stored as int32 in the output (docs/format.md); larger ones are refused, never wrapped.
ID_LIMIT = 2**31
_MAX_KEYS_SHOWN = 20
_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "integer", float: "number", bool: "boolean"}


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for messages.

    >>> json_type([1]), json_type(True), json_type(None)
    ('array', 'boolean', 'null')
    """
    if value is None:
        return "null"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def utf8_size(text: str) -> int:
    """Bytes of ``text`` in UTF-8; O(1) for ASCII (CPython knows a str is ASCII)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def doc_id_of(obj: dict[str, Any], location: str, options: ReaderOptions) -> str | InputError:
    """The record's id: ``str`` of its id field, or its location when no id field was asked for."""
    if options.id_field is None:
        return location
    value = obj.get(options.id_field)
    if value is None:
        return missing_id_field(location, options.id_field, obj.keys())
    return str(value)


def text_problem(text: object, location: str, field: str) -> InputError | None:
    """Why ``text`` cannot be tokenized, or None when it can."""
    if isinstance(text, str):
        if text:
            return None
        return InputError(location, f'"{field}" is an empty string', "Remove empty documents from the input", "empty-document")
    if text is None:
        return InputError(location, f'"{field}" is null', "Fill in the text or remove the record", "null-text")
    return InputError(
        location,
        f'"{field}" is {article(json_type(text))} ({_preview(text)}), not a string',
        "Store the document text as a string, or name the text field with --text-field",
        "non-string-text",
    )


def ids_problem(ids: object, location: str) -> InputError | None:
    """Why ``ids`` are not usable token ids (a non-empty list of ints in [0, 2**31)), or None.

    The common case costs a few C-level passes (``map(type)``, ``min``,
    ``max``), never a Python loop per id; only a bad list is searched for its
    first offender.

    >>> ids_problem([1, True], "x").reason
    'non-integer-id'
    >>> ids_problem([5, 2**31], "x").reason
    'id-too-large'
    """
    if not isinstance(ids, list):
        return InputError(
            location,
            f'"{IDS_FIELD}" is {article(json_type(ids))} ({_preview(ids)}), not a list of token ids',
            f'Store pre-tokenized documents as a list of integers under "{IDS_FIELD}"',
            "invalid-input-ids",
        )
    if not ids:
        return InputError(location, f'"{IDS_FIELD}" is an empty list', "Remove empty documents from the input", "empty-document")
    if set(map(type, ids)) != {int}:  # bool is a subclass of int, but type(True) is bool
        position, bad = next((i, v) for i, v in enumerate(ids) if type(v) is not int)
        return InputError(
            location,
            f'"{IDS_FIELD}"[{position}] is {article(json_type(bad))} ({_preview(bad)}), not an integer token id',
            "Token ids must be integers (not booleans, floats or strings)",
            "non-integer-id",
        )
    smallest, largest = min(ids), max(ids)
    if smallest < 0:
        return InputError(
            location, f'"{IDS_FIELD}"[{ids.index(smallest)}] is {smallest}, a negative token id', "Token ids start at 0", "negative-id"
        )
    if largest >= ID_LIMIT:
        return InputError(
            location,
            f'"{IDS_FIELD}"[{ids.index(largest)}] is {largest}, beyond the int32 range of the output (ids < 2**31)',
            "Check the ids were written by a tokenizer, not hashed or offset",
            "id-too-large",
        )
    return None


def surrogate_problem(text: str, location: str, field: str) -> InputError | None:
    """A JSON ``\\ud800`` escape decodes to a lone surrogate, which no tokenizer can encode.

    Only worth calling for non-ASCII text (``str.isascii`` is O(1)): it encodes the text once.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return InputError(
            location,
            f'"{field}" holds an unpaired surrogate {text[exc.start]!r} at character {exc.start}, which is not valid Unicode',
            "Fix the \\u escape (a surrogate pair needs both halves) or re-export the file as UTF-8",
            "invalid-utf8",
        )
    return None


def missing_text_field(location: str, field: str, keys: Iterable[str]) -> InputError:
    """No text field and no ``input_ids``: the usual cause is a wrong ``--text-field``."""
    return InputError(
        location,
        f'no "{field}" field (and no "{IDS_FIELD}" list of token ids)',
        f"Is --text-field correct? Available keys: {_keys(keys)}",
        "missing-text-field",
    )


def missing_id_field(location: str, field: str, keys: Iterable[str]) -> InputError:
    return InputError(
        location,
        f'no "{field}" field to take the document id from (or it is null)',
        f"Is --id-field correct? Available keys: {_keys(keys)}. Leave --id-field out to use locations as ids",
        "missing-id-field",
    )


def _keys(keys: Iterable[str]) -> str:
    shown = list(keys)
    text = repr(shown[:_MAX_KEYS_SHOWN])
    return text if len(shown) <= _MAX_KEYS_SHOWN else f"{text[:-1]}, ... {len(shown) - _MAX_KEYS_SHOWN} more]"


def _preview(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def article(noun: str) -> str:
    """``noun`` with its indefinite article, for messages (``an array``, ``a string``)."""
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"
