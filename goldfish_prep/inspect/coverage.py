"""How much of a corpus the mask reaches: eligible and dropped tokens as shares of *all* tokens.

A drop rate near 1/k among eligible tokens says the hash behaves; it does not
say the corpus is protected. Under ``goldfish`` spec v1 a document's first h
tokens are never eligible, so a corpus of one-line records can report "24.10%
of eligible tokens dropped (expected 25%)" while 88% of its tokens can never
be dropped and are learned as with standard loss. ``mask``'s summary and
``stats`` therefore also give the shares of all tokens, derived from the counts
every manifest holds (``tokens``, ``eligible_tokens``, ``dropped_tokens``; chat:
``assistant_tokens``), and warn in one line, with the fix, when they are low.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from goldfish_prep.config import MaskConfig

#: below this share of the supervised tokens eligible, a run is warned about (spec v1 at h = 13 reaches it at ~130-token documents)
LOW_COVERAGE = 0.9


@dataclasses.dataclass(frozen=True)
class Coverage:
    """Token counts of an output; ``supervised``: the tokens in the loss before masking (chat: the assistant's).

    >>> c = Coverage(tokens=1000, eligible=120, dropped=30, supervised=1000)
    >>> f"{c.eligible_share:.0%} {c.dropped_share:.0%}"
    '12% 3%'
    """

    tokens: int
    eligible: int
    dropped: int
    supervised: int
    chat: bool = False

    @classmethod
    def from_counts(cls, counts: Mapping[str, Any]) -> Coverage:
        """From a manifest's ``counts`` (no new field needed: the shares are ratios of recorded counts)."""
        tokens = int(counts.get("tokens") or 0)
        chat = "assistant_tokens" in counts
        supervised = int(counts.get("assistant_tokens") or 0) if chat else tokens
        return cls(tokens, int(counts.get("eligible_tokens") or 0), int(counts.get("dropped_tokens") or 0), supervised, chat)

    @property
    def eligible_share(self) -> float:
        """Eligible tokens over all tokens."""
        return self.eligible / self.tokens if self.tokens else 0.0

    @property
    def dropped_share(self) -> float:
        """Dropped tokens over all tokens."""
        return self.dropped / self.tokens if self.tokens else 0.0

    def line(self) -> str:
        """One summary line: both shares of all tokens."""
        return (
            f"Coverage: {self.eligible_share:.2%} of all {self.tokens:,} tokens can be dropped (eligible), "
            f"{self.dropped_share:.2%} are dropped"
        )

    def is_low(self, config: MaskConfig) -> bool:
        """Whether so few supervised tokens are eligible that short documents escape the mask.

        Chat outputs are not judged: their ineligible assistant tokens are the
        end-of-turn and ``--keep-ids`` tokens, left in the loss on purpose, and
        answer-local windows already cover each answer's start.
        """
        strategy = config.strategy_object
        if self.chat or not self.supervised or strategy.expected_rate(config) == 0.0:
            return False
        return self.eligible < LOW_COVERAGE * self.supervised

    def warning(self, config: MaskConfig) -> str | None:
        """The one-line warning with its fix, or None when coverage is fine."""
        if not self.is_low(config):
            return None
        strategy = config.strategy_object
        return (
            f"Warning: only {self.eligible / self.supervised:.2%} of the tokens can ever be dropped "
            f"({strategy.eligible_rule(config)}), so short documents are learned as with standard loss. "
            f"Fix: {strategy.coverage_fix}"
        )
