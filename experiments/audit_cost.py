"""The audit's cost per document, each part timed alone on one thread: membership scores, greedy, sampling.

Reads a finished ``pretraining_experiment.py --audit`` run: the arm's model, its masked targets
and the controls. The figures of docs/audit.md ("Cost"):

    python experiments/audit_cost.py experiments/results/pretraining-audit goldfish-k4
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch

from goldfish_prep.audit.sampling import SamplingConfig, sample_document
from goldfish_prep.audit.token_stats import scored_window, token_stats
from goldfish_prep.train.causal_lm import load_causal_lm
from goldfish_prep.train.data import Document
from goldfish_prep.train.generate import greedy
from goldfish_prep.train.memorization import MemorizationConfig, prefix_and_suffix, select_documents


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a pretraining_experiment.py --audit output folder")
    parser.add_argument("arm", help="the arm's folder name, e.g. goldfish-k4")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = load_causal_lm(args.run / f"run-{args.arm}", "cpu")
    config = MemorizationConfig()
    documents = select_documents(model, args.run / f"shards-targets-{args.arm}", config)[0]
    documents += select_documents(model, args.run / "shards-controls", config)[0]

    def per_document(part: Callable[[int, Document], object]) -> float:
        started = time.perf_counter()
        for index, document in enumerate(documents):
            part(index, document)
        return (time.perf_counter() - started) / len(documents)

    def split(document: Document) -> tuple[list[int], list[int]]:
        return prefix_and_suffix(document, config, model.context_length)

    scores = per_document(lambda i, d: token_stats(model, scored_window(d.ids.tolist(), model.context_length)))
    greedy_s = per_document(lambda i, d: greedy(model, split(d)[0], len(split(d)[1])))
    sampling = SamplingConfig(samples=20, temperature=1.0)
    sampled = per_document(lambda i, d: sample_document(model, *split(d), sampling, i))
    mean_ids = sum(len(d.ids) for d in documents) / len(documents)
    print(f"{len(documents)} documents, {mean_ids:.0f} ids on average; per document: membership scores (one forward pass) "
          f"{scores * 1000:.1f} ms, greedy 50 ids {greedy_s * 1000:.1f} ms, 20 samples x 50 ids {sampled * 1000:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
