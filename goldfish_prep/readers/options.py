"""What the user told the readers, and what the readers were told to read.

``ReaderOptions`` is recorded in the manifest (``reader``), so it holds only
what changes which documents come out of the inputs. ``InputSource`` is one
resolved input: the unit the manifest lists, hashes and reads in order.
"""

from __future__ import annotations

import dataclasses

from goldfish_prep.errors import ConfigError

#: Every ``InputSource.kind`` a reader exists for.
KINDS = ("jsonl", "json-array", "text", "parquet", "arrow", "hf-disk", "hub")


@dataclasses.dataclass(frozen=True)
class ReaderOptions:
    """How records become documents.

    ``text_field``: the field (JSON key or column) holding the text; a record
    without it but with an ``input_ids`` list of ints is taken as pre-tokenized.
    ``id_field``: the field holding a document id; ``None`` uses the location
    (``a.jsonl line 3``). Plain ``.txt`` files have no fields: their ids are
    always their locations. ``text_per_line``: a ``.txt`` file holds one
    document per non-empty line instead of one per file. ``hub_split``: the
    split streamed from an HF hub dataset. ``chat``: records are conversations
    (``goldfish_prep.readers.conversations``), their list of messages under
    ``messages_field`` (or ``prompt``/``completion``). ``k_field``: the field
    holding a record's own k (chat records; absent or 0: standard loss).

    >>> ReaderOptions(text_field="content").id_field is None
    True
    """

    text_field: str = "text"
    id_field: str | None = None
    text_per_line: bool = False
    hub_split: str = "train"
    chat: bool = False
    messages_field: str = "messages"
    k_field: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.text_field, str) or not self.text_field:
            raise ConfigError(f"--text-field must be a non-empty field name, got {self.text_field!r}")
        if self.id_field is not None and (not isinstance(self.id_field, str) or not self.id_field):
            raise ConfigError(f"--id-field must be a non-empty field name, got {self.id_field!r}")
        if not isinstance(self.hub_split, str) or not self.hub_split:
            raise ConfigError(f"--split must name a split such as 'train', got {self.hub_split!r}")
        if not isinstance(self.messages_field, str) or not self.messages_field:
            raise ConfigError(f"--messages-field must be a non-empty field name, got {self.messages_field!r}")
        if self.k_field is not None and not self.chat:
            raise ConfigError("--k-field works on chat records (messages, prompt/completion); these inputs hold text records")


@dataclasses.dataclass(frozen=True)
class InputSource:
    """One input, in the order it is read.

    ``path``: as shown in messages and the manifest: the path as the user gave
    it, joined with the path inside a folder they gave (``corpus/sub/a.jsonl``),
    or a hub dataset name. Local paths open as they are, relative to the
    working directory. ``kind``: one of ``KINDS``. ``local``: False only for hub
    datasets.
    """

    path: str
    kind: str
    local: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown input kind {self.kind!r}; expected one of {KINDS}")
