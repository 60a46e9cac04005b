"""What covering document heads costs: the masking core under spec v2 against v1, side by side.

Spec v2 adds one pass over each document's first h positions (``goldfish``) or
a partial-window term (``robust``) to v1's kernel. The cost shows where heads
are many: the same cl100k ids masked as whole files and as one document per
non-empty line. Timings are the best of ``--repeats`` alternated runs of
``mask_documents`` alone (tokenizing and writing excluded), as ratios v2 / v1.

    python bench/spec_version_speed.py
"""

from __future__ import annotations

import argparse
import glob
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()

    from goldfish_prep import MaskConfig, mask_documents
    from goldfish_prep.tokenizers import load_tokenizer
    from goldfish_prep.tokenizers.token_bytes import extras_for, token_bytes

    tokenizer = load_tokenizer("cl100k_base")
    table = token_bytes(tokenizer)
    files = [Path(p).read_text(encoding="utf-8", errors="replace") for p in sorted(glob.glob("/usr/share/doc/*/copyright"))]
    corpora = {"whole files": files, "one document per line": [line for text in files for line in text.splitlines() if line.strip()]}
    for label, texts in corpora.items():
        pieces = tokenizer.encode_batch(texts)
        ids = np.concatenate(pieces).astype(np.int64)
        starts = np.concatenate([[0], np.cumsum([len(p) for p in pieces])[:-1]]).astype(np.int64)
        heads = int(np.minimum([len(p) for p in pieces], 13).sum())
        print(f"{label}: {len(texts):,} documents, {len(ids):,} tokens, {heads / len(ids):.0%} of them in a document's first 13")
        for strategy in ("goldfish", "robust"):
            best = {}
            for _ in range(args.repeats):
                for version in (1, 2):
                    config = MaskConfig(strategy=strategy, spec_version=version)
                    extras = extras_for(config, table, len(starts))
                    started = time.perf_counter()
                    mask_documents(ids, starts, config, extras)
                    best[version] = min(best.get(version, float("inf")), time.perf_counter() - started)
            print(f"  {strategy}: v1 {best[1] * 1e3:.0f} ms, v2 {best[2] * 1e3:.0f} ms, v2 / v1 = {best[2] / best[1]:.2f}")


if __name__ == "__main__":
    main()
