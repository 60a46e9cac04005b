"""Diversity of generated text: distinct-n and repetition, over token ids.

The goldfish paper claims its models write as well as standard ones; a model
that memorised its training set instead tends to fall into the same phrases
whatever the prompt. Measured on continuations of prefixes the model never saw
(the controls'), over ids so that no tokenizer is needed:

- **distinct-n** (Li et al. 2016): distinct n-grams over all n-grams, pooled over
  every continuation. A model that writes the same thing after different
  prompts scores low. It falls as more text is pooled, so compare models on the
  same prefixes and lengths only.
- **repetition rate** (seq-rep-4, Welleck et al. 2020): per continuation, the share
  of its 4-grams that repeat an earlier one of the same continuation, averaged
  over continuations: degenerate loops score near 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def ngrams(ids: Sequence[int], n: int) -> list[tuple[int, ...]]:
    """The n-grams of one sequence, in order.

    >>> ngrams([1, 2, 3], 2)
    [(1, 2), (2, 3)]
    """
    return [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]


def distinct_n(continuations: Sequence[Sequence[int]], n: int) -> float:
    """Distinct n-grams / all n-grams, pooled over ``continuations`` (NaN when none has n ids).

    >>> distinct_n([[1, 2, 1, 2], [1, 2, 3]], 2)  # (1,2) x3, (2,1), (2,3): 3 distinct of 5
    0.6
    """
    pooled = [gram for ids in continuations for gram in ngrams(ids, n)]
    return len(set(pooled)) / len(pooled) if pooled else math.nan


def repetition_rate(continuations: Sequence[Sequence[int]], n: int = 4) -> float:
    """Mean over continuations of 1 - distinct n-grams / n-grams within each (NaN when none has n ids).

    >>> repetition_rate([[7, 7, 7, 7, 7], [1, 2, 3, 4, 5]], n=2)  # 3 of 4 bigrams repeat; none
    0.375
    """
    rates = []
    for ids in continuations:
        grams = ngrams(ids, n)
        if grams:
            rates.append(1.0 - len(set(grams)) / len(grams))
    return sum(rates) / len(rates) if rates else math.nan


def diversity(continuations: Sequence[Sequence[int]]) -> dict[str, float]:
    """distinct-2, distinct-3 and the repetition rate of a set of continuations."""
    return {
        "continuations": float(len(continuations)),
        "distinct_2": distinct_n(continuations, 2),
        "distinct_3": distinct_n(continuations, 3),
        "repetition_rate": repetition_rate(continuations, 4),
    }
