"""Chat outputs for the consumer tests, written to the chat shard contract (docs/format.md, "Chat columns").

Until `goldfish-prep mask` writes chat shards, the consumer side (stats, show,
train, memorization, TRL) is tested on folders made here: conversations
rendered ChatML-style with a real byte-level BPE, ``assistant_masks`` on each
answer and its ``<|im_end|>``, and labels from a *stand-in* answer-local mask
(xxh64 over the answer's own window; the real hash is the core's spec). Only
consumers that read labels as given use these folders; verify is tested on
real `mask` output.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import xxhash

from goldfish_prep.atomic import file_sha256

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
Message = dict[str, str]


def chat_bpe(folder: Path, texts: Sequence[str], vocab_size: int = 600) -> Any:
    """A real byte-level BPE with ChatML's special tokens, trained on ``texts`` in well under a second."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", IM_START, IM_END]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(list(texts), trainer)
    tokenizer.save(str(folder / "chat-bpe.json"))
    return tokenizer


def render(tokenizer: Any, messages: Sequence[Message], train_on_prompt: bool = False) -> tuple[list[int], list[int]]:
    """(ids, assistant flags) of a ChatML rendering; the assistant's part is its content plus ``<|im_end|>``."""
    ids: list[int] = []
    flags: list[int] = []
    start, end = tokenizer.token_to_id(IM_START), tokenizer.token_to_id(IM_END)
    newline = tokenizer.encode("\n", add_special_tokens=False).ids
    for message in messages:
        head = [start, *tokenizer.encode(message["role"] + "\n", add_special_tokens=False).ids]
        body = [*tokenizer.encode(message["content"], add_special_tokens=False).ids, end]
        ids += head + body + newline
        answer = 1 if message["role"] == "assistant" else 0
        flags += [0] * len(head) + [answer] * len(body) + [0] * len(newline)
    if train_on_prompt:
        flags = [1] * len(ids)
    return ids, flags


def stand_in_drop(answer: Sequence[int], k: int, h: int, never: set[int]) -> list[bool]:
    """Answer-local drops: the window is the answer's own last ``h`` ids (fewer at its start), length-tagged."""
    drops = []
    for t, token in enumerate(answer):
        window = np.asarray(answer[max(0, t - h + 1) : t + 1], dtype="<u4").tobytes()
        value = xxhash.xxh64_intdigest(len(window).to_bytes(2, "little") + window, seed=0)
        drops.append(token not in never and value < 2**64 // k)
    return drops


def labels_of(ids: list[int], flags: list[int], k: int, h: int, never: set[int]) -> list[int]:
    """-100 outside answers and on dropped answer tokens; each maximal run of flags is one answer."""
    labels = [-100] * len(ids)
    t = 0
    while t < len(ids):
        if not flags[t]:
            t += 1
            continue
        end = t
        while end < len(ids) and flags[end]:
            end += 1
        drops = stand_in_drop(ids[t:end], k, h, never) if k > 0 else [False] * (end - t)
        for i, dropped in enumerate(drops):
            labels[t + i] = -100 if dropped else ids[t + i]
        t = end
    return labels


def write_chat_output(
    folder: Path,
    tokenizer: Any,
    conversations: Sequence[Sequence[Message]],
    *,
    k: int = 4,
    context_width: int = 13,
    row_k: Sequence[int] | None = None,
    pack: int | None = None,
) -> Path:
    """A complete chat output folder (shard, dataset_info.json, manifest, state.json) in document or packed mode."""
    never = {tokenizer.token_to_id(t) for t in ("<|endoftext|>", IM_START, IM_END)}
    rendered = [render(tokenizer, messages) for messages in conversations]
    spec = {"spec": str(folder.parent / "chat-bpe.json"), "kind": "hf", "vocab_size": 600, "eos_id": tokenizer.token_to_id("<|endoftext|>")}
    return write_rendered_output(folder, rendered, never, spec, k=k, context_width=context_width, row_k=row_k, pack=pack)


def write_rendered_output(
    folder: Path,
    rendered: Sequence[tuple[list[int], list[int]]],
    never: set[int],
    tokenizer_spec: dict[str, Any],
    *,
    k: int = 4,
    context_width: int = 13,
    row_k: Sequence[int] | None = None,
    pack: int | None = None,
) -> Path:
    """Like ``write_chat_output``, from (ids, assistant flags) rendered elsewhere (e.g. by transformers)."""
    ks = list(row_k) if row_k is not None else [k] * len(rendered)
    rows = []
    for i, ((ids, flags), row_of_k) in enumerate(zip(rendered, ks)):
        labels = labels_of(ids, flags, row_of_k, context_width, never)
        rows.append({"id": f"chat-{i}", "source": f"chats.jsonl line {i + 1}", "input_ids": ids, "labels": labels,
                     "num_tokens": len(ids), "num_dropped": sum(l == -100 and f == 1 for l, f in zip(labels, flags)),
                     "assistant_masks": flags, "k": row_of_k})  # fmt: skip
    fields = [("id", pa.string()), ("source", pa.string()), ("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32())),
              ("num_tokens", pa.int32()), ("num_dropped", pa.int32()), ("assistant_masks", pa.list_(pa.int8()))]  # fmt: skip
    if pack is not None:
        rows = _packed(rows, pack, int(tokenizer_spec["eos_id"]))
        fields = [f for f in fields if f[0] not in ("id", "source")]
        fields.insert(4, ("doc_starts", pa.list_(pa.int32())))
    if row_k is not None and pack is None:
        fields.append(("k", pa.int32()))
    return _write(folder, rows, fields, k, context_width, never, pack, row_k is not None, tokenizer_spec)


def _packed(rows: list[dict[str, Any]], size: int, eos: int) -> list[dict[str, Any]]:
    ids = [t for r in rows for t in r["input_ids"]]
    labels = [t for r in rows for t in r["labels"]]
    flags = [t for r in rows for t in r["assistant_masks"]]
    starts = np.cumsum([0] + [len(r["input_ids"]) for r in rows[:-1]]).tolist()
    out = []
    for begin in range(0, len(ids), size):
        used = min(size, len(ids) - begin)
        pad = size - used
        row_labels = labels[begin : begin + used]
        row_flags = flags[begin : begin + used]
        out.append({"input_ids": ids[begin : begin + used] + [eos] * pad, "labels": row_labels + [-100] * pad, "num_tokens": used,
                    "num_dropped": sum(l == -100 and f == 1 for l, f in zip(row_labels, row_flags)),
                    "doc_starts": [s - begin for s in starts if begin <= s < begin + used], "assistant_masks": row_flags + [0] * pad})  # fmt: skip
    return out


def _feature(arrow_type: pa.DataType) -> dict[str, Any]:
    if pa.types.is_list(arrow_type):
        return {"feature": _feature(arrow_type.value_type), "_type": "List"}
    return {"dtype": str(arrow_type), "_type": "Value"}


def _write(folder: Path, rows: list[dict[str, Any]], fields: list[tuple[str, pa.DataType]], k: int, h: int, never: set[int], pack: int | None, has_k: bool,
           tokenizer_spec: dict[str, Any]) -> Path:  # fmt: skip
    folder.mkdir(parents=True)
    features = {name: _feature(kind) for name, kind in fields}
    schema = pa.schema(fields, metadata={"huggingface": json.dumps({"info": {"features": features}})})
    table = pa.Table.from_pylist([{name: row[name] for name, _ in fields} for row in rows], schema=schema)
    with pa.OSFile(str(folder / "data-00000.arrow"), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        writer.write_table(table)
    tokens, dropped = sum(r["num_tokens"] for r in rows), sum(r["num_dropped"] for r in rows)
    assistant = sum(sum(r["assistant_masks"]) for r in rows)
    manifest = {
        "format": "goldfish-prep", "format_version": 1, "tool": {"name": "goldfish-prep", "version": "0.1.0"},
        "mask": {"strategy": "goldfish", "k": k, "context_width": h, "seed": 0, "spec_version": 1, "ignore_index": -100},
        "tokenizer": tokenizer_spec,
        "reader": {}, "inputs": [], "ignored_inputs": [], "layout": {"pack": pack, "shard_size": 268435456},
        "chat": {"template_sha256": "stand-in", "template_source": "tests/chat_shards.py", "messages_field": "messages", "role_map": {},
                 "train_on_prompt": False, "keep_ids": [], "special_ids": sorted(never), "mask_rule": "answer-local v1"},
        "k_field": "k" if has_k else None,
        "shards": [{"filename": "data-00000.arrow", "num_rows": len(rows), "num_documents": len(rows), "num_tokens": tokens,
                    "num_dropped": dropped, "sha256": file_sha256(folder / "data-00000.arrow")}],
        "counts": {"documents_read": len(rows), "documents_written": len(rows), "documents_skipped": 0, "skipped_by_reason": {},
                   "tokens": tokens, "assistant_tokens": assistant, "dropped_tokens": dropped},
        "skipped": [],
    }  # fmt: skip
    (folder / "dataset_info.json").write_text(json.dumps({"features": features}), encoding="utf-8")
    (folder / "goldfish_manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000.arrow"}], "_fingerprint": "0", "_format_columns": None,
                                                   "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False, "_split": None}), encoding="utf-8")  # fmt: skip
    return folder
