"""The unit that flows from a reader to the tokenizer: one input document.

A ``Record`` carries either text (to tokenize) or pre-tokenized ids (masked as
they are), plus everything needed to account for it: a stable id and the exact
location in the input (file and line or record), so an error raised anywhere
downstream, even in a worker process, can name where the document came from.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Record:
    """One input document.

    ``location``: human-readable origin, e.g. ``corpus/a.jsonl line 17`` or
    ``b.parquet record 4``; also the default ``doc_id``. ``weight``: the record's
    size in bytes in its input, used to cut shards at deterministic places
    without tokenizing. Exactly one of ``text``, ``input_ids`` and ``messages``
    is set. ``messages``: a checked conversation (``readers.conversations``), rendered by
    the chat template in the worker. ``k``: the record's own k from
    ``--k-field`` (0: standard loss), None without that option.
    """

    doc_id: str
    location: str
    text: str | None = None
    input_ids: tuple[int, ...] | list[int] | None = None
    weight: int = 0
    messages: list[dict[str, Any]] | None = None
    k: int | None = None


@dataclasses.dataclass(frozen=True)
class JsonLine:
    """One JSON line, read but not parsed yet (``iter_records(..., parse=False)``).

    Cutting shards needs only a record's size, and the line's size is known
    without parsing it. So ``mask`` leaves the parsing to the worker process
    that tokenizes the line (``batch.mask_batch``): the main process, which
    feeds every worker, does less per document, bytes travel to the workers
    instead of strings (no UTF-8 re-encoding to pickle them), and lines of
    shards that ``--resume`` or another ``--task-index`` skips are never parsed.
    """

    line: bytes
    location: str

    @property
    def weight(self) -> int:
        return len(self.line)
