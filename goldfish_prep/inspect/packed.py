"""Packed shards: documents that run across row (and possibly shard) boundaries.

A mask is decided per document, so a packed row is only understood together with
the part of its first document that came before it. Two things are needed: how
many eligible positions fall in each row (``eligible_per_row``, for ``stats``),
and enough of the still-open document to recompute its masks
(``carried_context``, for ``verify``). The ``mask`` command packs each shard on
its own, so in its outputs nothing is ever carried; the format allows it, and
these functions keep every consumer right when it happens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from goldfish_prep.config import MaskConfig
from goldfish_prep.errors import InputError
from goldfish_prep.format.columns import Int32s, Int64s, TokenStream, packed_stream
from goldfish_prep.format.folder import OutputFolder
from goldfish_prep.format.location import Location
from goldfish_prep.mask import eligible_counts, mask_documents
from goldfish_prep.strategies.robust import TOKEN_BYTES


def segments(doc_starts: Int64s, lead: int) -> tuple[Int64s, Int64s]:
    """(segment starts, local position at each segment start): the pieces of documents in a stream.

    ``lead`` is the local position reached by the document still open where the
    stream begins (0 when the stream opens with a new document).
    """
    if len(doc_starts) and doc_starts[0] == 0:
        return doc_starts.astype(np.int64), np.zeros(len(doc_starts), np.int64)
    seg_starts = np.concatenate([[0], doc_starts]).astype(np.int64)
    seg_leads = np.zeros(len(seg_starts), np.int64)
    seg_leads[0] = lead
    return seg_starts, seg_leads


def eligible_per_row(stream: TokenStream, lead: int, config: MaskConfig) -> tuple[Int64s, int]:
    """Eligible positions in each row, and the lead to carry into the next shard.

    ``eligible_counts(L)`` counts the eligible positions in ``[0, L)`` of a
    document, so a stretch of local positions ``[a, b)`` holds ``E(b) - E(a)``
    of them. Evaluating that at the row boundaries only keeps this O(rows + documents).
    """
    n = len(stream.ids)
    seg_starts, seg_leads = segments(stream.doc_starts, lead)
    seg_ends = np.append(seg_starts[1:], n)
    whole = eligible_counts(seg_leads + seg_ends - seg_starts, config) - eligible_counts(seg_leads, config)
    before = np.concatenate([[0], np.cumsum(whole)])  # eligible positions before each segment

    boundaries = stream.row_starts
    seg = np.searchsorted(seg_starts, boundaries, side="right") - 1
    inside = np.maximum(seg, 0)
    local = seg_leads[inside] + boundaries - seg_starts[inside]
    partial = eligible_counts(local, config) - eligible_counts(seg_leads[inside], config)
    cumulative = np.where(seg >= 0, before[inside] + partial, 0)
    next_lead = int(seg_leads[-1] + n - seg_starts[-1]) if len(seg_starts) else lead + n
    return np.diff(cumulative).astype(np.int64), next_lead


def carried_context(folder: OutputFolder, paths: Sequence[Location], index: int, config: MaskConfig) -> tuple[Int32s, int]:
    """A stand-in prefix for the document still open where shard ``index`` begins, and its true length so far.

    A mask at position t depends only on the ``context_width`` ids ending at t
    and on t itself (hash strategies: ``t >= context_width``; static: ``t`` mod
    k). So the last ``m + r`` ids, with ``m = context_width + k`` and ``r``
    keeping the length congruent mod k, give every later position the same
    decision as the whole document would, without holding all of it.
    """
    # robust windows reach back h units of text, not a fixed number of ids: carry the whole open document
    keep = None if TOKEN_BYTES in config.strategy_object.requires else config.context_width + 2 * config.k
    pieces: list[Int32s] = []
    length = 0
    for previous in range(index - 1, -1, -1):
        stream = packed_stream(folder.read_shard(paths[previous].name), paths[previous])
        last = int(stream.doc_starts[-1]) if len(stream.doc_starts) else 0
        piece = stream.ids[last:]
        pieces.append(piece if keep is None else piece[-keep:])
        length += len(piece)
        if len(stream.doc_starts):
            break
    else:
        raise InputError(
            str(paths[index]),
            "the packed stream does not open with a document (doc_starts of the first row lacks 0)",
            "Recreate the output with `goldfish-prep mask`",
            "bad-shard",
        )
    tail = np.concatenate(pieces[::-1]) if pieces else np.zeros(0, np.int32)
    if keep is None:
        return tail, length
    return stand_in(tail[-keep:], length, config), length


def stand_in(tail: Int32s, length: int, config: MaskConfig) -> Int32s:
    """The shortest suffix of the open document that keeps later masks unchanged (see ``carried_context``)."""
    m = config.context_width + config.k
    if length <= m:
        return tail[-length:] if length else tail[:0]
    size = m + (length - m) % config.k
    return tail[-size:]


def recompute_drop(stream: TokenStream, prefix: Int32s, config: MaskConfig) -> npt.NDArray[np.bool_]:
    """Drop decisions for every token of ``stream``, its first document continued from ``prefix``."""
    if len(prefix) == 0:
        starts = stream.doc_starts if len(stream.doc_starts) and stream.doc_starts[0] == 0 else np.concatenate([[0], stream.doc_starts])
        return mask_documents(stream.ids, starts.astype(np.int64), config)
    ids = np.concatenate([prefix, stream.ids])
    starts = np.concatenate([[0], stream.doc_starts + len(prefix)]).astype(np.int64)
    return mask_documents(ids, starts, config)[len(prefix) :]
