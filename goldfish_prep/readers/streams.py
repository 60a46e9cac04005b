"""Bytes of a text input file, decompressed, in chunks and in lines.

Text formats (JSON lines, JSON arrays, ``.txt``) read through here, so that
``.gz`` and ``.zst`` work for all of them and a file is never held in memory
whole. ``.gz`` is inflated with ``zlib`` directly (member by member), so a
truncated file yields every byte before the break; ``.zst`` goes through
pyarrow's ``CompressedInputStream`` (no extra dependency), which on a
truncated file loses the part of its last internal block (up to ~64 KiB of
compressed input) before the break. Lines are split with ``bytes.split`` on
chunks: no per-character Python work.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

import pyarrow as pa

from goldfish_prep.errors import InputError
from goldfish_prep.readers.remote import open_binary

#: Sees raw file bytes as they are read (``snapshot.InputSnapshot.update``).
Tap = Callable[[bytes | memoryview], None]
#: Suffix -> pyarrow codec name.
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd"}
# Plain reads are cheap, so chunks are large; compressed reads are smaller so
# that a truncated file loses little of what was decodable before the break.
_PLAIN_CHUNK = 1 << 20
_COMPRESSED_CHUNK = 1 << 16
_SNIFF = 8192
# Leading bytes of formats that are not text, to name what a mislabelled file really is.
_MAGIC = (
    (b"\x1f\x8b", "gzip-compressed data", "Name it with a .gz suffix"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data", "Name it with a .zst suffix"),
    (b"PAR1", "a Parquet file", "Name it with a .parquet suffix"),
    (b"ARROW1", "an Arrow IPC file", "Name it with an .arrow suffix"),
    (b"\xff\xff\xff\xff", "an Arrow IPC stream", "Name it with an .arrow suffix"),
    (b"PK\x03\x04", "a zip archive", "Unpack it first"),
    (b"\xff\xfe", "UTF-16 text", "Re-encode it as UTF-8 (iconv -f utf-16 -t utf-8)"),
    (b"\xfe\xff", "UTF-16 text", "Re-encode it as UTF-8 (iconv -f utf-16 -t utf-8)"),
)


def compression_of(path: str) -> str | None:
    """The codec a file name asks for, or None for plain bytes.

    >>> compression_of("a.jsonl.zst"), compression_of("a.txt")
    ('zstd', None)
    """
    for suffix, codec in COMPRESSIONS.items():
        if path.lower().endswith(suffix):
            return codec
    return None


def iter_chunks(path: str, tap: Tap | None = None) -> Generator[bytes, None, None]:
    """The decompressed bytes of ``path`` in chunks; raises ``OSError`` as pyarrow or the OS does.

    ``tap`` sees every raw (still compressed) byte read from the file, in order:
    how the input's recorded hash comes from the very bytes parsed (``snapshot``).
    """
    codec = compression_of(path)
    # a local file, or a URL's object (``remote``); a tapped read is the masking pass, which reads the whole input
    with open_binary(path, whole=tap is not None) as handle:
        raw = _Tapped(handle, tap) if tap is not None else handle
        if codec is None:
            while chunk := raw.read(_PLAIN_CHUNK):
                yield chunk
        elif codec == "gzip":
            yield from _inflate(raw.read)
        else:
            with pa.CompressedInputStream(raw, codec) as stream:
                while chunk := stream.read(_COMPRESSED_CHUNK):
                    yield chunk


class _Tapped(io.RawIOBase):
    """A binary file that shows each block it reads to ``tap`` (pyarrow reads it through ``readinto``)."""

    def __init__(self, handle: io.BufferedIOBase, tap: Tap) -> None:
        super().__init__()
        self._handle = handle
        self._tap = tap

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self._handle.readinto(buffer)
        if count:
            self._tap(memoryview(buffer)[:count])
        return count or 0

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        if data:
            self._tap(data)
        return data


def _inflate(read: Callable[[int], bytes]) -> Iterator[bytes]:
    """Decompress gzip data (one or more members) from ``read``, at most ``_COMPRESSED_CHUNK`` bytes at a time.

    >>> import gzip, io
    >>> b"".join(_inflate(io.BytesIO(gzip.compress(b"ab") + gzip.compress(b"c")).read))
    b'abc'
    """
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)  # | 16: expect a gzip header
    data, in_member = b"", False
    while True:
        if not data:
            data = read(_COMPRESSED_CHUNK)
            if not data:
                if in_member:
                    raise EOFError("truncated gzip data: the file ends before the end of its compressed stream")
                return
        try:
            out = inflater.decompress(data, _COMPRESSED_CHUNK)
        except zlib.error as exc:
            raise ValueError(f"not valid gzip data ({exc})") from None
        in_member, data = True, inflater.unconsumed_tail
        if out:
            yield out
        if inflater.eof:
            data = inflater.unused_data.lstrip(b"\0")  # gzip tolerates zero padding after a member
            inflater, in_member = zlib.decompressobj(zlib.MAX_WBITS | 16), False


def iter_text_chunks(path: str, tap: Tap | None = None) -> Iterator[bytes]:
    """``iter_chunks``, refusing a file whose first bytes show it is not text (``binary-file``)."""
    chunks = iter_chunks(path, tap)
    try:
        first = next(chunks)
    except StopIteration:
        return
    problem = binary_problem(first[:_SNIFF])
    if problem is not None:
        chunks.close()
        what, fix = problem
        raise InputError(path, f"not UTF-8 text: it looks like {what}", fix, "binary-file")
    yield first
    yield from chunks


def binary_problem(head: bytes) -> tuple[str, str] | None:
    """What ``head`` (the first bytes of a file) looks like when it is not text, and the fix; else None.

    >>> binary_problem(b'{"text": "hi"}\\n') is None
    True
    >>> binary_problem(b"\\x1f\\x8b\\x08\\x00")
    ('gzip-compressed data', 'Name it with a .gz suffix')
    """
    for magic, what, fix in _MAGIC:
        if head.startswith(magic):
            return what, fix
    if b"\x00" in head:
        return "binary data (it holds NUL bytes)", "Check the file and its suffix"
    return None


def iter_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Lines of a chunked byte stream, without their ``\\n``.

    A line longer than a chunk is gathered in a list and joined once, so a
    100 MB line costs one copy, not one per chunk.

    >>> list(iter_lines([b"a\\nb", b"c\\n\\nd"]))
    [b'a', b'bc', b'', b'd']
    """
    parts: list[bytes] = []
    for chunk in chunks:
        lines = chunk.split(b"\n")
        if len(lines) == 1:
            parts.append(chunk)
            continue
        if parts:
            parts.append(lines[0])
            lines[0] = b"".join(parts)
        tail = lines.pop()
        parts = [tail] if tail else []
        yield from lines
    if parts:
        yield b"".join(parts)
