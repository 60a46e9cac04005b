"""A ``.json`` file holding one JSON array of objects, read one element at a time.

``json.load`` would hold the whole array, and its parsed objects, in memory;
here a text buffer is decoded chunk by chunk and each element is parsed with
``JSONDecoder.raw_decode`` where it starts, so memory is bounded by one
element plus one chunk. An element cut by the end of the buffer fails to parse
near the buffer's end; the buffer then grows (doubling, so re-parsing stays
linear overall) and the parse is retried. Elements are named ``path record I``
(0-based). A syntax error ends the file: there is no safe place to resume.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator

from goldfish_prep.errors import InputError
from goldfish_prep.readers.document import record_from_object
from goldfish_prep.readers.fields import surrogate_problem
from goldfish_prep.readers.options import InputSource, ReaderOptions
from goldfish_prep.readers.records import Record
from goldfish_prep.readers.streams import Tap, iter_chunks, iter_text_chunks

_NON_SPACE = re.compile(r"[^ \t\n\r]")
_DECODER = json.JSONDecoder()
_GROW = 1 << 16
# A parse that fails this close to the end of the buffer may only lack the rest of the element.
_NEAR_END = 16


def read_json_array(source: InputSource, options: ReaderOptions, tap: Tap | None = None) -> Iterator[Record | InputError]:
    """Records of a JSON array file, in array order; ``tap``: see ``streams.iter_chunks``."""
    path = source.path
    buffer = _Buffer(iter_text_chunks(path, tap))
    index = 0
    try:
        for value, start, end in _elements(buffer):
            location = f"{path} record {index}"
            record = record_from_object(value, location, options, weight=end - start)
            if isinstance(record, Record) and record.text is not None and not record.text.isascii():
                record = surrogate_problem(record.text, location, options.text_field) or record
            yield record
            index += 1
    except UnicodeDecodeError as exc:
        yield InputError(
            f"{path} record {index}",
            f"byte {buffer.bytes_read - len(exc.object) + exc.start} of the file is not valid UTF-8; the rest of the file was not read",
            "Re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
            "invalid-utf8",
        )
    except (json.JSONDecodeError, RecursionError) as exc:
        where = f" at character {buffer.offset + exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        cause = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        yield InputError(
            f"{path} record {index}",
            f"invalid JSON{where}: {cause}; the rest of the file was not read",
            "A .json file must hold one array of objects, or one object per line (JSON lines)",
            "invalid-json",
        )


def is_json_array(path: str) -> bool:
    """Whether the first non-space character of the (decompressed) file is ``[``; False if unreadable."""
    try:
        for chunk in iter_chunks(path):
            stripped = chunk.lstrip(b" \t\r\n")
            if stripped.startswith(codecs.BOM_UTF8):
                stripped = stripped[len(codecs.BOM_UTF8) :].lstrip(b" \t\r\n")
            if stripped:
                return stripped.startswith(b"[")
    except (OSError, ValueError, EOFError):
        pass
    return False


class _Buffer:
    """Decoded text of the file from the current parse position on, grown on demand."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self.text = ""
        self.pos = 0
        self.offset = 0  # characters before ``text`` (already parsed and dropped)
        self.bytes_read = 0
        self.eof = False

    def fill(self, at_least: int) -> bool:
        """Drop the parsed text and append at least ``at_least`` more characters; False at the end."""
        if self.eof:
            return False
        pieces = [self.text[self.pos :]]
        self.offset += self.pos
        self.pos, got = 0, 0
        while got < at_least:
            chunk = next(self._chunks, None)
            final = chunk is None
            self.bytes_read += 0 if final else len(chunk or b"")
            piece = self._decoder.decode(chunk or b"", final=final)
            pieces.append(piece)
            got += len(piece)
            if final:
                self.eof = True
                break
        self.text = "".join(pieces)
        return True

    def next_char(self) -> str:
        """The next non-space character, ``pos`` left on it; ``""`` at the end of the file."""
        while True:
            match = _NON_SPACE.search(self.text, self.pos)
            if match is not None:
                self.pos = match.start()
                return self.text[self.pos]
            self.pos = len(self.text)
            if not self.fill(1):
                return ""

    def value(self) -> tuple[object, int, int]:
        """Parse one JSON value at ``pos``: (value, start, end), ``pos`` moved past it."""
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as exc:
                incomplete = exc.msg.startswith("Unterminated string") or exc.pos >= len(self.text) - _NEAR_END
                if incomplete and self.fill(max(len(self.text) - self.pos, _GROW)):
                    continue
                raise
            # a number at the very end of the buffer may continue in the next chunk
            if end >= len(self.text) - _NEAR_END and not isinstance(value, (dict, list, str)) and self.fill(_GROW):
                continue
            start, self.pos = self.pos, end
            return value, start, end


def _elements(buffer: _Buffer) -> Iterator[tuple[object, int, int]]:
    """The elements of the top-level array as (value, start, end) in ``buffer.text``."""
    if buffer.next_char() == "\ufeff":
        buffer.pos += 1
    if buffer.next_char() != "[":
        raise json.JSONDecodeError("Expecting '[' (a JSON array)", buffer.text, buffer.pos)
    buffer.pos += 1
    first = True
    while True:
        char = buffer.next_char()
        if char == "]":
            break
        if not first:
            if char != ",":
                raise json.JSONDecodeError("Expecting ',' delimiter" if char else "the array is not closed", buffer.text, buffer.pos)
            buffer.pos += 1
            char = buffer.next_char()
        if not char:
            raise json.JSONDecodeError("the array is not closed", buffer.text, buffer.pos)
        yield buffer.value()
        first = False
    buffer.pos += 1
    if buffer.next_char():
        raise json.JSONDecodeError("Extra data after the end of the array", buffer.text, buffer.pos)
