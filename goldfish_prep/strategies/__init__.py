"""Mask strategies: one module and one ``Strategy`` object each, found by name in ``REGISTRY``.

``get_strategy(config.strategy)`` is the only way the rest of the package
learns what a strategy does; no other module compares strategy names.
"""

from __future__ import annotations

from goldfish_prep.strategies.base import Extras, Strategy
from goldfish_prep.strategies.goldfish import GoldfishStrategy
from goldfish_prep.strategies.hash_table import HashTableStrategy
from goldfish_prep.strategies.none import NoneStrategy
from goldfish_prep.strategies.robust import RobustStrategy
from goldfish_prep.strategies.static import StaticStrategy

#: name -> strategy, in the order the CLI lists them (the first is the default)
REGISTRY: dict[str, Strategy] = {
    s.name: s for s in (GoldfishStrategy(), RobustStrategy(), HashTableStrategy(), StaticStrategy(), NoneStrategy())
}
STRATEGY_NAMES: tuple[str, ...] = tuple(REGISTRY)


def get_strategy(name: str) -> Strategy:
    """The strategy registered under ``name`` (``MaskConfig`` has validated it; a KeyError here is a bug)."""
    return REGISTRY[name]


__all__ = ["REGISTRY", "STRATEGY_NAMES", "Extras", "Strategy", "get_strategy"]
