"""One decoded JSON object in, one ``Record`` or one ``InputError`` out.

JSON lines, JSON arrays and hub rows end here; a conversation goes to
``conversations``, every field check to ``fields``, so every format refuses the
same things with the same ``reason`` keys, which the manifest counts.
"""

from __future__ import annotations

from goldfish_prep.errors import InputError
from goldfish_prep.readers.conversations import chat_record_from_object
from goldfish_prep.readers.fields import (
    IDS_FIELD,
    article,
    doc_id_of,
    ids_problem,
    json_type,
    missing_text_field,
    text_problem,
    utf8_size,
)
from goldfish_prep.readers.options import ReaderOptions
from goldfish_prep.readers.records import Record


def record_from_object(obj: object, location: str, options: ReaderOptions, weight: int | None = None) -> Record | InputError:
    """Check a decoded JSON value and make it a ``Record``.

    ``weight``: the record's size in its input; ``None`` measures the document
    (UTF-8 bytes of the text, 4 bytes per id).

    >>> record_from_object({"text": "hi", "id": 7}, "a.jsonl line 1", ReaderOptions(id_field="id"), 20)
    Record(doc_id='7', location='a.jsonl line 1', text='hi', input_ids=None, weight=20, messages=None, k=None)
    >>> record_from_object({"body": "hi"}, "a.jsonl line 2", ReaderOptions()).reason
    'missing-text-field'
    """
    if not isinstance(obj, dict):
        return InputError(
            location,
            f"the JSON value is {article(json_type(obj))}, not an object",
            f'Write one JSON object per record, with the text under "{options.text_field}"',
            "not-an-object",
        )
    if options.chat:
        return chat_record_from_object(obj, location, options, weight)
    doc_id = doc_id_of(obj, location, options)
    if isinstance(doc_id, InputError):
        return doc_id
    if options.text_field in obj:
        text = obj[options.text_field]
        problem = text_problem(text, location, options.text_field)
        if problem is not None:
            return problem
        return Record(doc_id, location, text=text, weight=utf8_size(text) if weight is None else weight)
    if IDS_FIELD in obj:
        ids = obj[IDS_FIELD]
        problem = ids_problem(ids, location)
        if problem is not None:
            return problem
        return Record(doc_id, location, input_ids=ids, weight=4 * len(ids) if weight is None else weight)
    return missing_text_field(location, options.text_field, obj.keys())
