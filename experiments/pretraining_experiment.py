"""The paper's pretraining setting at small scale: targets hidden in a real background corpus, ~1 epoch.

Hans et al. (2024), second experiment: a model pretrained on a large corpus in
which some target documents occur many times. Standard loss memorises the
targets; goldfish loss (k = 4) keeps their memorisation at the level of
documents the model never saw, while validation loss stays close to standard,
when both are trained on the same number of *supervised* tokens.

Here, with the bundled trainer on CPU:

1. background: real text present on every Debian machine with Python: the
   Python standard library's sources, /usr/share/common-licenses and the Debian
   copyright files (files holding a target or control paragraph, or any 8-word
   passage of one, are left out); 3% of the background files are held out for
   validation loss;
2. targets: distinct copyright paragraphs, each inserted ``--insertions`` times
   as a document at fixed pseudo-random places; controls: as many paragraphs of
   the same kind that never enter training;
3. ``mask`` the corpus per arm (``none``, ``goldfish`` k=4, ``robust`` k=4);
   ``train`` the standard arm for ``--epochs`` (about one), the others to the
   standard arm's supervised tokens (``--max-supervised-tokens``);
4. ``memorization`` of targets and controls: exact match, token match, and the
   Rouge-L distribution; validation loss on the held-out files;
5. with ``--audit``, the privacy audit of ``memorization --controls`` on each arm
   (the controls as controls, the targets masked as the arm masked its corpus, so
   that the mask-aware attacker reads the arm's rule): every membership attack,
   plain and mask-aware with the manifest's seed and a wrong one, sampling
   extraction at T = 0.7 and 1.0 with N = 20, distinct-n, and a picture per arm.

    python experiments/pretraining_experiment.py --quick     # CPU, 2 cores: ~1.7 M background tokens, 16 targets x 300
    python experiments/pretraining_experiment.py --full      # ~7 M background tokens, 32 targets x 300
    python experiments/pretraining_experiment.py --quick --equal-input --seed 1 --out experiments/results/seed1
    python experiments/pretraining_experiment.py --quick --source pydoc          # prose targets
    python experiments/pretraining_experiment.py --quick --audit --threads 1   # docs/audit.md
    python experiments/pretraining_experiment.py --full --preset 124m --device cuda --equal-input   # a GPU
    python experiments/pretraining_experiment.py --summarise experiments/results/seed0 experiments/results/seed1
    python experiments/pretraining_experiment.py --analyse experiments/results/pretraining-quick   # a run made before the divergence figures
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import multiprocessing
import random
import re
import shutil
import sys
import sysconfig
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _audit_common import audit_arm, spec_version  # noqa: E402
from memorization_experiment import MODES, make_tokenizer, run_cli, select_documents, write_jsonl  # noqa: E402
from pretraining_report import EQUAL_INPUT, arm_slug, run_tables, summarise  # noqa: E402


def arms(k: int, strategies: tuple[str, ...] = ("goldfish", "robust"), context_width: int | None = None) -> list[tuple[str, list[str]]]:
    """The arms: standard loss, and each masking strategy at ``k`` (and ``context_width``, the mask's h)."""
    h = ([f" h={context_width}"], ["--context-width", str(context_width)]) if context_width else ([""], [])
    return [("standard", ["--strategy", "none"])] + [
        (f"{strategy} k={k}{h[0][0]}", ["--strategy", strategy, "--k", str(k), *h[1]]) for strategy in strategies
    ]


@dataclasses.dataclass(frozen=True)
class Setting:
    background_chars: int
    targets: int
    insertions: int
    epochs: float
    controls: int = 32
    #: the training seed (initialisation and document order); the corpus is the same for every seed
    seed: int = 0
    block_size: int = 256
    # small batches: a target's share of each update is 1/batch_size of it, and the tiny model
    # memorises nothing at batch 16 (see docs/near-duplicates.md for the runs that showed it)
    batch_size: int = 2
    learning_rate: float = 5e-3
    #: where targets and controls come from (see memorization_experiment.SOURCES)
    source: str = "copyright"
    #: the model (``train --preset``) and where it trains and is measured
    preset: str = "tiny"
    device: str = "cpu"


SETTINGS = {
    "quick": Setting(background_chars=4_000_000, targets=16, insertions=300, epochs=1.0),
    "full": Setting(background_chars=16_000_000, targets=32, insertions=300, epochs=1.0),
}


def shingles(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + 8]) for i in range(len(words) - 7)}


def background(limit_chars: int, avoid: list[str]) -> list[str]:
    """Real files up to ``limit_chars`` in a fixed order (stdlib sources, licences, copyrights), none sharing an
    8-word passage with ``avoid``."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(stdlib.glob("*.py")) + sorted(stdlib.glob("*/*.py"))
    files += [Path(p) for p in sorted(glob.glob("/usr/share/common-licenses/*")) + sorted(glob.glob("/usr/share/doc/*/copyright"))]
    banned = set().union(*(shingles(t) for t in avoid))
    rng = random.Random(0)
    rng.shuffle(files)
    texts, total = [], 0
    for path in files:
        if path.is_dir() or "test" in path.parts:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if not text.strip() or shingles(text) & banned:
            continue
        texts.append(text)
        total += len(text)
        if total >= limit_chars:
            break
    return texts


def build(setting: Setting, work: Path, spec: str) -> dict[str, Any]:
    mode = dataclasses.replace(MODES["quick"], num_targets=setting.targets, num_heldout=setting.controls)
    if setting.source == "pydoc":  # prose packs fewer characters per id of a BPE trained on licences: longer paragraphs fit
        mode = dataclasses.replace(mode, max_chars=1400)
    targets, controls = select_documents(mode, spec, setting.source)
    texts = background(setting.background_chars, targets + controls)
    held = max(1, len(texts) * 3 // 100)
    heldout, train = texts[:held], texts[held:]
    rng = random.Random(1)
    corpus = list(train)
    for _ in range(setting.insertions):
        for target in targets:
            corpus.insert(rng.randrange(len(corpus) + 1), target)
    write_jsonl(work / "corpus.jsonl", corpus)
    write_jsonl(work / "heldout.jsonl", heldout)
    write_jsonl(work / "targets.jsonl", targets)
    write_jsonl(work / "controls.jsonl", controls)
    for name in ("heldout", "targets", "controls"):
        run_cli("mask", str(work / f"{name}.jsonl"), "-o", str(work / f"shards-{name}"), "--tokenizer", spec, "--strategy", "none", "-q")
    return {"background_files": len(train), "heldout_files": len(heldout), "corpus_documents": len(corpus)}


def run_arm(
    setting: Setting, work: Path, spec: str, name: str, options: list[str], supervised: int | None, threads: int = 1, audit: bool = False
) -> dict[str, Any]:
    import torch

    from goldfish_prep.train.config import TrainConfig
    from goldfish_prep.train.trainer import train

    torch.set_num_threads(threads)
    slug = arm_slug(name)
    shards = work / f"shards-{slug}"
    run_cli("mask", str(work / "corpus.jsonl"), "-o", str(shards), "--tokenizer", spec, *options, "-q")
    counts = json.loads((shards / "goldfish_manifest.json").read_text())["counts"]
    duration: dict[str, Any] = {"epochs": setting.epochs} if supervised is None else {"max_supervised_tokens": supervised}
    config = TrainConfig(
        data=shards, run_dir=work / f"run-{slug}", preset=setting.preset, block_size=setting.block_size, batch_size=setting.batch_size,
        learning_rate=setting.learning_rate, eval_data=work / "shards-heldout", device=setting.device, log_interval=100, overwrite=True, seed=setting.seed,
        **duration,
    )  # fmt: skip
    result = train(config)
    torch.set_num_threads(1)  # measuring is one id at a time: a second thread only waits on a busy machine
    row = {"arm": name, "options": options, "tokens": counts["tokens"], "drop_rate": counts["drop_rate"], "steps": result.steps,
           "trained_tokens": result.tokens, "supervised_tokens": result.supervised_tokens, "eval_loss": result.eval_loss,
           "seconds": result.seconds, "targets": masked_memorisation(work, spec, name, options, "targets", setting.device),
           "controls": masked_memorisation(work, spec, name, options, "controls", setting.device)}  # fmt: skip
    print(f"{name}: val loss {result.eval_loss:.4f}, targets exact {row['targets']['exact_matches']}, "
          f"Rouge-L median {row['targets']['rouge_l_median']:.3f} ({result.seconds:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
    if audit:  # the targets masked as this arm masked them: the manifest gives the mask-aware attacker the rule
        targets = work / f"shards-targets-{slug}"
        row["spec_version"] = spec_version(targets)
        row["audit"] = audit_arm(work / f"run-{slug}", targets, work / "shards-controls", setting.device, work / f"audit-{slug}")
        print(f"{name}: audit done ({row['audit']['seconds']:.0f} s)", file=sys.stderr, flush=True)
    return row


def masked_memorisation(work: Path, spec: str, name: str, options: list[str], which: str, device: str = "cpu") -> dict[str, Any]:
    """Memorisation of the targets (or controls), measured on them masked as the arm masked its corpus.

    The continuations depend on the ids only, so exact match and Rouge-L are those of the plain
    documents; the labels add where each continuation leaves its document against the arm's mask,
    and the teacher-forced accuracy at dropped and kept positions. On the controls, which the
    model never saw, that accuracy is what the language alone gives at such positions.
    """
    shards = work / f"shards-{which}-{arm_slug(name)}"
    run_cli("mask", str(work / f"{which}.jsonl"), "-o", str(shards), "--tokenizer", spec, *options, "-q", "--overwrite")
    return memorisation(work / f"run-{arm_slug(name)}", shards, device)


def memorisation(run: Path, shards: Path, device: str = "cpu") -> dict[str, Any]:
    import numpy as np

    from goldfish_prep.train.causal_lm import load_causal_lm
    from goldfish_prep.train.memorization import measure_memorization, text_decoder
    from goldfish_prep.train.rouge import rouge_l

    decode, _ = text_decoder(shards)
    report = measure_memorization(load_causal_lm(run, device), shards, decode=decode)
    # every generation, for analyses after the run
    (run / f"memorization-{shards.name}.json").write_text(json.dumps(report.to_dict()) + "\n", encoding="utf-8")
    scores = np.array([d.rouge_l for d in report.documents])
    summary: dict[str, Any] = report.summary()
    summary.update(
        {f"rouge_l_{name}": float(np.quantile(scores, q)) for name, q in (("p10", 0.1), ("median", 0.5), ("p90", 0.9), ("max", 1.0))}
    )
    # what the continuation shares with the target *after* leaving it: a model that falls back into the
    # text after a wrong id scores above unseen text here, one that wanders off does not
    after = [rouge_l(d.generated[d.first_divergence :], d.suffix[d.first_divergence :]).fmeasure
             for d in report.documents if d.first_divergence is not None]  # fmt: skip
    summary["rouge_l_after_divergence_median"] = float(np.median(after)) if after else None
    return summary


def analyse(work: Path) -> dict[str, Any]:
    """Measure the targets of a finished run again, on masked targets (runs made before the divergence figures)."""
    results = json.loads((work / "results.json").read_text(encoding="utf-8"))
    spec = str(work / "bpe-4096.json")
    for row in results["arms"]:
        options = row.get("options") or _options_of(row["arm"])
        row["options"] = options
        row["targets"] = masked_memorisation(work, spec, row["arm"], options, "targets")
        row["controls"] = masked_memorisation(work, spec, row["arm"], options, "controls")
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


def _options_of(name: str) -> list[str]:
    """The mask options of an arm named as ``arms`` names them."""
    if name == "standard":
        return ["--strategy", "none"]
    strategy, k, h = re.match(r"(\w+) k=(\d+)(?: h=(\d+))?", name).groups()  # type: ignore[union-attr]
    return ["--strategy", strategy, "--k", k] + (["--context-width", h] if h else [])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_const", const="quick", dest="setting", help="CPU, 2 cores (default)")
    parser.add_argument("--full", action="store_const", const="full", dest="setting", help="about 4x the background")
    parser.add_argument("--background-chars", type=int, default=None)
    parser.add_argument("--insertions", type=int, default=None)
    parser.add_argument("--epochs", type=float, default=None)
    parser.add_argument("--targets", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument(
        "--source", choices=("copyright", "pydoc"), default=None,
        help="targets and controls: Debian copyright paragraphs (default) or Python reference prose (pydoc_data)",
    )  # fmt: skip
    parser.add_argument("--preset", choices=("tiny", "small", "124m"), default=None, help="the model (default: tiny)")
    parser.add_argument("--device", default=None, help="cpu (default) or cuda")
    parser.add_argument("--k", type=int, default=4, help="k of the goldfish and robust arms")
    parser.add_argument("--context-width", type=int, default=None, help="h of the masked arms' hash (default: the strategy's, 13)")
    parser.add_argument("--strategies", default="goldfish,robust", help="the masked arms, comma-separated (default: goldfish,robust)")
    parser.add_argument("--seed", type=int, default=None, help="training seed (the corpus stays the same)")
    parser.add_argument(
        "--equal-input", action="store_true", help="also train the masked arms for the standard arm's epochs (each target seen as often)"
    )
    parser.add_argument(
        "--audit",
        action="store_true",
        help="also run the privacy audit on each arm, the controls as controls (tables: pretraining_report.py DIR)",
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads of the standard arm, trained alone (default 2; 1 on a busy machine)"
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--analyse", type=Path, metavar="DIR", help="measure a finished run's targets again, against each arm's mask")
    parser.add_argument("--summarise", type=Path, nargs="+", metavar="DIR", help="one table over several finished runs (seeds)")
    args = parser.parse_args(argv)
    if args.summarise:
        print(summarise(args.summarise))
        return
    if args.analyse:
        print(run_tables(analyse(args.analyse)["arms"]))
        return
    name = args.setting or "quick"
    knobs = ("background_chars", "insertions", "epochs", "targets", "batch_size", "learning_rate", "seed", "source", "preset", "device")
    changes = {k: getattr(args, k) for k in knobs if getattr(args, k) is not None}
    setting = dataclasses.replace(SETTINGS[name], **changes)
    work = args.out or Path(__file__).parent / "results" / f"pretraining-{name}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    started = time.perf_counter()
    spec = make_tokenizer(MODES["quick"], work)
    corpus = build(setting, work, spec)
    print(f"corpus: {corpus} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    chosen = arms(args.k, tuple(args.strategies.split(",")), args.context_width)
    standard = run_arm(setting, work, spec, *chosen[0], None, threads=args.threads, audit=args.audit)  # alone: both cores
    masked = [(arm, options, standard["supervised_tokens"]) for arm, options in chosen[1:]]
    if args.equal_input:
        masked += [(arm + EQUAL_INPUT, options, None) for arm, options in chosen[1:]]
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [
            pool.submit(run_arm, setting, work, spec, arm, options, supervised, 1, args.audit) for arm, options, supervised in masked
        ]
        rows = [standard, *(future.result() for future in futures)]
    results = {"setting": dataclasses.asdict(setting), "corpus": corpus, "arms": rows, "seconds": time.perf_counter() - started}
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(run_tables(rows))
    print(f"total {results['seconds']:.0f} s; raw results in {work / 'results.json'}")


if __name__ == "__main__":
    main()
