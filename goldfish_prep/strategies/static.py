"""``static``: the paper's positional baseline, every k-th token of a document.

The reference drops target positions ``start, start+k, ...`` of each shifted
row; on an unshifted document that is ``t >= 1 + start and (t - 1 - start) % k == 0``.
It is *not* content-addressed: the same passage at another offset gets another
mask, which is exactly what the paper shows to fail. ``seed`` is the start.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def drop_local(local_positions: npt.NDArray[np.int64], k: int, start: int) -> npt.NDArray[np.bool_]:
    """Drop decisions from each token's position within its document."""
    shifted = local_positions - (1 + start)
    drop: npt.NDArray[np.bool_] = (shifted >= 0) & (shifted % k == 0)
    return drop
