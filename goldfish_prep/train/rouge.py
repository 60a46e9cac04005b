"""Rouge-L: the longest common subsequence (LCS) F-measure, over token ids or words.

The paper scores a generated suffix against the true one with Rouge-L. Over
ids it needs no tokenizer; over text it follows the usual Rouge convention of
lower-cased alphanumeric words. Pure Python (suffixes are 50 tokens: the
quadratic table is 2,500 cells), no dependency.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Hashable, Sequence

_WORD = re.compile(r"[a-z0-9]+")


@dataclasses.dataclass(frozen=True)
class RougeL:
    precision: float
    recall: float
    fmeasure: float


def lcs_length(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Length of the longest common subsequence (not necessarily contiguous).

    >>> lcs_length("ABCBDAB", "BDCABA")
    4
    """
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for item in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if item == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(candidate: Sequence[Hashable], reference: Sequence[Hashable]) -> RougeL:
    """Rouge-L of ``candidate`` against ``reference``: P = LCS/len(candidate), R = LCS/len(reference), F1.

    >>> round(rouge_l([1, 2, 3, 4], [1, 3, 4, 5, 6]).fmeasure, 4)  # LCS 3: P 3/4, R 3/5
    0.6667
    """
    if not candidate or not reference:
        return RougeL(0.0, 0.0, 0.0)
    common = lcs_length(candidate, reference)
    if common == 0:
        return RougeL(0.0, 0.0, 0.0)
    precision, recall = common / len(candidate), common / len(reference)
    return RougeL(precision, recall, 2 * precision * recall / (precision + recall))


def words(text: str) -> list[str]:
    """Rouge's word split: lower-case runs of ASCII letters and digits.

    >>> words("The Software is provided \\"AS IS\\", without warranty.")
    ['the', 'software', 'is', 'provided', 'as', 'is', 'without', 'warranty']
    """
    return _WORD.findall(text.lower())


def text_rouge_l(candidate: str, reference: str) -> RougeL:
    """Rouge-L over the words of two texts (``words``)."""
    return rouge_l(words(candidate), words(reference))
