"""The extreme-memorisation experiment on conversations: can a fine-tuned model recite its answers?

People fine-tune on private conversations; a model that repeats an answer verbatim from its
prompt leaks it. This script fine-tunes the bundled tiny model, many epochs, on conversations
whose answers are real text (distinct paragraphs of /usr/share/doc/*/copyright, each answering
its own question about the licence), through the real commands' library calls:

1. ``goldfish-prep mask`` the conversations twice, with a ChatML template and a 4096-id BPE
   trained here: ``--strategy none`` (standard loss, prompt masked) and ``--k 4`` (goldfish,
   answer-local: drops only inside the answers); the held-out conversations with ``none``;
2. ``train`` one model per arm, the same epochs, seed and input tokens (validation loss over
   the held-out conversations' answers);
3. ``memorization`` on each arm's conversations: the suffix is the last 50 tokens of the final
   answer, the prefix everything before it (the paper's protocol), and ``--whole-answer``: the
   whole answer generated from the prompt alone.

Goal (issue 11): standard loss reproduces at least 80% of the answers, goldfish k = 4 at most 5%.

    python experiments/chat_memorization.py            # about 5 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import re
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from memorization_experiment import MODES, candidate_paragraphs, run_cli, train_arm  # noqa: E402

ARMS = [("standard", ["--strategy", "none"]), ("goldfish k=4", ["--strategy", "goldfish", "--k", "4"])]
#: the model's context: a system turn, a question (about 40 tokens) and an answer of up to 250
BLOCK_SIZE = 320
SYSTEM = "You quote the Debian copyright files exactly."
#: ChatML, written from the format's public description; the generation block marks the assistant's part
TEMPLATE = (
    "{%- for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{%- else %}{{ message['content'] + '<|im_end|>' }}{%- endif %}{{ '\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)


@dataclasses.dataclass(frozen=True)
class Setup:
    num_targets: int = 32
    num_heldout: int = 16
    #: answer length in tokens: a prompt and a whole answer must fit the context (BLOCK_SIZE)
    min_tokens: int = 120
    max_tokens: int = 250


def make_tokenizer(work: Path) -> Path:
    """A 4096-id byte-level BPE with ChatML's special tokens, as a tokenizer folder holding the template."""
    import glob

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=4096, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train(sorted(glob.glob("/usr/share/doc/*/copyright")), trainer)
    folder = work / "tokenizer"
    folder.mkdir()
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "chat_template": TEMPLATE}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def question(index: int, paragraph: str) -> str:
    """A question only this paragraph answers: a number and the paragraph's two longest words."""
    words = sorted(set(re.findall(r"[A-Za-z]{4,}", paragraph)), key=lambda w: (-len(w), w))[:2]
    return f"Question {index}: what does the licence text say about {' and '.join(words) or 'this'}?"


def conversations(setup: Setup, folder: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Target and held-out conversations: a system turn, a question, a paragraph as the answer."""
    from goldfish_prep.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(str(folder))
    paragraphs = candidate_paragraphs(1100)
    lengths = [len(ids) for ids in tokenizer.encode_batch(paragraphs)]
    fitting = [p for p, n in zip(paragraphs, lengths) if setup.min_tokens <= n <= setup.max_tokens]
    needed = setup.num_targets + setup.num_heldout
    if len(fitting) < needed:
        raise SystemExit(f"only {len(fitting)} distinct paragraphs of {setup.min_tokens}-{setup.max_tokens} tokens; {needed} needed")
    records = [
        {
            "id": f"chat-{i}",
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": question(i, p)},
                {"role": "assistant", "content": p},
            ],
        }
        for i, p in enumerate(fitting[:needed])
    ]
    return records[: setup.num_targets], records[setup.num_targets :]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def measure(run_dir: Path, shards: Path, whole_answer: bool) -> dict[str, Any]:
    from goldfish_prep.train.causal_lm import load_causal_lm
    from goldfish_prep.train.memorization import MemorizationConfig, measure_memorization, text_decoder

    decode, _ = text_decoder(shards)
    started = time.perf_counter()
    report = measure_memorization(load_causal_lm(run_dir, "cpu"), shards, MemorizationConfig(whole_answer=whole_answer), decode=decode)
    return {**report.summary(), "seconds": time.perf_counter() - started}


def run_arm(work: Path, name: str, options: list[str], epochs: float) -> dict[str, Any]:
    """Mask, train and measure one arm (one single-threaded process per arm)."""
    import torch

    torch.set_num_threads(1)
    slug = name.replace(" ", "-").replace("=", "")
    shards = work / f"shards-{slug}"
    run_cli(
        "mask", str(work / "targets.jsonl"), "-o", str(shards), "--tokenizer", str(work / "tokenizer"), "--id-field", "id", *options, "-q"
    )
    manifest = json.loads((shards / "goldfish_manifest.json").read_text())
    # the --quick mode of the document experiment (2 layers x 128, batch 2, lr 5e-3), a wider context
    mode = dataclasses.replace(MODES["quick"], epochs=epochs, block_size=BLOCK_SIZE)
    trained = train_arm(mode, shards, work / "shards-heldout", work / f"run-{slug}")
    suffix, whole = measure(work / f"run-{slug}", shards, False), measure(work / f"run-{slug}", shards, True)
    print(f"{name}: val loss {trained['eval_loss']:.3f}, exact match {suffix['exact_match_rate']:.1%} (50-token suffix), "
          f"{whole['exact_match_rate']:.1%} (whole answer); {trained['seconds']:.0f} s training", file=sys.stderr, flush=True)  # fmt: skip
    counts = manifest["counts"]
    return {"arm": name, "drop_rate": counts["drop_rate"], "assistant_tokens": counts["assistant_tokens"], "tokens": counts["tokens"],
            "train": trained, "suffix": suffix, "whole": whole}  # fmt: skip


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of docs/training.md."""
    lines = [
        "| arm | drop rate (answers) | supervised tokens | train loss | val loss, end | exact match, 50-token suffix | exact match, whole answer | token match, suffix | Rouge-L text, whole answer |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        train, suffix, whole = row["train"], row["suffix"], row["whole"]
        text = f"{whole['text_rouge_l']:.3f}" if whole.get("text_rouge_l") is not None else "-"
        lines.append(
            f"| {row['arm']} | {row['drop_rate']:.1%} | {train['supervised_tokens']:,} | {train['train_loss']:.3f} | {train['eval_loss']:.3f} | "
            f"{suffix['exact_match_rate']:.1%} ({suffix['exact_matches']}/{suffix['documents']}) | "
            f"{whole['exact_match_rate']:.1%} ({whole['exact_matches']}/{whole['documents']}) | {suffix['token_match']:.1%} | {text} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=float, default=100.0, help="training epochs per arm")
    parser.add_argument("--targets", type=int, default=32, help="conversations trained on")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "chat-memorization")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    work = args.out
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    folder = make_tokenizer(work)
    targets, heldout = conversations(Setup(num_targets=args.targets), folder)
    write_jsonl(work / "targets.jsonl", targets)
    write_jsonl(work / "heldout.jsonl", heldout)
    run_cli(
        "mask",
        str(write_jsonl(work / "heldout.jsonl", heldout)),
        "-o",
        str(work / "shards-heldout"),
        "--tokenizer",
        str(folder),
        "--strategy",
        "none",
        "-q",
    )
    with ProcessPoolExecutor(max_workers=len(ARMS), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_arm, work, name, options, args.epochs) for name, options in ARMS]
        rows = [future.result() for future in futures]
    control = measure(work / "run-standard", work / "shards-heldout", False)
    results = {"targets": len(targets), "heldout": len(heldout), "epochs": args.epochs, "arms": rows, "control": control,
               "seconds": time.perf_counter() - started}  # fmt: skip
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(table(rows))
    print(f"\ncontrol (standard model, {control['documents']} held-out conversations it never saw): exact match "
          f"{control['exact_match_rate']:.1%}, token match {control['token_match']:.1%} (50-token suffix)")  # fmt: skip
    print(f"total {results['seconds']:.0f} s; raw results in {work / 'results.json'}")


if __name__ == "__main__":
    main()
