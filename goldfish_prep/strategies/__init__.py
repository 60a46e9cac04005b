"""Mask strategies: one module and one ``Strategy`` object per spec version, found by name and version.

``get_strategy(config.strategy, config.spec_version)`` is the only way the rest
of the package learns what a strategy does; no other module compares strategy
names or versions. Every version stays registered, so a folder written under an
older spec stays readable, verifiable and exportable, and ``--spec-version``
reproduces it.
"""

from __future__ import annotations

from goldfish_prep.strategies.base import Extras, Strategy
from goldfish_prep.strategies.goldfish import GoldfishV1Strategy
from goldfish_prep.strategies.goldfish_v2 import GoldfishStrategy
from goldfish_prep.strategies.hash_table import HashTableStrategy
from goldfish_prep.strategies.none import NoneStrategy
from goldfish_prep.strategies.robust import RobustStrategy, RobustV1Strategy
from goldfish_prep.strategies.static import StaticStrategy

#: (name, spec version) -> strategy, for every version this goldfish-prep implements; each name's default first
VERSIONS: dict[tuple[str, int | None], Strategy] = {
    (s.name, s.spec_version): s
    for s in (
        GoldfishStrategy(),
        GoldfishV1Strategy(),
        RobustStrategy(),
        RobustV1Strategy(),
        HashTableStrategy(),
        StaticStrategy(),
        NoneStrategy(),
    )
}
#: name -> the strategy ``--strategy NAME`` gets without ``--spec-version``, in the order the CLI lists them (the first is the default)
REGISTRY: dict[str, Strategy] = {}
for _strategy in VERSIONS.values():
    REGISTRY.setdefault(_strategy.name, _strategy)
STRATEGY_NAMES: tuple[str, ...] = tuple(REGISTRY)


def spec_versions(name: str) -> tuple[int, ...]:
    """The spec versions of strategy ``name`` this goldfish-prep implements, oldest first (empty: not versioned)."""
    return tuple(sorted(v for n, v in VERSIONS if n == name and v is not None))


def get_strategy(name: str, spec_version: int | None = None) -> Strategy:
    """The strategy registered under ``name`` and ``spec_version`` (None: its default); ``MaskConfig`` has validated both."""
    default = REGISTRY[name]
    return default if spec_version in (None, default.spec_version) else VERSIONS[(name, spec_version)]


__all__ = ["REGISTRY", "STRATEGY_NAMES", "VERSIONS", "Extras", "Strategy", "get_strategy", "spec_versions"]
