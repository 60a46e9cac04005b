"""Short documents repeated many times: does the mask keep them from being learned verbatim?

Under ``goldfish`` spec v1 a document's first h = 13 tokens are never dropped, so
a document of 13 tokens or fewer is supervised in full every time it appears,
as with standard loss. Spec v2 (the default) decides those tokens on partial
windows. This experiment trains the bundled tiny model on short documents
(2-40 tokens: distinct lines of the Debian licence and copyright files), each
repeated many times as a separate document, once per arm:

- ``standard``: ``--strategy none``;
- ``goldfish v1``: ``--strategy goldfish --spec-version 1`` (k = 4, h = 13);
- ``goldfish v2``: the default (k = 4, h = 13).

It then gives each model a document's first token or two (after the
end-of-text id that precedes every document in training) and asks for the rest
greedily: a document counts as reproduced when every id of it comes out.
Counts are split at h: documents of up to 13 tokens, which v1 never masks, and
longer ones. ``unmasked`` counts the documents whose v2 mask drops none of the
tokens to reproduce (probability (3/4)**length): nothing stops a model there.

    python experiments/short_documents.py --quick     # 2 CPU cores, a few minutes

Raw results go to experiments/results/short-documents/results.json (gitignored); the
table printed at the end is the one in docs/mask-spec.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import hashlib
import json
import multiprocessing
import random
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memorization_experiment import run_cli  # noqa: E402  (experiments/ is scripts, not a package)

ARMS: list[tuple[str, list[str]]] = [
    ("standard", ["--strategy", "none"]),
    ("goldfish v1 k=4", ["--strategy", "goldfish", "--spec-version", "1", "--k", "4"]),
    ("goldfish v2 k=4", ["--strategy", "goldfish", "--k", "4"]),
]
H = 13


@dataclasses.dataclass(frozen=True)
class Mode:
    documents: int
    copies: int
    epochs: float
    block_size: int
    n_layer: int
    n_embd: int
    batch_size: int
    learning_rate: float


MODES = {"quick": Mode(documents=64, copies=40, epochs=4, block_size=64, n_layer=2, n_embd=128, batch_size=16, learning_rate=5e-3)}


def make_tokenizer(work: Path) -> str:
    """A 2048-id byte-level BPE trained on the Debian copyright files (small vocabulary: a fast tiny model)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2048, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train(sorted(glob.glob("/usr/share/common-licenses/*")), trainer)
    path = work / "bpe-2048.json"
    tokenizer.save(str(path))
    return str(path)


def short_documents(spec: str, count: int) -> list[str]:
    """``count`` distinct lines of 2-40 tokens, each with its own first token (so a one-token prefix names one document).

    Half are at most ``H`` tokens long (never masked under spec v1), half longer.
    """
    from goldfish_prep.tokenizers import load_tokenizer

    files = sorted(glob.glob("/usr/share/common-licenses/*")) + sorted(glob.glob("/usr/share/doc/*/copyright"))
    lines = {line.strip() for path in files for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines()}
    candidates = sorted((line for line in lines if 4 <= len(line) <= 200), key=lambda s: hashlib.sha256(s.encode()).hexdigest())
    tokenizer = load_tokenizer(spec)
    chosen: dict[bool, list[str]] = {True: [], False: []}
    firsts: set[int] = set()
    for line, ids in zip(candidates, tokenizer.encode_batch(candidates)):
        short = len(ids) <= H
        if 2 <= len(ids) <= 40 and int(ids[0]) not in firsts and len(chosen[short]) < count // 2:
            chosen[short].append(line)
            firsts.add(int(ids[0]))
    return chosen[True] + chosen[False]


def run_arm(mode: Mode, work: Path, spec: str, name: str, options: list[str]) -> dict[str, Any]:
    """Mask, train and measure one arm (one single-threaded process per arm)."""
    import torch

    torch.set_num_threads(1)
    from goldfish_prep.train.config import TrainConfig
    from goldfish_prep.train.trainer import train

    slug = name.replace(" ", "-").replace("=", "")
    shards, run_dir = work / f"shards-{slug}", work / f"run-{slug}"
    summary = run_cli("mask", str(work / "corpus.jsonl"), "-o", str(shards), "--tokenizer", spec, "-q", *options)
    config = TrainConfig(
        data=shards, run_dir=run_dir, preset="tiny", block_size=mode.block_size, n_layer=mode.n_layer, n_embd=mode.n_embd,
        batch_size=mode.batch_size, learning_rate=mode.learning_rate, warmup_steps=20, epochs=mode.epochs, device="cpu",
        log_interval=1000, overwrite=True, seed=0,
    )  # fmt: skip
    trained = train(config)
    scores = measure(run_dir, shards, int(json.loads((work / "documents.json").read_text())["copies"]))
    print(f"{name}: {trained.steps} steps, {trained.seconds:.0f} s", file=sys.stderr, flush=True)
    return {"arm": name, "summary": summary.strip().splitlines(), "steps": trained.steps, "seconds": trained.seconds, **scores}


def measure(run_dir: Path, shards: Path, copies: int) -> dict[str, Any]:
    """Greedy reproduction of every distinct document from its first 1 and 2 ids (after the end-of-text id)."""
    import datasets

    from goldfish_prep.train.causal_lm import load_causal_lm
    from goldfish_prep.train.generate import greedy

    model = load_causal_lm(run_dir, "cpu")
    rows = datasets.load_from_disk(str(shards))
    seen: dict[tuple[int, ...], dict[str, Any]] = {}
    for ids, labels in zip(rows["input_ids"], rows["labels"]):
        if tuple(ids) not in seen:
            seen[tuple(ids)] = {"ids": ids, "dropped": [i for i, label in enumerate(labels) if label == -100]}
    assert len(seen) * copies == len(rows), "every document appears the same number of times"
    documents = []
    for entry in seen.values():
        ids, eos = entry["ids"][:-1], entry["ids"][-1]  # the text's ids, then the end-of-text id mask appended
        result = {"length": len(ids), "dropped": entry["dropped"]}
        for given in (1, 2):
            if len(ids) > given:
                result[f"reproduced_{given}"] = greedy(model, [eos, *ids[:given]], len(ids) - given) == ids[given:]
        documents.append(result)
    return {"documents": documents}


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: reproduced documents per arm, prefix length and length group."""
    groups = [("2-13 tokens", lambda n: n <= H), ("14-40 tokens", lambda n: n > H)]
    header = "| arm | prefix | " + " | ".join(f"reproduced, {label}" for label, _ in groups) + " | unmasked after the prefix |"
    lines = [header, "|---|---|" + "---|" * len(groups) + "---|"]
    for row in rows:
        for given in (1, 2):
            cells = []
            for _, member in groups:
                scored = [d for d in row["documents"] if member(d["length"]) and f"reproduced_{given}" in d]
                cells.append(f"{sum(d[f'reproduced_{given}'] for d in scored)} of {len(scored)}")
            unmasked = [d for d in row["documents"] if d["length"] > given and not [p for p in d["dropped"] if given <= p < d["length"]]]
            total = sum(d["length"] > given for d in row["documents"])
            lines.append(
                f"| {row['arm']} | {given} token{'s' if given > 1 else ''} | " + " | ".join(cells) + f" | {len(unmasked)} of {total} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 CPU cores, a few minutes (the only mode)")
    parser.add_argument("--jobs", type=int, default=2, help="arms trained at once, one single-threaded process each")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "short-documents")
    args = parser.parse_args(argv)
    mode, work = MODES["quick"], args.out
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    started = time.perf_counter()
    spec = make_tokenizer(work)
    texts = short_documents(spec, mode.documents)
    corpus = [t for t in texts for _ in range(mode.copies)]
    random.Random(0).shuffle(corpus)  # copies as separate documents, spread through the corpus
    (work / "corpus.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in corpus), encoding="utf-8")
    (work / "documents.json").write_text(json.dumps({"copies": mode.copies, "texts": texts}, indent=1), encoding="utf-8")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        rows = list(pool.map(run_arm, *zip(*[(mode, work, spec, name, options) for name, options in ARMS])))
    results = {"mode": dataclasses.asdict(mode), "documents": len(texts), "arms": rows, "seconds": time.perf_counter() - started}
    (work / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"{len(texts)} distinct documents x {mode.copies} copies, {mode.epochs:g} epochs, k = 4, h = {H}")
    print(table(rows))
    print(f"total {results['seconds']:.0f} s; raw results in {work / 'results.json'}")


if __name__ == "__main__":
    main()
