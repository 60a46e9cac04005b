"""``hash-table``: bit-exact with the reference implementation's CPU hash-table masks.

The reference (Hans et al. 2024, ``apply_goldfish``) drops ``raw[t]`` iff
``t >= h`` and ``TABLE[prod(raw[t-h+1..t]) mod 1_000_003] < float32(1/k)``, with a
signed 64-bit wrapping product, Python's floor ``mod`` of that signed value, and
a float32 table of 1,000,003 values drawn by PyTorch's CPU generator seeded with
2971215073. PyTorch's CPU ``torch.rand`` for float32 is MT19937 output masked to
24 bits over 2**24, so the table is rebuilt here with numpy alone.

Kept for compatibility with the released checkpoints; its weaknesses (order
blind, id 1 inert, id 0 and 64-bit wrap to 0 send windows to TABLE[0]) are why
it is not the default.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from goldfish_prep.strategies.base import Bools, WindowHashStrategy

if TYPE_CHECKING:
    from goldfish_prep.config import MaskConfig

TABLE_SIZE = 1_000_003
TABLE_SEED = 2971215073
#: sha256 of the table as little-endian float32 bytes (official-goldfish.md).
TABLE_SHA256 = "33025be4fa64d02d0a2e630dfa7fc166bf76a5364206fe4cd8973ce46e836562"


@functools.lru_cache(maxsize=1)
def reference_table() -> npt.NDArray[np.float32]:
    """The 1,000,003 float32 values of the reference's CPU table (built once, about 50 ms)."""
    bit_generator = np.random.MT19937(0)
    bit_generator._legacy_seeding(TABLE_SEED)  # init_genrand(seed), as torch's CPU generator
    raw = bit_generator.random_raw(TABLE_SIZE)  # uint64 holding consecutive 32-bit outputs
    table: npt.NDArray[np.float32] = (raw & 0xFFFFFF).astype(np.float32) / np.float32(1 << 24)
    table.flags.writeable = False
    return table


def window_products(ids: npt.NDArray[np.integer], context_width: int) -> npt.NDArray[np.int64]:
    """prod(ids[t-h+1..t]) in wrapping int64 for every t >= h-1, by binary lifting.

    Products of windows of width 1, 2, 4, ... are built by doubling and combined
    along the binary digits of h: about 2*log2(h) multiplications per position
    instead of h. Multiplication is commutative, so the order of combination
    does not change the wrapped result.
    """
    x = np.asarray(ids, dtype=np.int64)
    n = len(x)
    result: npt.NDArray[np.int64] | None = None  # product over the last `covered` ids ending at t
    covered = 0
    power, width = x, 1
    h = context_width
    with np.errstate(over="ignore"):
        while True:
            if h & width:
                if result is None:
                    result = power.copy()
                else:
                    # result[t] covers (t-covered, t]; power[t-covered] covers the `width` ids before it
                    result[covered:] *= power[: n - covered]
                covered += width
            if width * 2 > h:
                break
            doubled = power.copy()
            doubled[width:] *= power[: n - width]
            power, width = doubled, width * 2
    assert result is not None and covered == h
    return result


def drop_flat(ids: npt.NDArray[np.integer], context_width: int, k: int) -> npt.NDArray[np.bool_]:
    """Drop decisions for every position of a flat array, before the per-document eligibility rule."""
    if len(ids) <= context_width:  # no position has a full window
        return np.zeros(len(ids), dtype=np.bool_)
    products = window_products(ids, context_width)
    index = np.mod(products, TABLE_SIZE)  # numpy's mod on int64 is floor-mod, as Python's %
    drop: npt.NDArray[np.bool_] = reference_table()[index] < np.float32(1.0 / k)
    drop[: min(context_width, len(ids))] = False
    return drop


class HashTableStrategy(WindowHashStrategy):
    """The reference implementation's table lookup; it has no seed and no versioned spec of ours."""

    name = "hash-table"
    coverage_fix = "mask with --strategy goldfish (spec version 2 makes every token eligible) unless you need the paper's exact masks"

    def drop_flat(self, ids: npt.NDArray[np.integer], config: MaskConfig) -> Bools:
        return drop_flat(ids, config.context_width, config.k)
