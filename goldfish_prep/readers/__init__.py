"""Input readers: files, folders, globs and datasets in, ``Record`` objects out, in a stable order.

``resolve_inputs`` turns what the user typed into ordered ``InputSource``
objects (and fails at once on what can never work); ``iter_records`` reads
them one after another. One module per format: ``jsonl``, ``json_array``,
``text``, ``columnar`` (Parquet, Arrow, ``save_to_disk`` folders), ``hub``.

``iter_records`` never raises for bad data: each bad record becomes an
``InputError`` item in its place, and a file that cannot be read to its end
becomes one ``InputError`` after the records read before the failure. The
pipeline then stops at, or skips and counts, every one of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pyarrow as pa

from goldfish_prep.errors import InputError
from goldfish_prep.readers.columnar import Mapped, read_arrow, read_parquet, read_saved_dataset
from goldfish_prep.readers.failures import file_failure
from goldfish_prep.readers.hub import read_hub
from goldfish_prep.readers.json_array import read_json_array
from goldfish_prep.readers.jsonl import read_jsonl
from goldfish_prep.readers.options import KINDS, InputSource, ReaderOptions
from goldfish_prep.readers.records import JsonLine, Record
from goldfish_prep.readers.resolve import ResolvedInputs, resolve_inputs
from goldfish_prep.readers.snapshot import InputSnapshot
from goldfish_prep.readers.streams import Tap
from goldfish_prep.readers.text import read_text

__all__ = ["KINDS", "InputSnapshot", "InputSource", "ReaderOptions", "ResolvedInputs", "iter_records", "resolve_inputs"]

Reader = Callable[[InputSource, ReaderOptions], Iterator[Record | JsonLine | InputError]]
MappedReader = Callable[[InputSource, ReaderOptions, Mapped | None], Iterator[Record | InputError]]

TextReader = Callable[[InputSource, ReaderOptions, Tap | None], Iterator[Record | InputError]]

# Text formats read through ``streams``, which shows the raw bytes to a snapshot's tap.
_TEXT_READERS: dict[str, TextReader] = {"json-array": read_json_array, "text": read_text}
_READERS: dict[str, Reader] = {"hub": read_hub}
# Arrow files, which pyarrow reads memory-mapped and out of order: they parse the mappings their snapshot hashed.
_MAPPED_READERS: dict[str, MappedReader] = {"arrow": read_arrow, "hf-disk": read_saved_dataset}
# What reading a file can raise when the file, not the program, is at fault.
_FILE_FAILURES = (OSError, ValueError, EOFError, pa.ArrowException)


def iter_records(
    sources: Sequence[InputSource],
    options: ReaderOptions,
    parse: bool = True,
    snapshots: Sequence[InputSnapshot] | None = None,
) -> Iterator[Record | JsonLine | InputError]:
    """Every document of ``sources`` in order, each a ``Record`` or the ``InputError`` saying why not.

    ``parse=False`` leaves JSON lines unparsed (``JsonLine``, turned into the
    same ``Record`` or ``InputError`` later by ``jsonl.parse_line``).
    ``snapshots`` (one per source, made at the start of the run) hash the bytes
    as they are read; an input that changed while it was read raises
    ``InputError`` (``input-changed``) after its last record: no option skips it.

    >>> list(iter_records([], ReaderOptions()))
    []
    """
    for index, source in enumerate(sources):
        snapshot = snapshots[index] if snapshots is not None else None
        yield from _read_source(source, options, parse, snapshot)
        if snapshot is not None:
            snapshot.finish()


def _read_source(
    source: InputSource, options: ReaderOptions, parse: bool, snapshot: InputSnapshot | None
) -> Iterator[Record | JsonLine | InputError]:
    tap = snapshot.update if snapshot is not None else None
    if source.kind == "jsonl":
        items = read_jsonl(source, options, parse, tap)
    elif source.kind in _TEXT_READERS:
        items = _TEXT_READERS[source.kind](source, options, tap)
    elif source.kind in _MAPPED_READERS:
        # pyarrow reads out of order: the snapshot maps and hashes the files whole, and the reader parses those maps
        mapped = snapshot.map_whole() if snapshot is not None else None
        items = _MAPPED_READERS[source.kind](source, options, mapped)
    elif source.kind == "parquet":  # read out of order and not mapped: a file that hashes what pyarrow reads
        items = read_parquet(source, options, snapshot.in_order() if snapshot is not None else None)
    else:
        items = _READERS[source.kind](source, options)
    count = 0
    try:
        for item in items:
            yield item
            count += 1
    except _FILE_FAILURES as exc:
        yield file_failure(source.path, exc, count)
