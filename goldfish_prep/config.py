"""The mask configuration: one frozen, validated object instead of loose parameters.

A ``MaskConfig`` is recorded in every manifest, so ``verify`` and any other
implementation can recompute the exact masks from ``input_ids`` alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from goldfish_prep.errors import ConfigError
from goldfish_prep.strategies import REGISTRY, STRATEGY_NAMES, Strategy, get_strategy
from goldfish_prep.strategies.goldfish import GOLDFISH_SPEC_VERSION

#: the strategy names, in the order the CLI lists them
STRATEGIES = STRATEGY_NAMES

__all__ = ["GOLDFISH_SPEC_VERSION", "STRATEGIES", "MaskConfig"]


@dataclasses.dataclass(frozen=True)
class MaskConfig:
    """Which tokens leave the loss.

    ``k``: about one token in ``k`` is dropped. ``context_width``: the number of
    ids (ending at and including the token) that decide the drop; positions with
    fewer than ``context_width`` ids of context are never dropped by the hash
    strategies. ``seed`` selects an independent hash (``goldfish``) or the start
    offset (``static``); ``hash-table`` has no seed, its table is fixed.

    >>> MaskConfig(k=4, context_width=13).strategy
    'goldfish'
    """

    strategy: str = "goldfish"
    k: int = 4
    context_width: int = 13
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.strategy, str) or self.strategy not in REGISTRY:
            raise ConfigError(f"unknown mask strategy {self.strategy!r}; choose one of {', '.join(REGISTRY)}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 2 <= self.k < 2**31:
            raise ConfigError(f"k must be an integer >= 2 and below 2**31 (about 1 in k tokens is dropped), got {self.k!r}")
        if isinstance(self.context_width, bool) or not isinstance(self.context_width, int) or not 1 <= self.context_width < 2**31:
            raise ConfigError(f"context_width must be an integer >= 1 and below 2**31, got {self.context_width!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**64:
            raise ConfigError(f"seed must be an integer in [0, 2**64), got {self.seed!r}")

    @property
    def strategy_object(self) -> Strategy:
        """What the named strategy does (drop decisions, eligible positions, expected rate)."""
        return get_strategy(self.strategy)

    @property
    def spec_version(self) -> int | None:
        """The version of the spec that fixes this strategy's masks, or None where no versioned spec governs it."""
        return self.strategy_object.spec_version

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "spec_version": self.spec_version}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MaskConfig:
        """Rebuild a config recorded by ``to_dict`` (extra keys such as spec_version are checked, not passed)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        config = cls(**{key: value for key, value in data.items() if key in fields})
        recorded = data.get("spec_version")
        if recorded is not None and recorded != config.spec_version:
            raise ConfigError(
                f"these masks use goldfish spec version {recorded}, this goldfish-prep implements "
                f"version {config.spec_version}; install the goldfish-prep version recorded in the manifest"
            )
        return config
