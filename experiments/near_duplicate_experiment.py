"""The near-duplicate leak, measured: goldfish masks against copies that differ by small edits.

A passage seen as many *edited* copies (case, double spaces, line breaks,
typographic quotes and dashes) gets a different goldfish mask in each copy, so
together the copies supervise every token. This script trains one tiny model per
arm from scratch on the same target paragraphs (distinct Debian copyright
paragraphs, as in ``memorization_experiment.py``) and measures memorisation on
the *unedited* paragraphs, which no near-copy arm ever saw verbatim:

- ``exact``: each target repeated ``--copies`` times unedited (the reference:
  what goldfish guarantees for exact repeats);
- ``near``: ``--copies`` edited copies of each target, ``--edits`` random edits
  per copy, of the ``--kinds`` given;

for ``none`` (standard loss), ``goldfish`` and ``robust`` at k = 4, all with the
same epochs, plus a control: the standard near-copy model on unseen paragraphs.

    python experiments/near_duplicate_experiment.py                 # 2 CPU cores
    python experiments/near_duplicate_experiment.py --targets 16 --copies 8 --edits 4 --epochs 12
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import re
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from memorization_experiment import MODES, make_tokenizer, run_cli, select_documents, write_jsonl  # noqa: E402

KINDS = ("case", "space", "newline", "quote", "dash")
ARMS: list[tuple[str, str, list[str]]] = [
    ("standard, near copies", "near", ["--strategy", "none"]),
    ("goldfish k=4, exact repeats", "exact", ["--strategy", "goldfish", "--k", "4"]),
    ("goldfish k=4, near copies", "near", ["--strategy", "goldfish", "--k", "4"]),
    ("robust k=4, exact repeats", "exact", ["--strategy", "robust", "--k", "4"]),
    ("robust k=4, near copies", "near", ["--strategy", "robust", "--k", "4"]),
]


def edit_once(text: str, kind: str, rng: random.Random) -> str:
    """``text`` with one edit of ``kind`` at a random place (unchanged if it has no such place)."""
    if kind == "case":
        words = [m for m in re.finditer(r"[A-Za-z]{2,}", text)]
        if not words:
            return text
        m = rng.choice(words)
        word = m.group()
        changed = (
            word.lower()
            if word.isupper()
            else word.upper()
            if rng.random() < 0.5
            else word.capitalize()
            if word.islower()
            else word.lower()
        )
        return text[: m.start()] + changed + text[m.end() :]
    swaps = {"space": (" ", ["  "]), "newline": (" ", ["\n"]), "quote": ("'\"", None), "dash": ("-", ["\u2013", "\u2014"])}
    if kind not in swaps:
        raise SystemExit(f"unknown edit kind {kind!r}; choose from {', '.join(KINDS)}")
    chars, replacements = swaps[kind]
    places = [i for i, c in enumerate(text) if c in chars]
    if not places:
        return text
    i = rng.choice(places)
    if replacements is None:  # a straight quote becomes a typographic one
        replacements = ["\u2019", "\u2018"] if text[i] == "'" else ["\u201c", "\u201d"]
    return text[:i] + rng.choice(replacements) + text[i + 1 :]


def near_copy(text: str, edits: int, kinds: list[str], rng: random.Random) -> str:
    """``text`` with ``edits`` random edits of the given kinds."""
    for _ in range(edits):
        text = edit_once(text, rng.choice(kinds), rng)
    return text


def corpora(targets: list[str], copies: int, edits: int, kinds: list[str], seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    near = [near_copy(t, edits, kinds, rng) for _ in range(copies) for t in targets]
    exact = [t for _ in range(copies) for t in targets]
    return {"near": near, "exact": exact}


def run_arm(args: argparse.Namespace, work: Path, spec: str, name: str, corpus: str, options: list[str]) -> dict[str, Any]:
    import torch

    from goldfish_prep.train.causal_lm import load_causal_lm
    from goldfish_prep.train.config import TrainConfig
    from goldfish_prep.train.memorization import measure_memorization, text_decoder
    from goldfish_prep.train.trainer import train

    torch.set_num_threads(1)
    slug = name.replace(" ", "-").replace(",", "").replace("=", "")
    shards = work / f"shards-{slug}"
    run_cli("mask", str(work / f"{corpus}.jsonl"), "-o", str(shards), "--tokenizer", spec, *options, "-q")
    counts = json.loads((shards / "goldfish_manifest.json").read_text())["counts"]
    mode = MODES["quick"]
    config = TrainConfig(
        data=shards, run_dir=work / f"run-{slug}", preset=mode.preset, block_size=mode.block_size, n_layer=mode.n_layer,
        batch_size=mode.batch_size, learning_rate=mode.learning_rate, warmup_steps=mode.warmup_steps, epochs=args.epochs,
        eval_data=work / "shards-heldout", device="cpu", log_interval=50, overwrite=True, seed=0,
    )  # fmt: skip
    started = time.perf_counter()
    result = train(config)
    probe = work / "shards-targets"  # the unedited targets: what a model must not reproduce
    decode, _ = text_decoder(probe)
    memo = measure_memorization(load_causal_lm(config.run_dir, "cpu"), probe, decode=decode).summary()
    print(f"{name}: exact {memo['exact_matches']}/{memo['documents']}, token match {memo['token_match']:.3f}, "
          f"val loss {result.eval_loss:.3f} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
    return {"arm": name, "corpus": corpus, "drop_rate": counts["drop_rate"], "supervised_tokens": result.supervised_tokens,
            "eval_loss": result.eval_loss, "memorization": memo}  # fmt: skip


def control(work: Path, run: Path) -> dict[str, Any]:
    from goldfish_prep.train.causal_lm import load_causal_lm
    from goldfish_prep.train.memorization import measure_memorization, text_decoder

    decode, _ = text_decoder(work / "shards-heldout")
    summary: dict[str, Any] = measure_memorization(load_causal_lm(run, "cpu"), work / "shards-heldout", decode=decode).summary()
    return summary


def table(rows: list[dict[str, Any]], unseen: dict[str, Any]) -> str:
    lines = [
        "| arm | drop rate | supervised tokens | val loss | exact match | token match | Rouge-L ids | Rouge-L text |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in [*rows, {"arm": "control: unseen paragraphs (standard, near copies)", "memorization": unseen}]:
        memo = row["memorization"]
        text = f"{memo['text_rouge_l']:.3f}" if memo.get("text_rouge_l") is not None else "-"
        rate = f"{row['drop_rate']:.1%}" if "drop_rate" in row else "-"
        supervised = f"{row['supervised_tokens']:,}" if "supervised_tokens" in row else "-"
        loss = f"{row['eval_loss']:.3f}" if "eval_loss" in row else "-"
        lines.append(f"| {row['arm']} | {rate} | {supervised} | {loss} | {memo['exact_matches']}/{memo['documents']} | "
                     f"{memo['token_match']:.3f} | {memo['rouge_l']:.3f} | {text} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=16, help="target paragraphs")
    parser.add_argument("--heldout", type=int, default=16, help="unseen paragraphs (validation loss and the control)")
    parser.add_argument("--copies", type=int, default=8, help="copies of each target in the training data")
    parser.add_argument("--edits", type=int, default=4, help="random edits per near copy")
    parser.add_argument("--kinds", default="case,space,newline", help=f"edit kinds, from {','.join(KINDS)}")
    parser.add_argument("--epochs", type=float, default=12)
    parser.add_argument("--jobs", type=int, default=2, help="arms trained at once, one single-threaded process each")
    parser.add_argument("--arms", default=None, help="comma-separated subset of arm names")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "near-duplicates")
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",")
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    started = time.perf_counter()
    mode = MODES["quick"]
    spec = make_tokenizer(mode, args.out)
    import dataclasses

    targets, heldout = select_documents(dataclasses.replace(mode, num_targets=args.targets, num_heldout=args.heldout), spec)
    for name, texts in {**corpora(targets, args.copies, args.edits, kinds, args.seed), "targets": targets}.items():
        write_jsonl(args.out / f"{name}.jsonl", texts)
    write_jsonl(args.out / "heldout.jsonl", heldout)
    for name in ("targets", "heldout"):
        run_cli(
            "mask", str(args.out / f"{name}.jsonl"), "-o", str(args.out / f"shards-{name}"), "--tokenizer", spec, "--strategy", "none", "-q"
        )
    chosen = [arm for arm in ARMS if args.arms is None or arm[0] in args.arms.split(",")]
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_arm, args, args.out, spec, name, corpus, options) for name, corpus, options in chosen]
        rows = [future.result() for future in futures]
    standard = next((row for row in rows if row["arm"].startswith("standard")), None)
    unseen = control(args.out, args.out / "run-standard-near-copies") if standard else {}
    results = {
        "settings": {k: str(v) for k, v in vars(args).items()},
        "arms": rows,
        "control": unseen,
        "seconds": time.perf_counter() - started,
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if unseen:
        print(table(rows, unseen))
    print(f"total {results['seconds']:.0f} s; raw results in {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
