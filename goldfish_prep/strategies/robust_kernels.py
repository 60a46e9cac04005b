"""``robust``'s decisions by a compiled scan over the tokens: the llvmlite one (``robust_llvm``, the default where
llvmlite is installed) or numba's (``robust_compiled``), with the per-tokenizer tables each reads.

Why a module of its own: the scans take the same decisions as the numpy form
(``robust_windows``), from tables derived once per normalised table and seed;
building, caching and warming those is glue that neither the spec's
arithmetic nor the strategy needs to show.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from goldfish_prep.strategies import robust_compiled, robust_llvm
from goldfish_prep.strategies.id_rows import cached_rows
from goldfish_prep.strategies.normalised_pieces import NormalisedPieces, split_characters
from goldfish_prep.strategies.normalize import word_table
from goldfish_prep.strategies.robust_windows import OUTSIDE, hash_constants, partial_constant

if TYPE_CHECKING:
    from goldfish_prep.strategies.robust import TokenBytes


def decide_compiled(
    ids: npt.NDArray[np.integer],
    doc_starts: npt.NDArray[np.int64],
    table: TokenBytes,
    h: int,
    seed: int,
    threshold: np.uint64,
    spec_version: int,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """``robust.decide`` by numba's scan (``robust_compiled``): the same table, split characters decoded (``split_characters``).

    Spec v2's partial windows are the scan's too (``partial`` 1 and ``D``): each starts at its
    document's first unit, which the ring of unit starts still holds while fewer than h have begun.
    """
    kernels = robust_compiled.compiled()
    assert kernels is not None
    pieces = table.normalised
    offset, base, mix = (np.uint64(c) for c in hash_constants(seed))
    inverse = np.uint64(pow(int(base), -1, 1 << 64))
    key = (id(pieces), seed)
    cached = _ID_TABLES.get(key)
    if cached is None or cached[0] is not pieces:
        if len(_ID_TABLES) > 8:
            _ID_TABLES.clear()
        cached = (pieces, robust_compiled.id_tables(pieces.flat, pieces.offsets, word_table(), (offset, base, inverse)))
        _ID_TABLES[key] = cached
    unsolid, outside = kernels.unsolid(ids, pieces.solid)  # checks every id before any table is read at one
    if outside >= 0:
        raise ValueError(OUTSIDE.format(table.vocab_size))
    split, split_chars, split_offsets = split_characters(ids, doc_starts, table, pieces, unsolid)
    dropped = np.empty(len(ids), dtype=np.bool_)
    eligible = np.empty(len(ids), dtype=np.bool_)
    kernels.scan(
        ids,
        doc_starts,
        pieces.flat,
        *cached[1],
        split,
        split_chars,
        split_offsets,
        word_table(),
        h,
        offset,
        base,
        inverse,
        mix,
        threshold,
        spec_version == 2,
        np.uint64(partial_constant(seed)),
        dropped,
        eligible,
    )
    return dropped, eligible


def decide_llvm(
    kernels: robust_llvm.Compiled,
    ids: npt.NDArray[np.integer],
    doc_starts: npt.NDArray[np.int64],
    table: TokenBytes,
    h: int,
    seed: int,
    threshold: np.uint64,
    spec_version: int,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """``robust.decide`` by the scan compiled with llvmlite (``robust_llvm``): numba's scan, the same rows and split characters."""
    pieces = table.normalised
    offset, base, mix = hash_constants(seed)
    inverse = pow(base, -1, 1 << 64)
    key = (id(pieces), seed)
    cached = _LLVM_ROWS.get(key)
    if cached is None or cached[0] is not pieces:
        if len(_LLVM_ROWS) > 8:
            _LLVM_ROWS.clear()
        cached = (pieces, *cached_rows(pieces.flat, pieces.offsets, offset, base, inverse))
        _LLVM_ROWS[key] = cached
    unsolid = robust_llvm.unsolid(kernels, ids, pieces.solid)  # checks every id before any table is read at one
    if unsolid is None:
        raise ValueError(OUTSIDE.format(table.vocab_size))
    split = split_characters(ids, doc_starts, table, pieces, unsolid)
    missing = partial_constant(seed) if spec_version == 2 else None
    return robust_llvm.scan(
        kernels,
        ids,
        doc_starts,
        pieces.flat,
        cached[1],
        cached[2],
        split,
        word_table(),
        h,
        (offset, base, inverse, mix),
        int(threshold),
        missing,
    )


#: ``robust_llvm.id_rows`` per normalised table and seed: (the table, its rows, the units' prefixes)
_LLVM_ROWS: dict[tuple[int, int], tuple[NormalisedPieces, npt.NDArray[np.uint64], npt.NDArray[np.uint64]]] = {}


def warm_compiled(table: TokenBytes, spec_version: int) -> None:
    """Run numba's scan once on ``table`` (a tiny one) with int32 and int64 ids (the pipeline's and the API's), so
    numba loads those signatures from its cache now, in the loader thread, and not in the first batch."""
    threshold = np.uint64((1 << 64) // 4)
    for dtype in (np.int32, np.int64):
        ids = np.array([0, 1, 2, 3, 0], dtype=dtype)
        decide_compiled(ids, np.zeros(1, np.int64), table, 2, 0, threshold, spec_version)
    _ID_TABLES.pop((id(table.normalised), 0), None)


#: ``robust_compiled._id_tables`` per normalised table and seed: (the table, its tables)
_ID_TABLES: dict[tuple[int, int], tuple[NormalisedPieces, tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]]] = {}
