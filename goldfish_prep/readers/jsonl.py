"""JSON lines (``.jsonl``, and ``.json`` that is not an array), plain, ``.gz`` or ``.zst``.

One JSON object per line, parsed with the stdlib ``json`` (C scanner). The
per-line work is one ``decode``, one ``json.loads`` and the field checks, so
reading stays cheap next to tokenizing. Blank lines are not documents and are
skipped silently; every other line becomes a ``Record`` or an ``InputError``
named ``path line N`` (1-based, blank lines counted).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from goldfish_prep.errors import InputError
from goldfish_prep.readers.document import record_from_object
from goldfish_prep.readers.fields import surrogate_problem
from goldfish_prep.readers.options import InputSource, ReaderOptions
from goldfish_prep.readers.records import JsonLine, Record
from goldfish_prep.readers.streams import Tap, iter_lines, iter_text_chunks

_BOM = b"\xef\xbb\xbf"


def read_jsonl(
    source: InputSource, options: ReaderOptions, parse: bool = True, tap: Tap | None = None
) -> Iterator[Record | JsonLine | InputError]:
    """Records of a JSON lines file, in line order; with ``parse=False``, the lines unparsed (``JsonLine``).

    ``tap`` sees the raw bytes read (``streams.iter_chunks``)."""
    path = source.path
    empty = True
    for number, line in enumerate(iter_lines(iter_text_chunks(path, tap)), start=1):
        if number == 1 and line.startswith(_BOM):
            line = line[len(_BOM) :]
        if line.isspace() or not line:
            continue
        empty = False
        yield parse_line(line, f"{path} line {number}", options) if parse else JsonLine(line, f"{path} line {number}")
    if empty:  # an empty input is almost always a mistake (a failed export, a wrong path): say so
        yield InputError(
            path, "the file is empty: it holds no JSON lines", "Check that it was written completely, or leave it out", "empty-file"
        )


def parse_line(line: bytes, location: str, options: ReaderOptions) -> Record | InputError:
    """One JSON line (without its newline) as a ``Record`` or the ``InputError`` that says why not.

    >>> parse_line(b'{"text": "hi"}', "a.jsonl line 1", ReaderOptions()).weight
    14
    >>> parse_line(b'{"text": "hi"', "a.jsonl line 2", ReaderOptions()).reason
    'invalid-json'
    """
    try:
        decoded = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return InputError(
            location,
            f"byte {exc.start} of the line ({line[exc.start : exc.start + 1]!r}) is not valid UTF-8",
            "Re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
            "invalid-utf8",
        )
    try:
        obj = json.loads(decoded)
    except json.JSONDecodeError as exc:
        return InputError(
            location, f"invalid JSON: {exc.msg}: column {exc.colno}", "Each line must be one complete JSON object", "invalid-json"
        )
    except (ValueError, RecursionError) as exc:  # e.g. an integer of 5000 digits, or [[[[... nested too deep
        return InputError(location, f"invalid JSON: {exc}", "Each line must be one complete JSON object", "invalid-json")
    record = record_from_object(obj, location, options, weight=len(line))
    if isinstance(record, Record) and record.text is not None and not record.text.isascii():  # isascii is O(1)
        return surrogate_problem(record.text, location, options.text_field) or record
    return record
