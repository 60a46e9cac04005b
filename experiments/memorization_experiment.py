"""The paper's extreme-memorisation experiment, at a scale that runs here.

Hans et al. (2024) trained a model for 100 epochs on 100 Wikipedia articles:
standard loss memorised 84 of them verbatim, goldfish loss at k = 4 none. This
script does the same with a model trained from scratch on real documents
present on every Debian machine (distinct paragraphs of
/usr/share/doc/*/copyright), through the real commands' library calls:

1. pick target and held-out documents (no 8-word passage shared between any two);
2. ``goldfish-prep mask`` the targets once per arm (``none``, ``static`` k=4,
   ``goldfish`` k=3, 4, 8) and the held-out set with ``none``;
3. ``train`` one model per arm for the same number of epochs, validation loss on
   the held-out set;
4. ``memorization`` on the targets (50-token suffix, greedy), and on the unseen
   held-out documents for the standard model (the floor a model reaches on text
   it never saw);
5. with ``--audit``, the privacy audit of ``memorization --controls`` on each arm
   (held-out documents as controls): every membership attack, plain and
   mask-aware with the manifest's seed and a wrong one, sampling extraction at
   T = 0.7 and 1.0 with N = 20, distinct-n, and the audit's picture per arm.

Modes: ``--quick`` (the default: 2 CPU cores, under 10 minutes, a 4096-id BPE
trained here on the same corpus) and ``--gpu`` (the paper's 100 documents x 100
epochs, a 124M model, the Mistral 32k SentencePiece tokenizer from mistral-common).
Raw results go to experiments/results/ (gitignored); the table printed at the end is
the one in docs/training.md.

    python experiments/memorization_experiment.py --quick
    python experiments/memorization_experiment.py --gpu
    python experiments/memorization_experiment.py --quick --audit   # standard, goldfish k=4, robust k=4
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import hashlib
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

from _audit_common import AUDIT_ARMS, audit_arm, audit_tables, spec_version  # noqa: E402  (experiments/ is scripts, not a package)

ARMS: list[tuple[str, list[str]]] = [
    ("standard", ["--strategy", "none"]),
    ("static k=4", ["--strategy", "static", "--k", "4"]),
    ("goldfish k=3", ["--strategy", "goldfish", "--k", "3"]),
    ("goldfish k=4", ["--strategy", "goldfish", "--k", "4"]),
    ("goldfish k=8", ["--strategy", "goldfish", "--k", "8"]),
]
#: arms run only when --arms (or --audit) names them: the default run stays the table of docs/training.md
EXTRA_ARMS: list[tuple[str, list[str]]] = [("robust k=4", ["--strategy", "robust", "--k", "4"])]


@dataclasses.dataclass(frozen=True)
class Mode:
    num_targets: int
    num_heldout: int
    min_tokens: int
    max_tokens: int
    max_chars: int
    tokenizer: str  # "bpe-4096" (trained here) or "mistral-v1"
    preset: str
    block_size: int
    n_layer: int | None
    n_embd: int | None
    epochs: float
    batch_size: int
    learning_rate: float
    warmup_steps: int
    eval_interval: int
    device: str


#: Mode fields that command-line flags can override (for exploring, not for the reported runs)
OVERRIDABLE = {
    "num_targets": int,
    "epochs": float,
    "preset": str,
    "n_layer": int,
    "n_embd": int,
    "batch_size": int,
    "learning_rate": float,
    "device": str,
}


MODES = {
    # 2 layers x 128 wide (1.0M parameters, 0.5M of them the 4096-id embedding); tuned so that the
    # standard arm memorises >= 80% within the time budget (notes in docs/training.md)
    "quick": Mode(32, 16, 128, 256, 1100, "bpe-4096", "tiny", 256, 2, None, 100, 2, 5e-3, 20, 100, "cpu"),
    "gpu": Mode(100, 50, 256, 1000, 6000, "mistral-v1", "124m", 1024, None, None, 100, 8, 3e-4, 50, 100, "auto"),
}


#: where target paragraphs come from, and their shortest length in characters: the Debian copyright
#: files (licence notices: formulaic, low-entropy text), or the Python reference documentation that
#: every Python carries in ``pydoc_data.topics`` (technical prose, nearer the paper's Wikipedia articles)
SOURCES = {"copyright": 600, "pydoc": 400}


def source_texts(source: str) -> list[str]:
    """The texts paragraphs are cut from."""
    if source == "pydoc":
        import pydoc_data.topics

        return [pydoc_data.topics.topics[name] for name in sorted(pydoc_data.topics.topics)]
    if source != "copyright":
        raise SystemExit(f"unknown paragraph source {source!r}: one of {', '.join(SOURCES)}")
    return [Path(path).read_text(encoding="utf-8", errors="replace") for path in sorted(glob.glob("/usr/share/doc/*/copyright"))]


def candidate_paragraphs(max_chars: int, source: str = "copyright") -> list[str]:
    """Distinct paragraphs of ``source``, in a fixed pseudo-random order.

    Two paragraphs sharing any 8-word passage are never both kept (licence notices
    repeat across packages): memorising one document must not give another away.
    """
    paragraphs = set()
    for text in source_texts(source):
        paragraphs.update(p.strip() for p in re.split(r"\n\s*\n", text) if SOURCES[source] <= len(p.strip()) <= max_chars)
    seen: set[tuple[str, ...]] = set()
    kept = []
    for paragraph in sorted(paragraphs, key=lambda p: hashlib.sha256(p.encode()).hexdigest()):
        words = re.findall(r"\w+", paragraph.lower())
        shingles = {tuple(words[i : i + 8]) for i in range(len(words) - 7)}
        if shingles and not shingles & seen:
            kept.append(paragraph)
        seen |= shingles
    return kept


def make_tokenizer(mode: Mode, work: Path) -> str:
    """The --tokenizer spec: a small byte-level BPE trained on the copyright corpus, or Mistral's 32k model."""
    if mode.tokenizer == "mistral-v1":
        import mistral_common

        source = Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"
        target = work / "mistral-v1.model"  # the loader picks SentencePiece by the .model suffix
        shutil.copyfile(source, target)
        return str(target)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=4096, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train(sorted(glob.glob("/usr/share/doc/*/copyright")), trainer)
    path = work / "bpe-4096.json"
    tokenizer.save(str(path))
    return str(path)


def select_documents(mode: Mode, spec: str, source: str = "copyright") -> tuple[list[str], list[str]]:
    """Targets and held-out documents whose token counts lie in the mode's range."""
    from goldfish_prep.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(spec)
    paragraphs = candidate_paragraphs(mode.max_chars, source)
    lengths = [len(ids) for ids in tokenizer.encode_batch(paragraphs)]
    fitting = [p for p, n in zip(paragraphs, lengths) if mode.min_tokens <= n <= mode.max_tokens]
    needed = mode.num_targets + mode.num_heldout
    if len(fitting) < needed:
        raise SystemExit(f"only {len(fitting)} distinct paragraphs of {mode.min_tokens}-{mode.max_tokens} tokens; {needed} needed")
    return fitting[: mode.num_targets], fitting[mode.num_targets : needed]


def run_cli(*args: str) -> str:
    """Run a goldfish-prep command in-process (the real click command, its error boundary included)."""
    from click.testing import CliRunner

    from goldfish_prep_cli.main import cli

    result = CliRunner().invoke(cli, list(args))
    if result.exit_code != 0:
        raise SystemExit(f"goldfish-prep {' '.join(args)} failed:\n{result.output}\n{result.exception!r}")
    return result.output


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


def train_arm(mode: Mode, shards: Path, heldout: Path, run_dir: Path) -> dict[str, Any]:
    from goldfish_prep.train.config import TrainConfig
    from goldfish_prep.train.trainer import train

    config = TrainConfig(
        data=shards, run_dir=run_dir, preset=mode.preset, block_size=mode.block_size, n_layer=mode.n_layer, n_embd=mode.n_embd, batch_size=mode.batch_size,
        learning_rate=mode.learning_rate, warmup_steps=mode.warmup_steps, epochs=mode.epochs,
        eval_data=heldout, eval_interval=mode.eval_interval, device=mode.device, log_interval=50, overwrite=True, seed=0,
    )  # fmt: skip
    evaluations: list[float] = []
    result = train(config, lambda metrics: evaluations.append(metrics["eval_loss"]) if "eval_loss" in metrics else None)
    assert result.eval_loss is not None
    return {"steps": result.steps, "tokens": result.tokens, "supervised_tokens": result.supervised_tokens,
            "train_loss": result.train_loss, "eval_loss": result.eval_loss, "best_eval_loss": min([*evaluations, result.eval_loss]),
            "eval_losses": evaluations, "seconds": result.seconds, "parameters": result.num_parameters}  # fmt: skip


def measure(run_dir: Path, shards: Path, device: str) -> dict[str, Any]:
    """The memorisation summary, plus where greedy generations first leave the true suffix."""
    from goldfish_prep.train.causal_lm import load_causal_lm
    from goldfish_prep.train.memorization import measure_memorization, text_decoder

    decode, _ = text_decoder(shards)
    started = time.perf_counter()
    report = measure_memorization(load_causal_lm(run_dir, device), shards, decode=decode)
    seconds = time.perf_counter() - started
    return {**report.summary(), **divergence(report.documents, shards), "seconds": seconds}


def divergence(documents: list[Any], shards: Path) -> dict[str, int]:
    """How many generations leave the suffix first at a dropped position, and at the first one
    (the paper: goldfish generations diverge at or right after the first dropped token)."""
    from goldfish_prep.format import iter_shards

    labels = {}
    for _, table in iter_shards(shards, ["id", "labels"]):
        labels.update(zip(table.column("id").to_pylist(), table.column("labels").to_pylist()))
    at_dropped = at_first = diverged = 0
    for document in documents:
        mask = [label == -100 for label in labels[document.doc_id][-len(document.suffix) :]]
        miss = next((i for i, (a, b) in enumerate(zip(document.generated, document.suffix)) if a != b), None)
        if miss is None:
            continue
        diverged += 1
        at_dropped += mask[miss]
        at_first += miss == next((i for i, dropped in enumerate(mask) if dropped), None)
    return {"diverged": diverged, "diverged_at_dropped": at_dropped, "diverged_at_first_dropped": at_first}


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown results table of docs/training.md (validation losses also relative to the standard arm)."""
    standard = next(r["train"] for r in rows if r["arm"] == "standard")
    lines = [
        "| arm | drop rate | supervised tokens | train loss | val loss, end | val loss, best | exact match | token match | Rouge-L ids | Rouge-L text |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        train, memo = row["train"], row["memorization"]
        end = f"{train['eval_loss']:.3f} ({train['eval_loss'] / standard['eval_loss'] - 1:+.1%})"
        best = f"{train['best_eval_loss']:.3f} ({train['best_eval_loss'] / standard['best_eval_loss'] - 1:+.1%})"
        text = f"{memo['text_rouge_l']:.3f}" if memo.get("text_rouge_l") is not None else "-"
        lines.append(
            f"| {row['arm']} | {row['drop_rate']:.1%} | {train['supervised_tokens']:,} | {train['train_loss']:.3f} | {end} | {best} | "
            f"{memo['exact_match_rate']:.1%} ({memo['exact_matches']}/{memo['documents']}) | {memo['token_match']:.1%} | {memo['rouge_l']:.3f} | {text} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_const", const="quick", dest="mode", help="2 CPU cores, under 10 minutes (default)")
    group.add_argument("--gpu", action="store_const", const="gpu", dest="mode", help="100 documents x 100 epochs, 124M model")
    for field, kind in OVERRIDABLE.items():
        parser.add_argument(f"--{field.replace('_', '-')}", type=kind, default=None, help=f"override the mode's {field}")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads per arm (default: 1 with --jobs > 1, else torch's choice)"
    )
    parser.add_argument("--jobs", type=int, default=None, help="arms trained at once, one process each (default: 2 in --quick, 1 in --gpu)")
    parser.add_argument("--arms", default=None, help="comma-separated subset of arms, e.g. 'standard,goldfish k=4'")
    parser.add_argument(
        "--audit",
        action="store_true",
        help=f"also run the privacy audit on each arm, held-out documents as controls (arms default to {AUDIT_ARMS!r})",
    )
    parser.add_argument("--out", type=Path, default=None, help="work and results folder (default: experiments/results/memorization-MODE)")
    args = parser.parse_args(argv)
    mode_name = args.mode or "quick"
    changes = {field: getattr(args, field) for field in OVERRIDABLE if getattr(args, field) is not None}
    mode = dataclasses.replace(MODES[mode_name], **changes)
    work = args.out or Path(__file__).parent / "results" / f"memorization-{mode_name}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    started = time.perf_counter()
    jobs = args.jobs or (2 if mode_name == "quick" else 1)
    arms = args.arms or (AUDIT_ARMS if args.audit else None)
    results = run(mode, work, arms.split(",") if arms else None, jobs, args.threads, args.audit)
    results["seconds"] = time.perf_counter() - started
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(table(results["arms"]))
    print(f"\ncontrol (standard model, {results['control']['documents']} unseen held-out documents): "
          f"exact match {results['control']['exact_match_rate']:.1%}, token match {results['control']['token_match']:.1%}, "
          f"Rouge-L ids {results['control']['rouge_l']:.3f}")  # fmt: skip
    for row in results["arms"][1:]:
        memo = row["memorization"]
        print(f"{row['arm']}: of {memo['diverged']} generations that leave the suffix, {memo['diverged_at_dropped']} leave it "
              f"at a dropped position, {memo['diverged_at_first_dropped']} at the first one")  # fmt: skip
    if args.audit:
        print("\n" + audit_tables(results["arms"]))
    print(f"total {results['seconds']:.0f} s; raw results in {work / 'results.json'}")


def run_arm(mode: Mode, work: Path, spec: str, name: str, options: list[str], threads: int | None, audit: bool = False) -> dict[str, Any]:
    """Mask, train and measure one arm (in a worker process when arms run in parallel)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    slug = name.replace(" ", "-").replace("=", "")
    shards = work / f"shards-{slug}"
    run_cli("mask", str(work / "targets.jsonl"), "-o", str(shards), "--tokenizer", spec, *options, "-q")
    drop_rate = json.loads((shards / "goldfish_manifest.json").read_text())["counts"]["drop_rate"]
    trained = train_arm(mode, shards, work / "shards-heldout", work / f"run-{slug}")
    memorised = measure(work / f"run-{slug}", shards, mode.device)
    print(f"{name}: val loss {trained['eval_loss']:.3f}, exact match {memorised['exact_match_rate']:.1%} "
          f"({trained['seconds']:.0f} s training, {memorised['seconds']:.0f} s measuring)", file=sys.stderr, flush=True)  # fmt: skip
    row = {"arm": name, "drop_rate": drop_rate, "spec_version": spec_version(shards), "train": trained, "memorization": memorised}
    if audit:
        row["audit"] = audit_arm(work / f"run-{slug}", shards, work / "shards-heldout", mode.device, work / f"audit-{slug}")
        print(f"{name}: audit done ({row['audit']['seconds']:.0f} s)", file=sys.stderr, flush=True)
    return row


def run(mode: Mode, work: Path, arms: list[str] | None, jobs: int, threads: int | None, audit: bool = False) -> dict[str, Any]:
    spec = make_tokenizer(mode, work)
    targets, heldout = select_documents(mode, spec)
    write_jsonl(work / "targets.jsonl", targets)
    write_jsonl(work / "heldout.jsonl", heldout)
    run_cli("mask", str(work / "heldout.jsonl"), "-o", str(work / "shards-heldout"), "--tokenizer", spec, "--strategy", "none", "-q")
    chosen = [(name, options) for name, options in ARMS if arms is None or name in arms or name == "standard"]
    chosen += [(name, options) for name, options in EXTRA_ARMS if arms is not None and name in arms]
    if jobs == 1:
        rows = [run_arm(mode, work, spec, name, options, threads, audit) for name, options in chosen]
    else:
        # tiny models use a core better as one single-threaded process per arm than as two threads of one
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(run_arm, mode, work, spec, name, options, threads or 1, audit) for name, options in chosen]
            rows = [future.result() for future in futures]
    control = measure(work / "run-standard", work / "shards-heldout", mode.device)
    return {
        "mode": dataclasses.asdict(mode),
        "tokenizer": spec,
        "targets": len(targets),
        "heldout": len(heldout),
        "arms": rows,
        "control": control,
    }


if __name__ == "__main__":
    main()
