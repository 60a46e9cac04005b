"""The unit that flows from a reader to the tokenizer: one input document.

A ``Record`` carries either text (to tokenize) or pre-tokenized ids (masked as
they are), plus everything needed to account for it: a stable id and the exact
location in the input (file and line or record), so an error raised anywhere
downstream, even in a worker process, can name where the document came from.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Record:
    """One input document.

    ``location``: human-readable origin, e.g. ``corpus/a.jsonl line 17`` or
    ``b.parquet record 4``; also the default ``doc_id``. ``weight``: the record's
    size in bytes in its input, used to cut shards at deterministic places
    without tokenizing. Exactly one of ``text`` and ``input_ids`` is set.
    """

    doc_id: str
    location: str
    text: str | None = None
    input_ids: tuple[int, ...] | list[int] | None = None
    weight: int = 0
