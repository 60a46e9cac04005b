"""Answer-local goldfish: the mask inside a conversation's assistant tokens ("answer-local v1").

Each maximal run of assistant tokens (one answer) is masked as a sequence of
its own, so the same answer gets the same drops after any prompt, at any turn,
in any conversation: no window reaches into the prompt or the markup. Windows
at an answer's start are shorter instead of absent, so an answer shorter than
``h`` still loses about 1 token in k. Spec (docs/mask-spec.md), mod 2**64, with
A, B, M of the ``goldfish`` spec v1 for the seed and
``D = xxh64(b"goldfish-prep/v1/partial", seed)``::

    for position t of an answer x[0..m-1]:  lo = max(0, t - h + 1),  L = t - lo + 1
    w_t = sum_{i=0}^{L-1} (x[t-i] + A) * B**i  +  (h - L) * D
    H_t = (w_t ^ (w_t >> 32)) * M
    drop t  iff  t is eligible  and  H_t < 2**64 // k

For L = h the term ``(h - L) * D`` vanishes and ``H_t`` is the document rule's,
so a long answer's mask from its h-th token on equals the ``goldfish`` mask of
the same ids. ``(h - L) * D`` separates the lengths of partial windows.
Ineligible tokens (special tokens, ``--keep-ids``) are never dropped but stay
in the windows of the tokens after them: the decision for any token depends
only on the answer's own ids.

Not a ``Strategy`` in ``REGISTRY``: it is how the ``goldfish`` strategy (every
spec version) masks the answers of chat records (``chat.masking``); an answer
is masked as goldfish spec v2 masks a document, the hash is the same code
(``partial_windows``). ``--strategy none`` drops nothing there either.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from goldfish_prep.strategies.partial_windows import partial_constant, partial_window_hashes

__all__ = ["RULE", "answer_drops", "answer_hashes", "partial_constant"]

RULE = "answer-local v1"
#: H_t of every answer position: the partial-window hash that goldfish spec v2 uses at a document's start
answer_hashes = partial_window_hashes


def answer_drops(
    ids: npt.NDArray[np.integer],
    run_starts: npt.NDArray[np.integer],
    eligible: npt.NDArray[np.bool_],
    k: npt.NDArray[np.integer] | int,
    context_width: int,
    seed: int,
) -> npt.NDArray[np.bool_]:
    """Drop decisions for answers end to end; ``k`` per position (0: never dropped) or one k for all.

    >>> ids = np.array([9, 8, 7, 6, 9, 8, 7, 6])
    >>> drop = answer_drops(ids, np.array([0, 4]), np.ones(8, bool), 2, 13, 0)
    >>> drop[:4].tolist() == drop[4:].tolist()   # the same answer, the same drops
    True
    """
    hashes = partial_window_hashes(ids, run_starts, context_width, seed)
    k_array = np.broadcast_to(np.asarray(k, dtype=np.int64), hashes.shape)
    # one threshold per distinct k (few of them); k = 0 gets threshold 0, which no hash is below
    values, which = np.unique(k_array, return_inverse=True)
    table = np.array([(1 << 64) // int(v) if v >= 2 else 0 for v in values], dtype=np.uint64)
    thresholds = table[which.reshape(-1)] if len(values) else np.zeros(0, dtype=np.uint64)
    result: npt.NDArray[np.bool_] = (hashes < thresholds) & np.asarray(eligible, dtype=np.bool_)
    return result
