"""What masks and writing add to tokenization: the whole ``mask`` command against the tokenizer alone.

Both sides run as separate processes on one core over the same real corpus (every
Debian copyright file and common licence as JSON lines, about 15 MB): side A is
``goldfish-prep mask`` (read, tokenize, mask, write Arrow shards, manifest);
side B reads the same JSON lines and tokenizes them with the same adapter and
batch size, and writes nothing. Runs alternate A B A B; the figure is the median
of the per-pair ratios A/B. Goal: at most 1.10.

    python bench/pipeline_overhead.py                  # default tokenizer (cl100k_base), 5 pairs
    python bench/pipeline_overhead.py --copies 4 --pairs 3        # 72 MB: start-up costs amortised
    python bench/pipeline_overhead.py --tokenizer /path/tokenizer.model --pairs 3
"""

from __future__ import annotations

import argparse
import glob
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOKENIZE_ONLY = """
import json, sys
from goldfish_prep.tokenizers import load_tokenizer
tokenizer = load_tokenizer(sys.argv[2])
batch, total = [], 0
with open(sys.argv[1], "rb") as handle:
    for line in handle:
        batch.append(json.loads(line)["text"])
        if len(batch) == 256:
            total += sum(len(ids) for ids in tokenizer.encode_batch(batch)); batch = []
total += sum(len(ids) for ids in tokenizer.encode_batch(batch))
print(total)
"""


def build_corpus(folder: Path, copies: int) -> Path:
    """The real texts as JSON lines, ``copies`` times over (a larger corpus shows the per-token cost)."""
    paths = sorted(glob.glob("/usr/share/doc/*/copyright")) + sorted(glob.glob("/usr/share/common-licenses/*"))
    lines = [json.dumps({"text": Path(path).read_text(encoding="utf-8", errors="replace")}) + "\n" for path in paths]
    corpus = folder / "corpus.jsonl"
    with open(corpus, "w", encoding="utf-8") as handle:
        for _ in range(copies):
            handle.writelines(lines)
    return corpus


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        command,
        check=True,
        stdout=subprocess.DEVNULL,
        env={"OMP_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", default="cl100k_base")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--copies", type=int, default=1, help="repeat the corpus this many times")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        corpus = build_corpus(folder, args.copies)
        corpus_mb = corpus.stat().st_size / 1e6
        out = folder / "out"
        mask = [
            sys.executable,
            "-m",
            "goldfish_prep_cli",
            "mask",
            str(corpus),
            "-o",
            str(out),
            "-q",
            "--overwrite",
            "--tokenizer",
            args.tokenizer,
        ]
        alone = [sys.executable, "-c", TOKENIZE_ONLY, str(corpus), args.tokenizer]
        timed(mask), timed(alone)  # warm-up: page cache, compiled regexes
        pairs = []
        for _ in range(args.pairs):
            a, b = timed(mask), timed(alone)
            pairs.append((a, b))
        manifest = json.loads((out / "goldfish_manifest.json").read_text())
        shutil.rmtree(out)
    tokens = manifest["counts"]["tokens"]
    ratios = [a / b for a, b in pairs]
    print(
        f"corpus: {corpus_mb:.1f} MB, {manifest['counts']['documents_written']:,} documents, {tokens:,} tokens, tokenizer {args.tokenizer}"
    )
    print(
        f"mask (whole command)   median {statistics.median(a for a, _ in pairs):.2f} s  ({tokens / statistics.median(a for a, _ in pairs) / 1e6:.2f} M tok/s)"
    )
    print(f"tokenizer alone        median {statistics.median(b for _, b in pairs):.2f} s")
    print(
        f"ratio mask / tokenizer median {statistics.median(ratios):.3f}  (min {min(ratios):.3f}, max {max(ratios):.3f}) over {len(pairs)} pairs"
    )


if __name__ == "__main__":
    main()
