"""``robust`` against ``goldfish``: kernel and pipeline throughput, side by side in one run.

Kernel: the mask of the same real cl100k ids (Debian copyright files and
licences, concatenated in documents of their files), one core, best of
``--repeats`` rounds alternating the two strategies. Pipeline: ``mask`` on the
same files with ``--strategy goldfish`` and ``--strategy robust`` (tokenizing,
masking, writing), alternating, best of ``--repeats``.

    python bench/robust_throughput.py
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from goldfish_prep import MaskConfig, mask_documents  # noqa: E402
from goldfish_prep.tokenizers import load_tokenizer  # noqa: E402
from goldfish_prep.tokenizers.token_bytes import extras_for, token_bytes  # noqa: E402


def corpus_files() -> list[str]:
    return sorted(glob.glob("/usr/share/doc/*/copyright")) + sorted(glob.glob("/usr/share/common-licenses/*"))


def kernel(repeats: int) -> dict[str, float]:
    tokenizer = load_tokenizer("cl100k_base")
    docs = tokenizer.encode_batch([Path(p).read_text(errors="replace") for p in corpus_files()])
    ids = np.concatenate(docs)
    starts = np.concatenate([[0], np.cumsum([len(d) for d in docs])[:-1]]).astype(np.int64)
    table = token_bytes(tokenizer)
    best = {"goldfish": float("inf"), "robust": float("inf")}
    for _ in range(repeats):
        for strategy in best:
            started = time.perf_counter()
            config = MaskConfig(strategy=strategy)
            mask_documents(ids, starts, config, extras_for(config, table, len(starts)))
            best[strategy] = min(best[strategy], time.perf_counter() - started)
    return {f"{s} kernel M tok/s": len(ids) / t / 1e6 for s, t in best.items()} | {"tokens": float(len(ids))}


def pipeline(repeats: int) -> dict[str, float]:
    from click.testing import CliRunner

    from goldfish_prep_cli.main import cli

    files = corpus_files()
    size = sum(Path(p).stat().st_size for p in files)
    best = {"goldfish": float("inf"), "robust": float("inf")}
    work = Path(tempfile.mkdtemp(prefix="robust-bench-"))
    try:
        for _ in range(repeats):
            for strategy in best:
                out = work / strategy
                shutil.rmtree(out, ignore_errors=True)
                started = time.perf_counter()
                result = CliRunner().invoke(cli, ["mask", *files, "--assume-format", "text", "-o", str(out), "-q", "--strategy", strategy])
                assert result.exit_code == 0, result.output
                best[strategy] = min(best[strategy], time.perf_counter() - started)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {f"{s} pipeline MB/s": size / t / 1e6 for s, t in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    figures = kernel(args.repeats) | pipeline(args.repeats)
    for name, value in figures.items():
        print(f"{name:>28}: {value:,.2f}")
    print(f"{'robust / goldfish, kernel':>28}: {figures['robust kernel M tok/s'] / figures['goldfish kernel M tok/s']:.2f}")
    print(f"{'robust / goldfish, pipeline':>28}: {figures['robust pipeline MB/s'] / figures['goldfish pipeline MB/s']:.2f}")


if __name__ == "__main__":
    main()
