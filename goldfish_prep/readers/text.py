"""Plain UTF-8 text (``.txt``, also ``.txt.gz`` and ``.txt.zst``).

By default a file is one document (a book, an article), named by its path.
With ``text_per_line`` every non-blank line is a document, named
``path line N``; line endings (``\\n`` or ``\\r\\n``) are not part of the text.
Text files have no fields, so ids are always locations.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator

from goldfish_prep.errors import InputError
from goldfish_prep.readers.options import InputSource, ReaderOptions
from goldfish_prep.readers.records import Record
from goldfish_prep.readers.streams import Tap, iter_lines, iter_text_chunks

_FIX_ENCODING = "Re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"


def read_text(source: InputSource, options: ReaderOptions, tap: Tap | None = None) -> Iterator[Record | InputError]:
    """One record per file, or one per non-blank line with ``options.text_per_line``; ``tap``: see ``iter_chunks``."""
    if options.text_per_line:
        yield from _read_lines(source.path, tap)
    else:
        yield _read_whole(source.path, tap)


def _read_whole(path: str, tap: Tap | None) -> Record | InputError:
    data = b"".join(iter_text_chunks(path, tap))
    body = data[len(codecs.BOM_UTF8) :] if data.startswith(codecs.BOM_UTF8) else data
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + 1
        return InputError(path, f"line {line} is not valid UTF-8 (byte {exc.start} of the file)", _FIX_ENCODING, "invalid-utf8")
    if not text or text.isspace():
        what = "empty" if not text else "only whitespace"
        return InputError(path, f"the file is {what}: there is no document to tokenize", "Remove the file from the input", "empty-document")
    return Record(path, path, text=text, weight=len(data))


def _read_lines(path: str, tap: Tap | None) -> Iterator[Record | InputError]:
    for number, line in enumerate(iter_lines(iter_text_chunks(path, tap)), start=1):
        if number == 1 and line.startswith(codecs.BOM_UTF8):
            line = line[len(codecs.BOM_UTF8) :]
        if not line or line.isspace():
            continue
        location = f"{path} line {number}"
        try:
            text = line.rstrip(b"\r").decode("utf-8")
        except UnicodeDecodeError as exc:
            yield InputError(location, f"byte {exc.start} of the line is not valid UTF-8", _FIX_ENCODING, "invalid-utf8")
            continue
        yield Record(location, location, text=text, weight=len(line))
