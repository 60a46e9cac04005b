"""``robust`` against ``goldfish``: kernel and pipeline throughput, side by side in one run.

Corpus: every Debian copyright file and licence (about 16 MB, 4.3 M cl100k
tokens), each file one document; ``--scale N`` masks N copies of it instead,
written once as JSON lines (N x 16 MB), for whole processes long enough that
start-up costs weigh as they would on a real corpus.

- kernel: ``mask_documents`` on the same ids, one core: goldfish, robust with
  the numpy kernel, robust compiled by numba, robust compiled as LLVM IR
  (llvmlite, the default). Best of ``--repeats`` rounds, alternating, in CPU
  seconds (``time.process_time``) and wall seconds.
- pipeline: ``mask`` in this process (tokenizing, masking, writing; tables and
  kernels already loaded), goldfish and robust (default kernel) alternating.
- process: ``goldfish-prep mask`` as a whole new process each time, goldfish
  and robust alternating (start-up, table loading and the kernel's start
  included), wall seconds and the children's CPU seconds; robust with the
  default kernel (``auto``: the llvmlite scan), with numba's (``compiled``)
  and with numpy's.

Both strategies run at their default spec version (printed first; v2 for both
since issue 27 covers document heads). Ratios are robust's speed over
goldfish's, from rounds run back to back: on a shared machine the absolute
figures move with the load, the paired ratios much less. Each ratio is printed
as the median over rounds of (goldfish time / robust time) and as best / best.

    python bench/robust_throughput.py --repeats 5
    python bench/robust_throughput.py --repeats 3 --scale 4 --only process
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from goldfish_prep import MaskConfig, mask_documents  # noqa: E402
from goldfish_prep.strategies.robust_compiled import KERNEL_VARIABLE  # noqa: E402
from goldfish_prep.tokenizers import load_tokenizer  # noqa: E402
from goldfish_prep.tokenizers.token_bytes import extras_for, token_bytes  # noqa: E402

Timings = dict[str, list[tuple[float, float]]]  # per variant: (wall, cpu) of each round


def corpus_files() -> list[str]:
    return sorted(glob.glob("/usr/share/doc/*/copyright")) + sorted(glob.glob("/usr/share/common-licenses/*"))


def rounds(variants: dict[str, Callable[[], float | None]], repeats: int) -> Timings:
    """Run every variant once per round, in turn; a variant returns its CPU seconds, or None for this process's."""
    timings: Timings = {name: [] for name in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            wall, cpu = time.perf_counter(), time.process_time()
            child_cpu = run()
            timings[name].append((time.perf_counter() - wall, child_cpu if child_cpu is not None else time.process_time() - cpu))
    return timings


def report(title: str, timings: Timings, work: float, unit: str) -> None:
    """Speeds (best round) and each variant's speed over goldfish's (median of paired rounds; best over best)."""
    print(f"\n{title}")
    base = timings["goldfish"]
    for name, runs in timings.items():
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        line = f"  {name:<18} {work / min(walls):10,.2f} {unit} wall {work / min(cpus):10,.2f} {unit} CPU"
        if name != "goldfish":
            wall_ratio = statistics.median(g[0] / r[0] for g, r in zip(base, runs))
            cpu_ratio = statistics.median(g[1] / r[1] for g, r in zip(base, runs))
            best = min(w for w, _ in base) / min(walls)
            line += f"   x goldfish: wall {wall_ratio:.2f} (best/best {best:.2f}), CPU {cpu_ratio:.2f}"
        print(line)


def kernel(repeats: int) -> None:
    tokenizer = load_tokenizer("cl100k_base")
    docs = tokenizer.encode_batch([Path(p).read_text(errors="replace") for p in corpus_files()])
    ids = np.concatenate(docs)
    starts = np.concatenate([[0], np.cumsum([len(d) for d in docs])[:-1]]).astype(np.int64)
    table = token_bytes(tokenizer)

    def mask(strategy: str, engine: str | None = None) -> Callable[[], None]:
        config = MaskConfig(strategy=strategy)

        def run() -> None:
            if engine:
                os.environ[KERNEL_VARIABLE] = engine
            mask_documents(ids, starts, config, extras_for(config, table, len(starts)))

        return run

    variants: dict[str, Callable[[], float | None]] = {
        "goldfish": mask("goldfish"),
        "robust numpy": mask("robust", "numpy"),
        "robust numba": mask("robust", "compiled"),
        "robust llvm": mask("robust", "llvm"),
    }
    for run in variants.values():
        run()  # tables built, kernels loaded
    report(f"kernel: mask_documents, {len(ids):,} tokens, one core", rounds(variants, repeats), len(ids) / 1e6, "M tok/s")


def mask_arguments(inputs: list[str]) -> list[str]:
    return ["mask", *inputs, "--assume-format", "text", "-q"]


def pipeline(repeats: int, inputs: list[str], size: int) -> None:
    from click.testing import CliRunner

    from goldfish_prep_cli.main import cli

    work = Path(tempfile.mkdtemp(prefix="robust-bench-"))

    def mask(strategy: str) -> Callable[[], None]:
        def run() -> None:
            out = work / strategy
            shutil.rmtree(out, ignore_errors=True)
            result = CliRunner().invoke(cli, [*mask_arguments(inputs), "-o", str(out), "--strategy", strategy])
            assert result.exit_code == 0, result.output

        return run

    os.environ[KERNEL_VARIABLE] = "auto"
    variants: dict[str, Callable[[], float | None]] = {"goldfish": mask("goldfish"), "robust": mask("robust")}
    try:
        for run in variants.values():
            run()
        report("pipeline: mask in this process (tables and kernels loaded)", rounds(variants, repeats), size / 1e6, "MB/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def process(repeats: int, inputs: list[str], size: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="robust-bench-"))
    command = [sys.executable, "-c", "from goldfish_prep_cli.main import main; main()", *mask_arguments(inputs)]

    def mask(strategy: str, engine: str) -> Callable[[], float]:
        def run() -> float:
            out = work / strategy
            shutil.rmtree(out, ignore_errors=True)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            environment = os.environ | {KERNEL_VARIABLE: engine}
            subprocess.run([*command, "-o", str(out), "--strategy", strategy], check=True, env=environment, stdout=subprocess.DEVNULL)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

        return run

    variants: dict[str, Callable[[], float | None]] = {
        "goldfish": mask("goldfish", "auto"),
        "robust": mask("robust", "auto"),
        "robust numba": mask("robust", "compiled"),
        "robust numpy": mask("robust", "numpy"),
    }
    try:
        for run in variants.values():
            run()  # file cache warm, kernels' disk caches filled
        report("process: goldfish-prep mask, a new process each time (robust: auto = llvm)", rounds(variants, repeats), size / 1e6, "MB/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def scaled_corpus(copies: int, folder: Path) -> tuple[list[str], int]:
    """The corpus as JSON lines, ``copies`` times over (one file), and its size in bytes of text."""
    texts = [Path(p).read_text(errors="replace") for p in corpus_files()]
    path = folder / f"corpus-x{copies}.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for _ in range(copies):
            for text in texts:
                if text.strip():
                    out.write(json.dumps({"text": text}) + "\n")
    return [str(path)], path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale", type=int, default=1, help="mask this many copies of the corpus (JSON lines) in pipeline and process")
    parser.add_argument("--only", choices=["kernel", "pipeline", "process"], action="append", help="run only these parts (repeatable)")
    args = parser.parse_args()
    parts = args.only or ["kernel", "pipeline", "process"]
    folder = Path(tempfile.mkdtemp(prefix="robust-corpus-"))
    try:
        if args.scale > 1:
            inputs, size = scaled_corpus(args.scale, folder)
        else:
            inputs = corpus_files()
            size = sum(Path(p).stat().st_size for p in inputs)
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; corpus {size / 1e6:.1f} MB")
        versions = {name: MaskConfig(strategy=name).spec_version for name in ("goldfish", "robust")}
        print(f"spec versions (the defaults): goldfish v{versions['goldfish']}, robust v{versions['robust']}")
        if "kernel" in parts:
            kernel(args.repeats)
        if "pipeline" in parts:
            pipeline(args.repeats, inputs, size)
        if "process" in parts:
            process(args.repeats, inputs, size)
        print(f"\nload average {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
