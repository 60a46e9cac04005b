"""The mask configuration: one frozen, validated object instead of loose parameters.

A ``MaskConfig`` is recorded in every manifest, so ``verify`` and any other
implementation can recompute the exact masks from ``input_ids`` alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from goldfish_prep.errors import ConfigError
from goldfish_prep.strategies import REGISTRY, STRATEGY_NAMES, Strategy, get_strategy, spec_versions
from goldfish_prep.strategies.goldfish_v2 import GOLDFISH_SPEC_VERSION

#: the strategy names, in the order the CLI lists them
STRATEGIES = STRATEGY_NAMES

__all__ = ["GOLDFISH_SPEC_VERSION", "STRATEGIES", "MaskConfig"]


@dataclasses.dataclass(frozen=True)
class MaskConfig:
    """Which tokens leave the loss.

    ``k``: about one token in ``k`` is dropped. ``context_width``: the number of
    ids (ending at and including the token) that decide the drop. ``seed``
    selects an independent hash (``goldfish``) or the start offset
    (``static``); ``hash-table`` has no seed, its table is fixed.
    ``spec_version``: which version of the strategy's spec (docs/mask-spec.md)
    fixes the masks; None picks the strategy's default and is replaced by it,
    so a config always names the version it was made with (None stays only
    for strategies without versions).

    >>> MaskConfig(k=4, context_width=13).strategy
    'goldfish'
    >>> MaskConfig(strategy="goldfish", spec_version=1).spec_version
    1
    """

    strategy: str = "goldfish"
    k: int = 4
    context_width: int = 13
    seed: int = 0
    spec_version: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.strategy, str) or self.strategy not in REGISTRY:
            raise ConfigError(f"unknown mask strategy {self.strategy!r}; choose one of {', '.join(REGISTRY)}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 2 <= self.k < 2**31:
            raise ConfigError(f"k must be an integer >= 2 and below 2**31 (about 1 in k tokens is dropped), got {self.k!r}")
        if isinstance(self.context_width, bool) or not isinstance(self.context_width, int) or not 1 <= self.context_width < 2**31:
            raise ConfigError(f"context_width must be an integer >= 1 and below 2**31, got {self.context_width!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**64:
            raise ConfigError(f"seed must be an integer in [0, 2**64), got {self.seed!r}")
        if self.spec_version is None:
            object.__setattr__(self, "spec_version", REGISTRY[self.strategy].spec_version)
        _check_version(self.strategy, self.spec_version, "Fix: pass --spec-version {choices}, or leave it out for the newest")

    @property
    def strategy_object(self) -> Strategy:
        """What the named strategy does under this spec version (drop decisions, eligible positions, expected rate)."""
        return get_strategy(self.strategy, self.spec_version)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MaskConfig:
        """Rebuild a config recorded by ``to_dict``: every spec version this goldfish-prep implements is accepted.

        A manifest without ``spec_version`` gets the strategy's default; an
        unknown version is refused with the fix (the goldfish-prep that wrote it).
        """
        strategy = data.get("strategy", "goldfish")
        if isinstance(strategy, str) and strategy in REGISTRY:
            _check_version(
                strategy,
                data.get("spec_version"),
                "Fix: read them with the goldfish-prep version recorded in the manifest",
                "these masks use",
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in fields})


def _check_version(strategy: str, version: Any, fix: str, lead: str = "") -> None:
    """Refuse a spec version the strategy does not have, in one line with ``fix`` (``{choices}``: the known versions)."""
    known = spec_versions(strategy)
    if version is None or (type(version) is int and version in known):
        return
    if not known:
        raise ConfigError(f"strategy {strategy} has no versioned spec, got spec_version {version!r}. Fix: leave the spec version out")
    choices = " or ".join(str(v) for v in known)
    subject = f"{lead} {strategy} spec version {version!r}" if lead else f"{strategy} spec version {version!r} is unknown"
    raise ConfigError(f"{subject}, this goldfish-prep implements version {choices}. {fix.format(choices=choices)}")
