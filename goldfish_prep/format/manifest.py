"""The manifest of an output folder as a typed, validated object (docs/format.md), for writing and reading.

Every consumer needs the same facts from the manifest (which layout, which
mask config, which shards, whether it holds conversations), so they are derived
here once. A ``Manifest`` is checked once, on load, so a damaged or foreign
file fails there with a message that names it, and afterwards every field has
its type: ``.mask`` is a ``MaskConfig``, ``.shards`` are ``ShardEntry``
records, ``.packed`` says which layout the shards use, ``.chat`` and
``.k_field`` what a chat run recorded. ``.raw`` keeps the dict exactly as read,
for the few readers that print or re-export it.

The write side uses the same type: ``Manifest.build`` makes the manifest from
the run description and the shard records, validates it with the code that
validates a manifest read back, and ``to_dict`` gives what is written, so
both sides round-trip through one definition.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from goldfish_prep.config import MaskConfig
from goldfish_prep.errors import InputError
from goldfish_prep.format.location import Location, UrlPath, location
from goldfish_prep.format.names import FORMAT_NAME, FORMAT_VERSION, IGNORE_INDEX, MANIFEST
from goldfish_prep.mask import expected_rate

_RECREATE = "Recreate the output with `goldfish-prep mask`"
#: the manifest lists this many skipped records by location; counts always cover all of them
MAX_LISTED_SKIPS = 1000
#: the keys of a shard record that the manifest repeats for each shard (``xxh3_128`` where the record has it:
#: shards completed by a version before it have only ``sha256``)
SHARD_KEYS = ("filename", "num_rows", "num_documents", "num_tokens", "num_dropped", "sha256", "xxh3_128")


@dataclasses.dataclass(frozen=True)
class ShardEntry:
    """One shard's line in the manifest: its file and what it holds, as written after the shard was sealed.

    ``xxh3_128`` is None in manifests written before it was recorded; readers
    then check ``sha256`` instead (``OutputFolder.read_shard``)."""

    filename: str
    num_rows: int
    num_documents: int
    num_tokens: int
    num_dropped: int
    sha256: str
    xxh3_128: str | None = None

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ShardEntry:
        if not isinstance(data, dict):
            raise InputError(where, f"a shard entry is {type(data).__name__}, not an object", _RECREATE, "bad-manifest")
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            value = data.get(field.name)
            wanted = str if str(field.type).startswith("str") else int
            if value is None and field.default is None:  # an optional field the writer did not know yet
                continue
            if not isinstance(value, wanted) or isinstance(value, bool):
                raise InputError(
                    where,
                    f"shard entry {data.get('filename')!r} has {field.name} {value!r}, not a {wanted.__name__}",
                    _RECREATE,
                    "bad-manifest",
                )
            values[field.name] = value
        name = values["filename"]
        if Path(name).name != name or name in ("", ".", ".."):
            # a manifest names files inside its own folder, never a path elsewhere
            raise InputError(where, f"shard filename {name!r} is not a plain file name", _RECREATE, "bad-manifest")
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A validated ``goldfish_manifest.json`` and the folder it describes."""

    folder: Location
    raw: dict[str, Any]
    mask: MaskConfig
    tokenizer: Mapping[str, Any]
    layout: Mapping[str, Any]
    shards: tuple[ShardEntry, ...]
    counts: Mapping[str, Any]
    #: the ``chat`` object of a run over conversations (template, label options, ids never dropped), else None
    chat: Mapping[str, Any] | None = None
    #: ``--k-field``: the record field each row's k came from (rows then carry a ``k`` column), else None
    k_field: str | None = None

    @property
    def is_chat(self) -> bool:
        """True for the output of `mask` over conversations (rows carry ``assistant_masks``)."""
        return self.chat is not None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object as written (``write_json`` sorts its keys)."""
        return self.raw

    @property
    def pack(self) -> int | None:
        """The packed row length (``--pack``), or None for one row per document."""
        pack = self.layout.get("pack")
        return int(pack) if pack is not None else None

    @property
    def packed(self) -> bool:
        return self.pack is not None

    @property
    def vocab_size(self) -> int | None:
        size = self.tokenizer.get("vocab_size")
        return int(size) if size is not None else None

    def __getitem__(self, key: str) -> Any:
        """The raw JSON, for code written against the dict (``manifest["counts"]``)."""
        return self.raw[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    def shard_paths(self) -> list[Location]:
        """The shard files in order, as the manifest lists them."""
        return [self.folder / shard.filename for shard in self.shards]

    @classmethod
    def from_dict(cls, data: Any, folder: str | Path | UrlPath, where: str | None = None) -> Manifest:
        """Validate a manifest already parsed from JSON; ``where`` names it in errors (``folder`` may be a URL)."""
        where = where or str(location(folder) / MANIFEST)
        if not isinstance(data, dict):
            raise InputError(where, f"the manifest is {type(data).__name__}, not an object", _RECREATE, "bad-manifest")
        version = data.get("format_version")
        if data.get("format") != FORMAT_NAME or version != FORMAT_VERSION:
            raise InputError(
                where,
                f"format {data.get('format')!r} version {version!r} is not goldfish-prep format {FORMAT_VERSION}",
                "Recreate the output with this goldfish-prep version",
                "bad-manifest",
            )
        sections = {key: data.get(key, {}) for key in ("mask", "tokenizer", "layout", "counts")}
        for key, value in sections.items():
            if not isinstance(value, dict):
                raise InputError(where, f"{key!r} is {type(value).__name__}, not an object", _RECREATE, "bad-manifest")
        shards = data.get("shards")
        if not isinstance(shards, list):
            raise InputError(where, f"'shards' is {type(shards).__name__}, not a list", _RECREATE, "bad-manifest")
        chat = data.get("chat")
        k_field = data.get("k_field")
        if k_field is not None and not isinstance(k_field, str):
            raise InputError(where, f"'k_field' is {k_field!r}, not a field name", _RECREATE, "bad-manifest")
        return cls(
            folder=location(folder),
            raw=data,
            mask=MaskConfig.from_dict(sections["mask"]),  # refuses an unknown spec version, naming it
            tokenizer=sections["tokenizer"],
            layout=sections["layout"],
            shards=tuple(ShardEntry.from_dict(entry, where) for entry in shards),
            counts=sections["counts"],
            chat=chat if isinstance(chat, dict) else None,
            k_field=k_field,
        )

    @classmethod
    def build(cls, run: dict[str, Any], records: list[dict[str, Any]], folder: str | Path) -> Manifest:
        """The manifest (docs/format.md) of a finished run: from its description and its shard records, in shard order."""
        records = sorted(records, key=lambda record: int(record["index"]))
        reasons: collections.Counter[str] = collections.Counter()
        skipped: list[dict[str, str]] = []
        for record in records:
            reasons.update(record["skipped_by_reason"])
            skipped.extend(record["skipped"][: MAX_LISTED_SKIPS - len(skipped)])
        total = {
            key: sum(int(record[key]) for record in records)
            for key in ("documents_read", "documents_written", "documents_skipped", "tokens", "eligible_tokens", "dropped_tokens")
        }
        if run.get("chat") is not None:  # conversations: eligible and dropped tokens are the assistant's
            total["assistant_tokens"] = sum(int(record.get("assistant_tokens", 0)) for record in records)
        mask = run["mask"]
        counts = {
            **total,
            "skipped_by_reason": dict(sorted(reasons.items())),
            "drop_rate": total["dropped_tokens"] / total["eligible_tokens"] if total["eligible_tokens"] else 0.0,
            "expected_drop_rate": expected_rate(MaskConfig.from_dict(mask)),
        }
        data = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "tool": run["tool"],
            "mask": {**mask, "ignore_index": IGNORE_INDEX},
            "tokenizer": run["tokenizer"],
            "reader": run["reader"],
            "inputs": run["inputs"],
            "ignored_inputs": run.get("ignored_inputs", []),
            "layout": run["layout"],
            **({"chat": run["chat"], "k_field": run.get("k_field")} if run.get("chat") is not None else {}),
            "shards": [{key: record[key] for key in SHARD_KEYS if key in record} for record in records],
            "counts": counts,
            "skipped": skipped,
        }
        return cls.from_dict(data, folder)


def is_chat(manifest: Manifest) -> bool:
    """True for the output of `mask` over conversations (the manifest has a ``chat`` object)."""
    return manifest.is_chat


def load_manifest(folder: str | Path) -> Manifest:
    """The manifest of a complete output folder; a clear error for anything else (``OutputFolder.read_manifest``)."""
    from goldfish_prep.format.folder import open_folder  # the folder reads manifests; it imports this module

    return open_folder(folder).read_manifest()
