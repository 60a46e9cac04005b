"""Answer-local drop rates on real data: over all assistant tokens, and by answer length (2 to 12 tokens).

Answers are real text: distinct sentences of the Debian copyright files and distinct phrases of 1
to 8 words cut from them, each the completion of a prompt-completion record. Masked by
``goldfish-prep mask`` (Llama 3 tokenizer, ChatML-style template, k = 4 unless --k). Each
answer is distinct, so drop decisions are independent and the count of drops is binomial: the
table shows the 99.9% band (3.29 sigma) around 1/k for each row. Long answers (sentences of
licences) share many windows with each other, so their decisions are not independent; the rate
over *distinct windows* is the one the band applies to, and it is printed too. (Short answers
share windows as well: every answer that starts with "The" drops its first token or keeps it,
by design, so the per-length rows count tokens, and the distinct-window rows count decisions.)

    python bench/chat_rates.py                 # about 30 s
    python bench/chat_rates.py --k 8 --phrases 40000
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from chat_peer import prepare  # noqa: E402 -- bench scripts import their neighbours by path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=HERE / "results" / "work" / "chat-rates")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--phrases", type=int, default=30000)
    args = parser.parse_args()
    prepare(args.work, 1)  # only its tokenizer folder is used
    texts = [Path(p).read_text(encoding="utf-8", errors="replace") for p in sorted(glob.glob("/usr/share/doc/*/copyright"))]
    sentences = sorted({s.strip() for t in texts for s in re.split(r"(?<=[.!?])\s+", t) if 40 < len(s.strip()) < 400})
    words = " ".join(sentences).split()
    rng = random.Random(11)
    phrases = sorted({" ".join(words[i : i + rng.randint(1, 8)]) for i in rng.sample(range(len(words) - 10), args.phrases)})
    answers = sorted(set(sentences[:5000]) | set(phrases))
    source = args.work / "answers.jsonl"
    with open(source, "w", encoding="utf-8") as out:
        out.writelines(
            json.dumps({"prompt": f"Question {i}?", "completion": answer}, ensure_ascii=False) + "\n" for i, answer in enumerate(answers)
        )
    output = args.work / "out"
    command = [
        str(Path(sys.executable).with_name("goldfish-prep")),
        "mask",
        str(source),
        "-o",
        str(output),
        "--tokenizer",
        str(args.work / "tokenizer"),
        "--k",
        str(args.k),
        "--num-proc",
        "2",
        "--overwrite",
        "-q",
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    report(output, args.k)


def report(output: Path, k: int) -> None:
    import datasets

    ds = datasets.load_from_disk(str(output))
    by_length: dict[int, list[int]] = {}
    windows: dict[tuple[int, ...], bool] = {}  # distinct answer-local windows and their decision
    short_windows: dict[tuple[int, ...], bool] = {}  # the same, in answers of 2-12 eligible tokens
    width = manifest_width(output)
    for row in ds:
        mask = np.array(row["assistant_masks"], dtype=bool)
        labels = np.array(row["labels"])
        where = np.flatnonzero(mask)
        answer = np.array(row["input_ids"])[where].tolist()
        for t in range(len(answer) - 1):
            window = tuple(answer[max(0, t - width + 1) : t + 1])
            windows[window] = bool(labels[where[t]] == -100)
            if 2 <= len(answer) - 1 <= 12:
                short_windows[window] = windows[window]
        # the answer: its text tokens, then <|im_end|> (special, never dropped)
        eligible = len(where) - 1
        dropped = int((labels[where] == -100).sum())
        entry = by_length.setdefault(min(eligible, 13), [0, 0, 0])
        entry[0] += 1
        entry[1] += eligible
        entry[2] += dropped
    manifest = json.loads((output / "goldfish_manifest.json").read_text())
    counts = manifest["counts"]
    print(
        f"{counts['documents_written']:,} distinct answers, k = {k}; all assistant tokens: {_row(counts['eligible_tokens'], counts['dropped_tokens'], k)}"
    )
    print(
        f"  over the {len(windows):,} distinct windows among them (independent decisions): {_row(len(windows), sum(windows.values()), k)}"
    )
    print(f"{'tokens':>7} {'answers':>8} {'eligible':>9} {'dropped':>8} {'rate':>7}  99.9% band        in band")
    short = [0, 0]
    for length in sorted(by_length):
        answers, eligible, dropped = by_length[length]
        if eligible == 0:
            continue
        if 2 <= length <= 12:
            short[0] += eligible
            short[1] += dropped
        label = "13+" if length == 13 else str(length)
        print(f"{label:>7} {answers:>8,} {eligible:>9,} {dropped:>8,} {_row(eligible, dropped, k, table=True)}")
    print(f"answers of 2-12 tokens together: {_row(short[0], short[1], k)}")
    print(f"  over their {len(short_windows):,} distinct windows: {_row(len(short_windows), sum(short_windows.values()), k)}")


def manifest_width(output: Path) -> int:
    return int(json.loads((output / "goldfish_manifest.json").read_text())["mask"]["context_width"])


def _row(eligible: int, dropped: int, k: int, table: bool = False) -> str:
    p = 1 / k
    half = 3.29 * math.sqrt(p * (1 - p) / eligible)
    rate = dropped / eligible
    inside = "yes" if abs(rate - p) <= half else "NO"
    if table:
        return f"{rate:>7.2%}  [{p - half:.2%}, {p + half:.2%}]  {inside}"
    return f"{dropped:,} of {eligible:,} dropped, {rate:.2%} (band [{p - half:.2%}, {p + half:.2%}]: {inside})"


if __name__ == "__main__":
    main()
