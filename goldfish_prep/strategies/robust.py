"""``robust``: goldfish decisions taken on normalised text, so near-copies drop alike (spec v1 and v2).

Goldfish hashes the h token ids ending at a token. A passage copied with a case
change, a double space, a re-wrapped line or curly quotes has other ids after
the edit, so its copies drop different tokens and together supervise them all.
``robust`` decides each token from the *normalised text* it ends in
(``normalize``: NFKD, case-folded, whitespace runs and dashes collapsed, quotes
unified), so copies that differ only by such edits drop the tokens that end at
the same place of their shared text, whatever ids spelled it.

Spec (docs/mask-spec.md, all arithmetic mod 2**64)::

    bytes  = concatenation of the tokens' bytes (special tokens: none)
    chars  = bytes decoded as UTF-8, each invalid byte one U+DC80+b (surrogateescape)
    S      = normalised chars; e_t = normalised end of token t (chars it completes)
    token t is eligible  iff  e_t > e_{t-1}  and  at least h units begin in S[:e_t]
    window = S[s .. e_t - 1], s = where the h-th last unit begun in S[:e_t] begins
    w      = sum_{q=s}^{e_t-1} (S[q] + A) * B**(e_t-1-q);  H = (w ^ (w >> 32)) * M
    drop t iff eligible and H < 2**64 // k

with A, B, M from xxh64 of ``goldfish-prep/robust-v1/{offset,base,mix}``. Spec v2 (the
default) also decides the tokens with 1 to h-1 units before them, on the
window from their document's first unit, adding ``(h - units) * D`` to ``w``
(``D = xxh64(b"goldfish-prep/robust-v1/partial", seed)``); every other
decision is v1's.
A unit begins at every non-space character of S except a word character
(letter, digit or combining mark below U+2E80) right after another: a run of
word characters, or any other single character (punctuation, a CJK ideograph),
so paths and code have as many units as prose has words and punctuation.
The decision needs only the token ids and the tokenizer's bytes per id
(``TokenBytes``), so ``verify`` recomputes it from a shard alone.

Vectorised, with nothing decoded per batch but tokens that split a character:
S is gathered from a per-id table of normalised pieces built once per
tokenizer (``normalised_pieces``), units are a few passes over S, and the
polynomial hash is one prefix sum over S evaluated at every token, like
goldfish's kernel. Batches go in blocks of about 32 K tokens (whole documents,
or pieces of a long one viewed with enough context before them) so the
temporaries stay in cache. About 3x the speed of decoding and normalising each
batch, still about 10x slower than goldfish; so by default (where llvmlite is
installed) a job masks with a compiled scan over the tokens instead, built as
LLVM IR (``robust_llvm``; ``robust_compiled`` is the same scan through numba,
chosen with ``GOLDFISH_PREP_ROBUST_KERNEL=compiled``): the same bytes, about
1.1x goldfish's kernel CPU time, and a whole ``mask`` process at 0.93x to 0.98x
goldfish's speed (docs/performance.md).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import xxhash

from goldfish_prep.errors import ConfigError
from goldfish_prep.strategies import robust_compiled, robust_llvm
from goldfish_prep.strategies.base import Bools, Extras, Int64s, Strategy
from goldfish_prep.strategies.goldfish import derive_constants
from goldfish_prep.strategies.id_rows import cached_rows
from goldfish_prep.strategies.normalised_pieces import NormalisedPieces, gather_normalised, split_characters
from goldfish_prep.strategies.normalize import unit_starts, word_table

if TYPE_CHECKING:
    from goldfish_prep.config import MaskConfig

#: Newest version of the ``robust`` specification (docs/mask-spec.md), the default; any change that alters one mask bit bumps it
ROBUST_SPEC_VERSION = 2
#: the ``extras`` key robust needs: the tokenizer's ``TokenBytes`` (the same table for every document)
TOKEN_BYTES = "token_bytes"


@dataclasses.dataclass(frozen=True)
class TokenBytes:
    """The bytes each token id spells: ``flat[offsets[i]:offsets[i+1]]`` for id i (special ids: empty)."""

    flat: npt.NDArray[np.uint8]
    offsets: npt.NDArray[np.int64]  # shape (vocab_size + 1,)

    @classmethod
    def from_list(cls, pieces: list[bytes]) -> TokenBytes:
        """Build the table from one bytes object per id.

        >>> TokenBytes.from_list([b"a", b"", b"bc"]).offsets.tolist()
        [0, 1, 1, 3]
        """
        lengths = np.array([len(p) for p in pieces], dtype=np.int64)
        offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
        return cls(np.frombuffer(b"".join(pieces), dtype=np.uint8).copy(), offsets)

    @property
    def vocab_size(self) -> int:
        return len(self.offsets) - 1

    @functools.cached_property
    def pieces(self) -> list[bytes]:
        """One bytes object per id."""
        raw = self.flat.tobytes()
        bounds = self.offsets.tolist()
        return [raw[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    @functools.cached_property
    def lengths(self) -> npt.NDArray[np.int64]:
        return np.diff(self.offsets)

    @functools.cached_property
    def normalised(self) -> NormalisedPieces:
        """N of every id's characters (built on first use, once per table): what the kernel gathers."""
        return NormalisedPieces.cached(self.flat, self.offsets)


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
    """Everything of the spec but the hash: the view ``decide`` hashes and ``repeats`` aligns copies by."""
    flat = np.asarray(ids, dtype=np.int64)
    doc_starts = np.asarray(starts, dtype=np.int64)
    norm, token_end = gather_normalised(flat, doc_starts, table, table.normalised)
    before = np.zeros(len(flat) + 1, dtype=np.int64)  # normalised end before token t (a document's tokens stay in it)
    before[1:] = token_end
    doc_norm_start = before[doc_starts]
    window_start, units = _window_starts(norm, before, doc_starts, doc_norm_start, context_width)
    return NormalisedTokens(norm, doc_norm_start, token_end, token_end > before[:-1], window_start, units >= context_width, units)


def decide(
    ids: npt.NDArray[np.integer],
    starts: npt.NDArray[np.integer],
    table: TokenBytes,
    context_width: int,
    k: int,
    seed: int,
    spec_version: int = 1,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(dropped, eligible) for every token of a flat batch; ``starts[d]`` is where document d begins.

    ``spec_version`` 2 also decides the tokens before a document's h-th unit,
    on the partial window of the units since its start (``_partial_term``).

    >>> table = TokenBytes.from_list([b"Hello", b" world", b"\\n", b"world"])
    >>> dropped, eligible = decide(np.array([0, 1, 0, 2, 3]), np.array([0, 2]), table, 1, 2, 0)
    >>> dropped[[1]].tolist() == dropped[[4]].tolist(), eligible.tolist()
    (True, [True, True, True, True, True])
    """
    if spec_version not in (1, 2):
        raise ValueError(f"robust has spec versions 1 and 2, not {spec_version}")
    doc_starts = np.asarray(starts, dtype=np.int64)
    threshold = np.uint64((1 << 64) // k)
    mode = robust_compiled.kernel_mode()
    if len(ids) and mode in ("auto", "llvm"):
        kernels = robust_llvm.compiled()
        if kernels is not None:
            given = np.ascontiguousarray(ids) if ids.dtype in (np.int32, np.int64) else np.asarray(ids, dtype=np.int64)
            return _decide_llvm(kernels, given, doc_starts, table, context_width, seed, threshold, spec_version)
    if len(ids) and robust_compiled.use_compiled(len(ids)):
        # int32 ids (the pipeline's) are read as they are: a copy to int64 would cost about what the scan does
        given = np.ascontiguousarray(ids) if ids.dtype in (np.int32, np.int64) else np.asarray(ids, dtype=np.int64)
        return _decide_compiled(given, doc_starts, table, context_width, seed, threshold, spec_version)
    flat = np.asarray(ids, dtype=np.int64)
    n = len(flat)
    dropped = np.zeros(n, dtype=np.bool_)
    eligible = np.zeros(n, dtype=np.bool_)
    if n and (flat.min() < 0 or flat.max() >= table.vocab_size):
        raise ValueError(_OUTSIDE.format(table.vocab_size))
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


def _decide_compiled(
    ids: npt.NDArray[np.integer],
    doc_starts: npt.NDArray[np.int64],
    table: TokenBytes,
    h: int,
    seed: int,
    threshold: np.uint64,
    spec_version: int,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """``decide`` by the compiled scan (``robust_compiled``): the same table, split characters decoded as above.

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
        raise ValueError(_OUTSIDE.format(table.vocab_size))
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


_OUTSIDE = "token id outside the tokenizer's {} ids"


def _decide_llvm(
    kernels: robust_llvm.Compiled,
    ids: npt.NDArray[np.integer],
    doc_starts: npt.NDArray[np.int64],
    table: TokenBytes,
    h: int,
    seed: int,
    threshold: np.uint64,
    spec_version: int,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """``decide`` by the scan compiled with llvmlite (``robust_llvm``): numba's scan, the same rows and split characters."""
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
        raise ValueError(_OUTSIDE.format(table.vocab_size))
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


def start_loading_compiled() -> None:
    """Prepare the compiled kernel at the start of a job that will mask with ``robust``, before workers fork.

    ``auto`` and ``llvm``: the llvmlite scan, compiled here (about 0.05 s), so
    ``--num-proc`` workers forked later inherit it instead of each compiling
    it. ``compiled``: numba, loaded beside the pipeline (``robust_compiled.start_loading``).
    """
    mode = robust_compiled.kernel_mode()
    if mode in ("auto", "llvm"):
        robust_llvm.compiled()
    elif mode == "compiled":
        robust_compiled.start_loading(_warm_compiled)


def _warm_compiled() -> None:
    """Run the compiled path once on a tiny table with int32 and int64 ids (the pipeline's and the API's), so numba
    loads those signatures from its cache now, in the loader thread, and not in the first batch."""
    table = TokenBytes.from_list([b"a", b" b", b"\xe2", b"\x80\x94"])
    threshold = np.uint64((1 << 64) // 4)
    for dtype in (np.int32, np.int64):
        ids = np.array([0, 1, 2, 3, 0], dtype=dtype)
        _decide_compiled(ids, np.zeros(1, np.int64), table, 2, 0, threshold, ROBUST_SPEC_VERSION)
    _ID_TABLES.pop((id(table.normalised), 0), None)


#: ``robust_compiled._id_tables`` per normalised table and seed: (the table, its tables)
_ID_TABLES: dict[tuple[int, int], tuple[NormalisedPieces, tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]]] = {}


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


class RobustV1Strategy(Strategy):
    """Goldfish decisions on the normalised text the tokens spell (the spec above), from each document's h-th unit on."""

    name = "robust"
    spec_version = 1
    coverage_fix = "mask again without --spec-version 1 (robust spec version 2, the default, covers each document's first units)"
    content_addressed = True
    random_draws = True
    requires = frozenset({TOKEN_BYTES})

    def drop(self, ids: npt.NDArray[np.integer], starts: Int64s, config: MaskConfig, extras: Extras | None = None) -> Bools:
        return self._decide(ids, starts, config, extras)[0]

    def drop_and_eligible(
        self, ids: npt.NDArray[np.integer], starts: Int64s, config: MaskConfig, extras: Extras | None = None
    ) -> tuple[Bools, Int64s]:
        starts = np.asarray(starts, dtype=np.int64)
        dropped, eligible = self._decide(ids, starts, config, extras)
        ends = np.append(starts[1:], len(ids))
        # the few ineligible tokens counted by bisection: a cumsum over all the bools costs about 10x more
        where = np.flatnonzero(~eligible)
        return dropped, (ends - starts) - (np.searchsorted(where, ends) - np.searchsorted(where, starts))

    def _decide(self, ids: npt.NDArray[np.integer], starts: Int64s, config: MaskConfig, extras: Extras | None) -> tuple[Bools, Bools]:
        table = _table(extras)
        if len(ids) and int(np.max(ids)) >= table.vocab_size:
            raise ConfigError(
                f"token id {int(np.max(ids))} is outside the tokenizer's {table.vocab_size} ids; pass the tokenizer the ids were made with"
            )
        return decide_config(ids, np.asarray(starts, dtype=np.int64), table, config)

    def eligible_counts(self, lengths: Int64s, config: MaskConfig) -> Int64s:
        raise ConfigError("robust's eligible positions depend on the text the ids spell: ask drop_and_eligible")

    def eligible_rule(self, config: MaskConfig) -> str:
        return f"tokens that complete normalised text, from the {config.context_width}th unit of each document on"


class RobustStrategy(RobustV1Strategy):
    """The default, spec v2: v1's decisions from a document's h-th unit on, partial windows of units before."""

    spec_version = ROBUST_SPEC_VERSION
    coverage_fix = (
        "robust never drops tokens that spell no text (special tokens, split characters); mask with --strategy goldfish to reach them"
    )

    def eligible_rule(self, config: MaskConfig) -> str:
        return "tokens that complete normalised text, from each document's first unit on"


def decide_config(
    ids: npt.NDArray[np.integer], starts: npt.NDArray[np.integer], table: TokenBytes, config: MaskConfig
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """``decide`` under a config's k, width, seed and spec version: (dropped, eligible) per token."""
    version = config.spec_version if config.spec_version is not None else ROBUST_SPEC_VERSION
    return decide(ids, starts, table, config.context_width, config.k, config.seed, spec_version=version)


def _table(extras: Extras | None) -> TokenBytes:
    tables = (extras or {}).get(TOKEN_BYTES)
    if not tables or not isinstance(tables[0], TokenBytes):
        raise ConfigError("the robust strategy needs the tokenizer's bytes per id (extras token_bytes) to read the text the ids spell")
    return tables[0]
