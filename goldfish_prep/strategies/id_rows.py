"""Per id, what its normalised characters add to ``robust``'s scan: the rows the compiled kernels read per token.

Why rows: most tokens are kept whole (their first character does not
collapse into the one before, and they do not split a UTF-8 character), and
then a token adds the same to the hash's prefix sum wherever it stands:
``SUM = sum_j (c_j + A) * B**-j`` over its normalised characters (own " "/"-"
runs collapsed, ``normalised_pieces``), ``B**len`` and ``B**-len``, the units
that begin after its first character at the partial sums ``REL`` of ``SUM``;
only its first character's unit depends on the character before. A scan then
reads one 64-byte row per token instead of looping over its characters
(``robust_compiled._scan`` and its llvmlite twin ``robust_llvm``).

``TokenTable`` computes these facts with numpy passes over all the pieces at
once (0.02 to 0.07 s for cl100k's 100 k ids, where ``robust_compiled._id_tables``
loops in numba), ``id_rows`` lays them out as the scan's rows (the two layouts
are compared in ``tests/test_robust_kernel.py``), and ``cached_rows`` keeps
them on disk.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import numpy.typing as npt

from goldfish_prep.strategies.normalize import SPACE, word_table

#: the first/last character of an id that spells nothing (its row's ``ENDS`` is then 0)
_NONE = np.uint32(0xFFFFFFFF)
#: columns of a row (``robust_compiled``'s layout): one 64-byte row per id
CHARS, SUM, POWER, INVERSE, ENDS, UNITS, UNIT_PREFIX = range(7)


@dataclasses.dataclass(frozen=True)
class TokenTable:
    """Per id: what a token of it adds when its characters are kept whole (``id_rows`` lays them out).

    ``length``: normalised characters; ``first``/``last``: the first and last
    (``_NONE`` when empty); ``first_word``/``last_word``: whether each is a word
    character; ``total``: SUM above; ``inner``: units beginning after the first
    character, their partial sums ``rel[inner_start[i] : inner_start[i] + inner[i]]``,
    the first of them also in ``rel_first`` (0 when none).
    """

    length: npt.NDArray[np.int64]
    first: npt.NDArray[np.uint32]
    last: npt.NDArray[np.uint32]
    first_word: npt.NDArray[np.bool_]
    last_word: npt.NDArray[np.bool_]
    total: npt.NDArray[np.uint64]
    inner: npt.NDArray[np.int64]
    inner_start: npt.NDArray[np.int64]
    rel: npt.NDArray[np.uint64]
    rel_first: npt.NDArray[np.uint64]

    @classmethod
    def build(cls, chars: npt.NDArray[np.uint32], offsets: npt.NDArray[np.int64], offset: int, inverse: int) -> TokenTable:
        """The rows of the pieces ``chars[offsets[i]:offsets[i+1]]`` (runs already collapsed inside each)."""
        offsets = np.asarray(offsets, dtype=np.int64)
        count = len(offsets) - 1
        length = np.diff(offsets)
        size = int(offsets[-1]) - int(offsets[0])
        chars = np.asarray(chars[offsets[0] : offsets[-1]], dtype=np.uint32)
        local = offsets - offsets[0]
        owner = np.repeat(np.arange(count, dtype=np.int64), length)
        within = np.arange(size, dtype=np.int64) - np.repeat(local[:-1], length)
        terms = (chars.astype(np.uint64) + np.uint64(offset)) * np.take(powers(inverse, max(size, 1)), within)
        sums = np.zeros(size + 1, dtype=np.uint64)  # sums[c]: terms before character c
        np.cumsum(terms, out=sums[1:])
        total = sums[local[1:]] - sums[local[:-1]]
        word = np.take(word_table(), chars)
        begins = chars != SPACE
        begins[1:] &= ~(word[1:] & word[:-1])
        begins &= within > 0
        where = np.flatnonzero(begins)
        rel = sums[where] - np.take(sums, np.take(local, owner[where]))
        inner = np.bincount(owner[where], minlength=count).astype(np.int64)
        inner_start = np.cumsum(inner) - inner
        spelled = length > 0
        first = np.where(spelled, np.take(chars, local[:-1], mode="clip") if size else 0, _NONE).astype(np.uint32)
        last = np.where(spelled, np.take(chars, local[1:] - 1, mode="clip") if size else 0, _NONE).astype(np.uint32)
        rel_first = np.where(inner > 0, np.take(rel, inner_start, mode="clip") if len(rel) else 0, 0).astype(np.uint64)
        return cls(length, first, last, _is_word(first), _is_word(last), total, inner, inner_start, rel, rel_first)


def _is_word(chars: npt.NDArray[np.uint32]) -> npt.NDArray[np.bool_]:
    found: npt.NDArray[np.bool_] = np.take(word_table(), np.minimum(chars, 0x10FFFF)) & (chars != _NONE)
    return found


def powers(value: int, length: int) -> npt.NDArray[np.uint64]:
    """[value**0, value**1, ...] mod 2**64, at least ``length`` of them (cached per value, rebuilt at least twice as
    long when short; uint64 cumprod wraps, exactly mod 2**64)."""
    cached = _POWERS.get(value)
    if cached is None or len(cached) < length:
        size = max(length, 2 * len(cached) if cached is not None else 1 << 18)
        factors = np.full(size, value, dtype=np.uint64)
        factors[0] = 1
        cached = np.cumprod(factors, dtype=np.uint64)
        cached.flags.writeable = False
        if len(_POWERS) > 8:
            _POWERS.clear()
        _POWERS[value] = cached
    return cached[:length]


_POWERS: dict[int, npt.NDArray[np.uint64]] = {}


def id_rows(table: TokenTable, offsets: npt.NDArray[np.int64], base: int, inverse: int) -> npt.NDArray[np.uint64]:
    """``robust_compiled._id_tables``'s rows (ids x 8, 64-byte aligned) from a ``TokenTable`` of the normalised pieces
    ``flat[offsets[i]:offsets[i+1]]``; the units' prefixes are ``table.rel``."""
    ids = len(table.length)
    rows = _aligned(np.zeros((ids, 8), dtype=np.uint64))
    offsets = np.asarray(offsets, dtype=np.uint64)
    rows[:, CHARS] = offsets[:-1] | (offsets[1:] << np.uint64(32))
    rows[:, SUM] = table.total
    longest = int(table.length.max()) + 1 if ids else 1
    rows[:, POWER] = np.take(powers(base, longest), table.length)
    rows[:, INVERSE] = np.take(powers(inverse, longest), table.length)
    spelled = table.length > 0
    ends = (
        table.first.astype(np.uint64)
        | (table.last.astype(np.uint64) << np.uint64(21))
        | (table.first_word.astype(np.uint64) << np.uint64(42))
        | (table.last_word.astype(np.uint64) << np.uint64(43))
        | ((table.first != SPACE).astype(np.uint64) << np.uint64(44))
    )
    rows[:, ENDS] = np.where(spelled, ends, np.uint64(0))
    start = table.inner_start.astype(np.uint64)
    rows[:, UNITS] = start | ((start + table.inner.astype(np.uint64)) << np.uint64(32))
    rows[:, UNIT_PREFIX] = table.rel_first
    return rows


#: bump when what ``cached_rows`` stores changes (``TokenTable``'s facts, ``id_rows``'s layout): older entries are then not read
ROWS_VERSION = "goldfish-prep/robust-id-rows-1"
#: vocabularies above this many ids are cached on disk (smaller ones are built in well under a millisecond)
_CACHED_FROM = 4096


def cached_rows(
    chars: npt.NDArray[np.uint32], offsets: npt.NDArray[np.int64], offset: int, base: int, inverse: int
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """``id_rows`` and the units' prefixes of the normalised pieces ``chars[offsets[i]:offsets[i+1]]`` under the hash
    constants (A, B, B**-1), kept on disk in the tokenizer cache for a whole vocabulary.

    Why: building them costs a process 0.02 to 0.07 s of CPU for 100 k ids, a
    fifth of what separated a whole ``robust`` run of 17 MB from ``goldfish``;
    reading them back about 5 ms. Keyed by the pieces, the constants and
    ``ROWS_VERSION``; a missing, unreadable or malformed entry is rebuilt, one
    that cannot be written is skipped.
    """
    from goldfish_prep.format.commit import write_bytes_atomic
    from goldfish_prep.tokenizers.cache import cache_dir, content_key

    ids = len(offsets) - 1
    folder = cache_dir()
    path = None
    if folder is not None and ids > _CACHED_FROM:
        parts = (
            ROWS_VERSION.encode(),
            f"{offset} {base} {inverse}".encode(),
            np.ascontiguousarray(chars).tobytes(),
            np.asarray(offsets, "<i8").tobytes(),
        )
        path = folder / "robust" / f"{content_key(parts)}.npz"
        try:
            with np.load(path, allow_pickle=False) as stored:
                rows, prefixes = stored["rows"], stored["prefixes"]
            if rows.dtype == np.uint64 and rows.shape == (ids, 8) and prefixes.dtype == np.uint64 and prefixes.ndim == 1:
                return _aligned(rows), prefixes
        except Exception:  # noqa: BLE001 - any unreadable entry (missing, truncated, foreign) is rebuilt
            pass
    table = TokenTable.build(chars, offsets, offset, inverse)
    rows = id_rows(table, offsets, base, inverse)
    if path is not None:
        buffer = io.BytesIO()
        np.savez(buffer, rows=rows, prefixes=table.rel)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(path, buffer.getvalue(), unique=True)  # processes may fill the same entry at once
        except OSError:
            pass
    return rows, table.rel


def _aligned(rows: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """``rows`` copied to start on a 64-byte boundary, so each row is one cache line."""
    memory = np.zeros(rows.size + 8, dtype=np.uint64)
    skip = (-memory.ctypes.data % 64) // 8
    aligned = memory[skip : skip + rows.size].reshape(rows.shape)
    aligned[:] = rows
    return aligned
