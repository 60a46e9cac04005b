"""``verify``: prove that an output folder is intact and that its masks are the ones its config makes.

Shards are checked independently (``shard_check``), in worker processes when
asked, and their measurements are then reconciled with the manifest's totals
and with ``state.json``, the file list ``datasets.load_from_disk`` follows. The
result is a report; the CLI decides how to show it and which exit code to use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from goldfish_prep.config import MaskConfig
from goldfish_prep.format.chat import is_chat
from goldfish_prep.format.folder import OutputFolder, open_folder
from goldfish_prep.format.manifest import Manifest
from goldfish_prep.format.names import DATASET_INFO, MANIFEST, STATE
from goldfish_prep.inspect.never_dropped import never_dropped_ids
from goldfish_prep.inspect.shard_check import Problem, ShardCheck, VerifyContext, check_shard
from goldfish_prep.pipeline.pool import ordered_map
from goldfish_prep.tokenizers.token_bytes import recorded_table


@dataclasses.dataclass(frozen=True)
class VerifyReport:
    folder: str
    config: MaskConfig
    packed: bool
    shards: tuple[ShardCheck, ...]
    problems: tuple[Problem, ...]
    chat: bool = False
    k_field: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def total(self, field: str) -> int:
        return sum(int(getattr(shard, field)) for shard in self.shards)


def verify_folder(
    folder: str | Path,
    num_proc: int = 1,
    on_shard: Callable[[ShardCheck], None] | None = None,
    tokenizer: str | None = None,
) -> VerifyReport:
    """Check every shard and every count of ``folder``; ``on_shard`` hears about each finished shard.

    ``report.ok`` is True when all holds; otherwise ``report.problems`` lists
    what does not, first the shards' (in order), e.g. ``data-00003.arrow row 17
    position 230: label -100, expected 1820: the recomputed mask keeps this token``.
    Chat outputs need the ids never dropped: the special tokens of the manifest's
    tokenizer (or of ``tokenizer``, where it moved) and its ``keep_ids``.
    """
    output = open_folder(folder)
    manifest = output.read_manifest()
    config = manifest.mask
    context = _context(output, manifest, tokenizer)
    shards: list[ShardCheck] = []
    for _, check in ordered_map(check_shard, ((i, i) for i in range(len(context.paths))), context, num_proc):
        shards.append(check)
        if on_shard is not None:
            on_shard(check)
    problems = [problem for shard in shards for problem in shard.problems]
    problems.extend(_state_problems(output, manifest))
    problems.extend(_count_problems(manifest, shards, config))
    return VerifyReport(
        str(folder), config, context.pack is not None, tuple(shards), tuple(problems), context.protected is not None, context.k_field
    )


def _context(output: OutputFolder, manifest: Manifest, tokenizer_spec: str | None = None) -> VerifyContext:
    tokenizer = manifest.tokenizer
    eos = tokenizer.get("eos_id")
    protected = tuple(int(i) for i in never_dropped_ids(manifest, tokenizer_spec)) if is_chat(manifest) else None
    return VerifyContext(
        folder=output,
        paths=tuple(manifest.shard_paths()),
        records=manifest.shards,
        config=manifest.mask,
        pack=manifest.pack,
        pad_id=int(eos) if eos is not None else 0,  # what `mask --pack` pads with
        # pre-tokenized ids are checked against the vocabulary only when the user named the tokenizer
        vocab_size=tokenizer.get("vocab_size") if tokenizer.get("explicit", True) else None,
        token_bytes=recorded_table(manifest.mask, tokenizer),
        protected=protected,
        k_field=manifest.k_field is not None,
    )


def _state_problems(output: OutputFolder, manifest: Manifest) -> list[Problem]:
    """What ``datasets.load_from_disk`` needs: ``dataset_info.json`` and ``state.json`` present and JSON objects, and
    ``state.json`` listing exactly the manifest's shards, in order (it loads the files listed there and nothing else)."""
    problems = []
    for name in (DATASET_INFO, STATE):
        if not output.has_file(name):
            problems.append(Problem(name, "missing; datasets.load_from_disk needs it"))
            continue
        try:
            data = output.read_json(name)
        except (OSError, ValueError) as exc:
            problems.append(Problem(name, f"not JSON ({exc}); datasets.load_from_disk would fail"))
            continue
        if not isinstance(data, dict):
            problems.append(Problem(name, f"a JSON {type(data).__name__}, not an object; datasets.load_from_disk would fail"))
        elif name == STATE:
            problems.extend(_listed_problems(data, manifest))
    return problems


def _listed_problems(state: dict[str, object], manifest: Manifest) -> list[Problem]:
    files = state.get("_data_files")
    if not isinstance(files, list) or not all(isinstance(entry, dict) and isinstance(entry.get("filename"), str) for entry in files):
        return [Problem(STATE, "has no _data_files list of {'filename': ...}; datasets.load_from_disk would fail")]
    listed = [str(entry["filename"]) for entry in files]
    expected = [shard.filename for shard in manifest.shards]
    if listed != expected:
        return [Problem(STATE, f"lists {listed[:4]}, the manifest {expected[:4]}: datasets would load other files")]
    return []


def _count_problems(manifest: Manifest, shards: list[ShardCheck], config: MaskConfig) -> list[Problem]:
    """The manifest's totals against the shards' measurements, and against each other."""
    counts = manifest.counts
    measured = {
        "documents_written": sum(s.documents for s in shards),
        "tokens": sum(s.tokens for s in shards),
        "eligible_tokens": sum(s.eligible for s in shards),
        "dropped_tokens": sum(s.dropped for s in shards),
    }
    if manifest.is_chat:
        measured["assistant_tokens"] = sum(s.assistant for s in shards)
    if not all(s.eligible_known for s in shards):  # packed --k-field rows: each document's k is not recorded
        del measured["eligible_tokens"]
    where = f"{MANIFEST} counts"
    complete = all(s.measured for s in shards)  # an unreadable shard is reported already; its counts are unknown
    problems = [
        Problem(where, f"{key} is {counts.get(key)}, the shards hold {value}")
        for key, value in measured.items()
        if complete and counts.get(key) != value
    ]
    read, written, skipped = (counts.get(key) for key in ("documents_read", "documents_written", "documents_skipped"))
    if not (isinstance(read, int) and isinstance(written, int) and isinstance(skipped, int) and read == written + skipped):
        problems.append(Problem(where, f"documents_read {read} != documents_written {written} + documents_skipped {skipped}"))
    by_reason = sum(counts.get("skipped_by_reason", {}).values())
    if by_reason != skipped:
        problems.append(Problem(where, f"skipped_by_reason adds up to {by_reason}, documents_skipped is {skipped}"))
    eligible, dropped = (counts.get(key) for key in ("eligible_tokens", "dropped_tokens"))
    rate = dropped / eligible if isinstance(eligible, int) and isinstance(dropped, int) and eligible else 0.0
    if not isinstance(counts.get("drop_rate"), (int, float)) or abs(counts["drop_rate"] - rate) > 1e-9:
        problems.append(Problem(where, f"drop_rate is {counts.get('drop_rate')}, but dropped_tokens / eligible_tokens is {rate}"))
    return problems
