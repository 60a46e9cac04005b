"""The sampling extraction attack: draw many continuations, keep the best.

Greedy decoding and beam search find the *most likely* continuation; an
attacker with API access can also sample it many times. A document counts as
extracted when at least one of ``samples`` continuations of its prefix equals
its suffix verbatim; the best Rouge-L among them says how close the attacker
came otherwise. Continuations of one prefix are drawn as one batch (the prefix
is read once, its cache shared by every sample).

Reproducible: each document's samples come from a generator seeded with the
audit's seed and the document's index, so a document gets the same samples
whatever other documents are measured (on the same device and torch build).
"""

from __future__ import annotations

import dataclasses

import torch

from goldfish_prep.errors import ConfigError
from goldfish_prep.train.causal_lm import CausalLM
from goldfish_prep.train.generate import sample
from goldfish_prep.train.rouge import rouge_l


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    samples: int = 20
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ConfigError(f"--samples must be at least 1, got {self.samples}")
        if not self.temperature > 0:
            raise ConfigError(f"--temperature must be above 0, got {self.temperature}")
        if self.top_k is not None and self.top_p is not None:
            raise ConfigError("--top-k and --top-p both truncate the distribution; pass one of them")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"--top-k must be at least 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ConfigError(f"--top-p must lie in (0, 1], got {self.top_p}")


@dataclasses.dataclass(frozen=True)
class SampledDocument:
    #: at least one sample reproduces the suffix verbatim
    extracted: bool
    #: the best id-level Rouge-L of a sample against the suffix
    best_rouge_l: float
    samples: list[list[int]]


def document_seed(seed: int, index: int) -> int:
    """The generator seed of document ``index``: distinct per document, stable across runs.

    >>> document_seed(0, 3) != document_seed(1, 3) and document_seed(0, 3) == document_seed(0, 3)
    True
    """
    return (seed * 1_000_003 + index) % 2**63


def sample_document(model: CausalLM, prefix: list[int], suffix: list[int], config: SamplingConfig, index: int) -> SampledDocument:
    """``config.samples`` continuations of ``prefix``, each as long as ``suffix``, scored against it."""
    generator = torch.Generator(device=model.device).manual_seed(document_seed(config.seed, index))
    drawn = sample(model, prefix, len(suffix), config.samples, config.temperature, config.top_k, config.top_p, generator)
    return SampledDocument(
        extracted=any(s == suffix for s in drawn),
        best_rouge_l=max(rouge_l(s, suffix).fmeasure for s in drawn),
        samples=drawn,
    )
