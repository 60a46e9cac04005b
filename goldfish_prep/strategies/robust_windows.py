"""``robust``'s decisions computed with numpy: the normalised text a batch spells, each token's window of h
units, and the windows' polynomial hashes (the spec is ``robust``'s docstring).

Why a module of its own: this is the vectorised form of the spec, the one the
compiled scans (``robust_kernels``) are held to and the path taken where
neither llvmlite nor numba is installed; ``normalised_tokens``, everything of
the spec but the hash, is also the view ``repeats`` aligns copies by.

Vectorised, with nothing decoded per batch but tokens that split a character:
S is gathered from a per-id table of normalised pieces built once per
tokenizer (``normalised_pieces``), units are a few passes over S, and the
polynomial hash is one prefix sum over S evaluated at every token, like
goldfish's kernel. Batches go in blocks of about 32 K tokens (whole documents,
or pieces of a long one viewed with enough context before them) so the
temporaries stay in cache.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import xxhash

from goldfish_prep.strategies.goldfish import derive_constants
from goldfish_prep.strategies.normalised_pieces import gather_normalised
from goldfish_prep.strategies.normalize import unit_starts

if TYPE_CHECKING:
    from goldfish_prep.strategies.robust import TokenBytes

#: tokens masked per block (whole documents, or pieces of a longer one): about 1 MB per uint64 temporary of the normalised text
_BLOCK = 1 << 15
#: context viewed before a piece of a document, in tokens: a * h + b, grown 4-fold until it holds h units
_LOOKBACK = (4, 32)


@functools.lru_cache(maxsize=64)
def hash_constants(seed: int) -> tuple[int, int, int]:
    """(A, B, M) of robust spec v1 (and v2) for a seed; B and M odd."""
    return derive_constants(b"goldfish-prep/robust-v1", seed)


@functools.lru_cache(maxsize=64)
def partial_constant(seed: int) -> int:
    """D of robust spec v2: what each unit missing from a partial window adds to ``w``."""
    return xxhash.xxh64_intdigest(b"goldfish-prep/robust-v1/partial", seed=seed)


#: the error of an id the tokenizer does not have (every path checks before it reads a table at one)
OUTSIDE = "token id outside the tokenizer's {} ids"


@dataclasses.dataclass(frozen=True)
class NormalisedTokens:
    """A flat batch's normalised text and where each token sits in it (all positions index ``norm``).

    ``token_end[t]``: normalised characters completed by tokens up to t (exclusive end);
    ``nonempty[t]``: token t completes at least one; ``window_start[t]``: start of its
    window of h units (of all its document's units up to it when fewer: spec v2's partial
    window); ``enough[t]``: its document has h units up to it; ``units[t]``: units begun
    in its document up to it; ``doc_start[d]``: where document d's normalised text begins.
    """

    norm: npt.NDArray[np.uint32]
    doc_start: npt.NDArray[np.int64]
    token_end: npt.NDArray[np.int64]
    nonempty: npt.NDArray[np.bool_]
    window_start: npt.NDArray[np.int64]
    enough: npt.NDArray[np.bool_]
    units: npt.NDArray[np.int64]

    @property
    def eligible(self) -> npt.NDArray[np.bool_]:
        return self.nonempty & self.enough


def normalised_tokens(
    ids: npt.NDArray[np.integer], starts: npt.NDArray[np.integer], table: TokenBytes, context_width: int
) -> NormalisedTokens:
    """Everything of the spec but the hash: the view ``decide_blocks`` hashes and ``repeats`` aligns copies by."""
    flat = np.asarray(ids, dtype=np.int64)
    doc_starts = np.asarray(starts, dtype=np.int64)
    norm, token_end = gather_normalised(flat, doc_starts, table, table.normalised)
    before = np.zeros(len(flat) + 1, dtype=np.int64)  # normalised end before token t (a document's tokens stay in it)
    before[1:] = token_end
    doc_norm_start = before[doc_starts]
    window_start, units = _window_starts(norm, before, doc_starts, doc_norm_start, context_width)
    return NormalisedTokens(norm, doc_norm_start, token_end, token_end > before[:-1], window_start, units >= context_width, units)


def decide_blocks(
    ids: npt.NDArray[np.integer],
    doc_starts: npt.NDArray[np.int64],
    table: TokenBytes,
    context_width: int,
    seed: int,
    threshold: np.uint64,
    spec_version: int,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """``robust.decide`` with numpy, block by block (``_block_view``): (dropped, eligible) per token."""
    flat = np.asarray(ids, dtype=np.int64)
    n = len(flat)
    dropped = np.zeros(n, dtype=np.bool_)
    eligible = np.zeros(n, dtype=np.bool_)
    if n and (flat.min() < 0 or flat.max() >= table.vocab_size):
        raise ValueError(OUTSIDE.format(table.vocab_size))
    bounds = np.append(doc_starts, n)
    a = 0
    while a < n:
        view, skip, b = _block_view(flat, doc_starts, bounds, a, table, context_width)
        covered = view.enough[skip:] if spec_version == 1 else view.units[skip:] > 0
        np.logical_and(view.nonempty[skip:], covered, out=eligible[a:b])
        # every token is hashed (fewer gathers than picking the eligible ones); the others' values are discarded
        partial = None if spec_version == 1 else _partial_term(view.units[skip:], context_width, seed)
        hashes = _window_hashes(view.norm, view.window_start[skip:], view.token_end[skip:], seed, partial)
        np.logical_and(eligible[a:b], hashes < threshold, out=dropped[a:b])
        a = b
    return dropped, eligible


def _block_view(
    flat: npt.NDArray[np.int64],
    doc_starts: npt.NDArray[np.int64],
    bounds: npt.NDArray[np.int64],
    a: int,
    table: TokenBytes,
    h: int,
) -> tuple[NormalisedTokens, int, int]:
    """The view of the next block from token ``a``: (view, leading tokens of context to skip, block end).

    About ``_BLOCK`` tokens keep the temporaries in cache. A block is whole
    documents, or a piece of a longer one: then it ends before a token that
    decodes alone (so no character is cut) and is viewed with tokens before it
    as context (``_context_start``).
    """
    index = int(np.searchsorted(bounds, a, side="right")) - 1  # the document holding token a
    begin, end = int(bounds[index]), int(bounds[index + 1])
    if a == begin:
        b = int(bounds[np.searchsorted(bounds, a + _BLOCK, side="right") - 1])
        if b > a:  # whole documents
            inside = doc_starts[np.searchsorted(doc_starts, a) : np.searchsorted(doc_starts, b)] - a
            return normalised_tokens(flat[a:b], inside, table, h), 0, b
    b = end if end - a <= _BLOCK else _solid_at_or_before(flat, a + _BLOCK, a + 1, table, end)
    lookback = _LOOKBACK[0] * h + _LOOKBACK[1]
    while True:
        lo = _solid_at_or_before(flat, a - lookback, begin, table, begin) if a - lookback > begin else begin
        view = normalised_tokens(flat[lo:b], np.zeros(1, np.int64), table, h)
        if lo == begin or _units_after_first(view, a - lo) >= h:
            return view, a - lo, b
        lookback *= 4


def _solid_at_or_before(flat: npt.NDArray[np.int64], at: int, low: int, table: TokenBytes, otherwise: int) -> int:
    """The last token in ``[low, at]`` with ``solid`` bytes (the text before it decodes apart), else ``otherwise``."""
    for start in (max(low, at - 255), low):  # nearly always among the last few tokens
        solid = np.flatnonzero(np.take(table.normalised.solid, flat[start : at + 1]))
        if len(solid):
            return start + int(solid[-1])
    return otherwise


def _units_after_first(view: NormalisedTokens, tokens: int) -> int:
    """Units that begin after the first normalised character and before token ``tokens``'s characters.

    A piece viewed from a token inside its document may differ from the whole
    document only in that first character (a collapsed " " or "-", a unit start
    that depends on the character before): with h such units before the piece's
    first token, every window of the piece lies after it.
    """
    end = int(view.token_end[tokens - 1])
    return int(np.count_nonzero(unit_starts(view.norm[:end], np.zeros(1, np.int64))[1:]))


def _window_starts(
    norm: npt.NDArray[np.uint32],
    before: npt.NDArray[np.int64],
    doc_starts: npt.NDArray[np.int64],
    doc_norm_start: npt.NDArray[np.int64],
    h: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Start of each token's window of h units (or of all units since its document's start, when fewer), and those units.

    ``before[t]``: normalised end before token t (``before[n]``: the batch's);
    ``doc_starts``/``doc_norm_start``: where each document begins in ids / in ``norm``.
    """
    starts = unit_starts(norm, doc_norm_start)
    through = np.zeros(len(norm) + 1, dtype=np.int32 if len(norm) < 1 << 31 else np.int64)
    np.cumsum(starts, out=through[1:])  # units begun in norm[:p]
    begin_at = np.flatnonzero(starts)
    doc_start = np.repeat(doc_norm_start, np.diff(np.append(doc_starts, len(before) - 1)))  # each token's
    ahead = np.minimum(np.maximum(before[1:], doc_start + 1), len(norm))  # past the token's last character
    doc_through = through[doc_start]
    units = (through[ahead] - doc_through).astype(np.int64)  # units begun in its document up to it
    first = doc_through + np.maximum(units - h, 0)  # index of the window's first unit
    window_start = begin_at[np.clip(first, 0, max(len(begin_at) - 1, 0))] if len(begin_at) else doc_start
    return np.where(units > 0, window_start, doc_start), units


def _partial_term(units: npt.NDArray[np.int64], h: int, seed: int) -> npt.NDArray[np.uint64]:
    """Spec v2's ``(h - u) * D`` for windows of ``u`` units (0 for full windows): partial windows hash apart by length."""
    missing = np.maximum(h - units, 0).astype(np.uint64)
    term: npt.NDArray[np.uint64] = missing * np.uint64(partial_constant(seed))
    return term


def _window_hashes(
    norm: npt.NDArray[np.uint32],
    start: npt.NDArray[np.int64],
    end: npt.NDArray[np.int64],
    seed: int,
    partial: npt.NDArray[np.uint64] | None = None,
) -> npt.NDArray[np.uint64]:
    """H of the spec for windows ``norm[start:end]`` (end exclusive; an empty window's value means nothing).

    ``partial``: spec v2's term added to ``w`` before the finish (``_partial_term``).

    ``w = sum_q S[q] * B**(e-1-q) + A * (1 + B + ... + B**(e-s-1))``: one prefix sum of
    ``S[q] * B**-q`` over the batch, evaluated at both ends, plus a cached geometric sum.
    """
    offset, base, mix = hash_constants(seed)
    m = len(norm)
    prefix = np.zeros(m + 1, dtype=np.uint64)  # prefix[q] = sum_{j<q} S[j] * B**-j
    np.multiply(norm, _powers(pow(base, -1, 1 << 64), m), out=prefix[1:])
    np.cumsum(prefix[1:], out=prefix[1:])
    window = np.take(prefix, end) - np.take(prefix, start)
    window *= np.take(_powers(base, m + 1), end - 1)  # B**(e-1); e = 0 wraps to the last power (an empty window)
    window += np.take(_geometric(base, m + 1), end - start) * np.uint64(offset)
    if partial is not None:
        window += partial
    hashed: npt.NDArray[np.uint64] = (window ^ (window >> np.uint64(32))) * np.uint64(mix)
    return hashed


def _powers(value: int, length: int) -> npt.NDArray[np.uint64]:
    """[value**0, value**1, ...] mod 2**64, at least ``length`` of them (cached; uint64 cumprod wraps, exactly mod 2**64)."""

    def build(size: int) -> npt.NDArray[np.uint64]:
        factors = np.full(size, value, dtype=np.uint64)
        factors[0] = 1
        return np.cumprod(factors, dtype=np.uint64)

    return _cached_table(_POWERS, value, length, build)


def _geometric(value: int, length: int) -> npt.NDArray[np.uint64]:
    """[0, 1, 1 + value, 1 + value + value**2, ...] mod 2**64: ``[i]`` sums value**0 .. value**(i-1) (cached)."""

    def build(size: int) -> npt.NDArray[np.uint64]:
        sums = np.zeros(size + 1, dtype=np.uint64)
        np.cumsum(_powers(value, size), out=sums[1:])
        return sums

    return _cached_table(_GEOMETRIC, value, length, build)


def _cached_table(
    store: dict[int, npt.NDArray[np.uint64]], value: int, length: int, build: Callable[[int], npt.NDArray[np.uint64]]
) -> npt.NDArray[np.uint64]:
    """The first ``length`` entries of the table ``build`` makes for ``value``, rebuilt at least twice as long when short."""
    cached = store.get(value)
    if cached is None or len(cached) < length:
        cached = build(max(length, 2 * len(cached) if cached is not None else 1 << 18))
        cached.flags.writeable = False
        if len(store) > 8:
            store.clear()
        store[value] = cached
    return cached[:length]


_POWERS: dict[int, npt.NDArray[np.uint64]] = {}
_GEOMETRIC: dict[int, npt.NDArray[np.uint64]] = {}
