"""What every mask strategy provides, and the flat-batch helpers they share.

A strategy is one object that answers four questions about a *flat batch*
(documents end to end, with the offset where each begins): which positions it
drops, how many positions of a document it could drop at all (the denominator
of a mask rate), the drop rate to expect, and which spec version governs its
decisions. Everything outside ``strategies/`` asks these questions through the
object and never compares strategy names, so adding a strategy is adding one
module here and one line in the registry.

Some strategies need more than ids: a per-document ``extras`` mapping (for
example ``{"text": [...], "offsets": [...]}``, one entry per document) is
passed through untouched, and ``requires`` names the keys a strategy cannot
work without, so the caller can tell the user before any work is done.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # config imports the registry; only the type is needed here
    from goldfish_prep.config import MaskConfig

Bools = npt.NDArray[np.bool_]
Int64s = npt.NDArray[np.int64]
#: per-document inputs beyond the ids, keyed by name, one entry per document of the batch
Extras = Mapping[str, Sequence[Any]]


class Strategy(abc.ABC):
    """One way of choosing the tokens left out of the loss."""

    #: the ``--strategy`` value and the manifest's ``mask.strategy``
    name: ClassVar[str]
    #: the version of the spec that fixes every decision, recorded in the manifest (None: no versioned spec);
    #: a strategy is found by (name, spec_version), so every version stays selectable and verifiable
    spec_version: ClassVar[int | None] = None
    #: True when a decision depends only on the tokens (a repeated passage gets the same mask anywhere)
    content_addressed: ClassVar[bool] = False
    #: True when decisions behave like independent draws with probability ``expected_rate``,
    #: so a binomial band around it is meaningful
    random_draws: ClassVar[bool] = False
    #: keys of ``extras`` this strategy needs
    requires: ClassVar[frozenset[str]] = frozenset()
    #: True when chat records can be masked under this strategy (answer by answer, docs/mask-spec.md
    #: answer-local); the others are refused for chat rather than silently replaced by another rule
    masks_chat_answers: ClassVar[bool] = False
    #: what to do when few tokens are eligible (``mask`` and ``stats`` print it with their coverage warning)
    coverage_fix: ClassVar[str] = "mask with --strategy goldfish (its spec version 2, the default, makes every token eligible)"

    @abc.abstractmethod
    def drop(self, ids: npt.NDArray[np.integer], starts: Int64s, config: MaskConfig, extras: Extras | None = None) -> Bools:
        """True where the token is dropped, for a non-empty flat batch (``starts`` begins with 0 and increases)."""

    @abc.abstractmethod
    def eligible_counts(self, lengths: Int64s, config: MaskConfig) -> Int64s:
        """How many positions of a document of each length this strategy could drop."""

    @abc.abstractmethod
    def eligible_rule(self, config: MaskConfig) -> str:
        """Which positions are eligible, in words (``stats`` prints it next to the count)."""

    def expected_rate(self, config: MaskConfig) -> float:
        """The probability that one eligible position is dropped: 1/k unless a strategy says otherwise."""
        return 1.0 / config.k

    def drop_and_eligible(
        self, ids: npt.NDArray[np.integer], starts: Int64s, config: MaskConfig, extras: Extras | None = None
    ) -> tuple[Bools, Int64s]:
        """(drop decisions, eligible positions per document) of a non-empty flat batch.

        From the lengths by default; a strategy whose eligible positions depend on
        the tokens (``robust``: tokens that spell nothing are never dropped)
        answers both from one pass over the batch.
        """
        starts = np.asarray(starts, dtype=np.int64)
        lengths = np.diff(np.append(starts, len(ids)))
        return self.drop(ids, starts, config, extras), self.eligible_counts(lengths, config)


def local_positions(starts: npt.NDArray[np.integer], n: int) -> Int64s:
    """Each position's index within its own document (int64, shape (n,)).

    >>> local_positions(np.array([0, 2]), 5).tolist()
    [0, 1, 0, 1, 2]
    """
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.diff(np.append(starts, n))
    return np.arange(n, dtype=np.int64) - np.repeat(starts, lengths)


def clear_document_heads(drop: Bools, starts: Int64s, width: int) -> None:
    """Positions 0..width-1 of every document are never dropped (their window would leave the document)."""
    width = min(width, len(drop))  # a window wider than the batch: every position is a head
    heads = (starts[:, None] + np.arange(width, dtype=np.int64)[None, :]).ravel()
    drop[heads[heads < len(drop)]] = False


class WindowHashStrategy(Strategy):
    """Strategies that hash the ``context_width`` ids ending at each position; the first ones of a document are never eligible."""

    content_addressed = True
    random_draws = True

    @abc.abstractmethod
    def drop_flat(self, ids: npt.NDArray[np.integer], config: MaskConfig) -> Bools:
        """Decisions for every position of the batch as if it were one document."""

    def drop(self, ids: npt.NDArray[np.integer], starts: Int64s, config: MaskConfig, extras: Extras | None = None) -> Bools:
        drop = self.drop_flat(ids, config)
        clear_document_heads(drop, np.asarray(starts, dtype=np.int64), config.context_width)
        return drop

    def eligible_counts(self, lengths: Int64s, config: MaskConfig) -> Int64s:
        return np.maximum(np.asarray(lengths, dtype=np.int64) - config.context_width, 0)

    def eligible_rule(self, config: MaskConfig) -> str:
        return f"positions t >= {config.context_width} of each document"
