"""The mask configuration: one frozen, validated object instead of loose parameters.

A ``MaskConfig`` is recorded in every manifest, so ``verify`` and any other
implementation can recompute the exact masks from ``input_ids`` alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from goldfish_prep.errors import ConfigError

STRATEGIES = ("goldfish", "robust", "hash-table", "static", "none")

#: Version of the ``goldfish`` hash specification (docs/mask-spec.md). Bump it
#: whenever a change would alter any mask; the manifest records it.
GOLDFISH_SPEC_VERSION = 1
#: Version of the ``robust`` specification (docs/mask-spec.md); same rule.
ROBUST_SPEC_VERSION = 1


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
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"unknown mask strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}"
            )
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 2 <= self.k < 2**31:
            raise ConfigError(f"k must be an integer >= 2 and below 2**31 (about 1 in k tokens is dropped), got {self.k!r}")
        if isinstance(self.context_width, bool) or not isinstance(self.context_width, int) or not 1 <= self.context_width < 2**31:
            raise ConfigError(f"context_width must be an integer >= 1 and below 2**31, got {self.context_width!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**64:
            raise ConfigError(f"seed must be an integer in [0, 2**64), got {self.seed!r}")

    @property
    def spec_version(self) -> int | None:
        """The goldfish (or robust) spec version, or None for strategies no spec version governs."""
        return {"goldfish": GOLDFISH_SPEC_VERSION, "robust": ROBUST_SPEC_VERSION}.get(self.strategy)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "spec_version": self.spec_version}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MaskConfig":
        """Rebuild a config recorded by ``to_dict`` (extra keys such as spec_version are checked, not passed)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        config = cls(**{key: value for key, value in data.items() if key in fields})
        recorded = data.get("spec_version")
        if recorded is not None and recorded != config.spec_version:
            raise ConfigError(
                f"these masks use {config.strategy} spec version {recorded}, this goldfish-prep implements "
                f"version {config.spec_version}; install the goldfish-prep version recorded in the manifest"
            )
        return config
