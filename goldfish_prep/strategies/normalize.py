"""The normalised view of text that ``robust`` masks are decided on (robust spec v1).

Why a normalised view: goldfish masks hash token ids, so two copies of a passage
that differ by a case change, a double space, a re-wrapped line or a curly quote
hash differently after the edit, drop different tokens, and across enough copies
every token is supervised somewhere. ``robust`` hashes this view instead, where
such copies are the same string.

Each code point ``c`` maps on its own to a short string ``N(c)``:

1. a whitespace character (``str.isspace``) becomes one space;
2. otherwise ``NFKD(casefold(NFKD(c)))``: compatibility forms (full-width
   letters, ligatures, NBSP, ellipsis) spelled out, case folded, accents kept as
   combining marks (so precomposed and decomposed accents agree);
3. in that result, whitespace becomes a space, typographic single quotes become
   ``'``, double quotes ``"``, dashes and minus signs ``-``, and format
   characters (category Cf: soft hyphen, zero-width space, BOM) vanish.

The strings are concatenated, then every space or ``-`` that directly follows
the same character is removed (runs of whitespace, and ``--`` against an em
dash, become one), never across documents. Mapping one code point at a time keeps
the owner of every normalised character known, which is what lets each token be
given the normalised characters it covers.

Speed: ASCII goes through a 128-entry table, the BMP through dense tables (filled
in as code points are first seen);
other code points are mapped once per distinct value with ``unicodedata``
(cached) and spread with numpy. The ``robust`` kernel maps each id's characters
once per tokenizer (``normalised_pieces``) and only per batch the characters of
tokens that split one; ``normalise`` maps a whole batch of code points (the
tests hold both to the spec).
"""

from __future__ import annotations

import functools
import unicodedata

import numpy as np
import numpy.typing as npt

#: characters unified to ' (left/right/low/reversed single quotes, primes, modifier apostrophe, backtick)
SINGLE_QUOTES = "\u2018\u2019\u201a\u201b\u2032\u2035\u02bc\u0060"
#: characters unified to " (double quotes, double primes, guillemets)
DOUBLE_QUOTES = "\u201c\u201d\u201e\u201f\u2033\u2036\u00ab\u00bb"
#: characters unified to - (hyphens, figure/en/em dashes, horizontal bar, minus signs)
DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"
SPACE = 0x20
HYPHEN = 0x2D
#: normalised characters whose runs collapse to one
COLLAPSING = (SPACE, HYPHEN)
#: word characters (letters, digits, combining marks) join into one unit only below this code point;
#: CJK and other scripts written without spaces start at U+2E80, where every character is a unit
WORD_LIMIT = 0x2E80


@functools.lru_cache(maxsize=1 << 16)
def normalise_char(code_point: int) -> tuple[int, ...]:
    """``N(c)`` of the spec as code points (empty for format characters).

    >>> [chr(c) for c in normalise_char(ord("\u201c"))], normalise_char(ord("\\u00ad")), normalise_char(ord("\\ufb01"))
    (['"'], (), (102, 105))
    """
    char = chr(code_point)
    if char.isspace():
        return (SPACE,)
    spelled = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", char).casefold())
    out: list[int] = []
    for c in spelled:
        if c.isspace():
            out.append(SPACE)
        elif c in SINGLE_QUOTES:
            out.append(ord("'"))
        elif c in DOUBLE_QUOTES:
            out.append(ord('"'))
        elif c in DASHES:
            out.append(HYPHEN)
        elif unicodedata.category(c) != "Cf":
            out.append(ord(c))
    return tuple(out)


def is_word_char(code_point: int) -> bool:
    """True for letters, digits and combining marks below ``WORD_LIMIT``: runs of them form one unit.

    >>> is_word_char(ord("a")), is_word_char(ord("_")), is_word_char(0x301), is_word_char(ord("中"))
    (True, False, True, False)
    """
    char = chr(code_point)
    return code_point < WORD_LIMIT and (char.isalnum() or unicodedata.category(char).startswith("M"))


@functools.lru_cache(maxsize=1)
def word_table() -> npt.NDArray[np.bool_]:
    """``is_word_char`` for every code point (and the surrogate escapes): one ``np.take`` per batch, 1.1 MB."""
    table = np.zeros(0x110000, dtype=np.bool_)
    table[:WORD_LIMIT] = [is_word_char(c) for c in range(WORD_LIMIT)]
    return table


def unit_starts(norm: npt.NDArray[np.uint32], doc_starts: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Where a unit of the normalised text begins: at every non-space character, except a word
    character right after a word character of the same document.

    >>> text = "see lib/a_b.c x"
    >>> "".join("^" if u else "." for u in unit_starts(np.array([ord(c) for c in text], np.uint32), np.zeros(1, np.int64)))
    '^...^..^^^^^^.^'
    """
    word = np.take(word_table(), norm)
    starts = norm != SPACE
    starts[1:] &= ~(word[1:] & word[:-1])
    inside = doc_starts[doc_starts < len(norm)]
    starts[inside] = norm[inside] != SPACE
    result: npt.NDArray[np.bool_] = starts
    return result


def _ascii_table() -> npt.NDArray[np.uint32]:
    """N(c) for c < 128: every ASCII character maps to exactly one character (checked at import)."""
    table = np.zeros(128, dtype=np.uint32)
    for code_point in range(128):
        (mapped,) = normalise_char(code_point)
        table[code_point] = mapped
    return table


_ASCII = _ascii_table()


def _bmp_tables(code_points: npt.NDArray[np.uint32]) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint8]]:
    """N(c) for c < 0x10000 where it is one character, and len(N(c)) (capped at 255), as dense tables,
    filled in for the given code points (< 0x10000) on first sight: a tokenizer's vocabulary has a few
    thousand distinct ones, so ``unicodedata`` runs for those instead of all 65,536 (0.2 s)."""
    new = np.unique(code_points[~_BMP_KNOWN[code_points]])
    for code_point in new.tolist():
        mapped = normalise_char(code_point)
        _BMP_LENGTHS[code_point] = min(len(mapped), 255)
        _BMP_SINGLE[code_point] = mapped[0] if len(mapped) == 1 else 0
    _BMP_KNOWN[new] = True
    return _BMP_SINGLE, _BMP_LENGTHS


_BMP_SINGLE = np.zeros(0x10000, dtype=np.uint32)
_BMP_LENGTHS = np.zeros(0x10000, dtype=np.uint8)
_BMP_KNOWN = np.zeros(0x10000, dtype=np.bool_)
_BMP_SINGLE[:128], _BMP_LENGTHS[:128], _BMP_KNOWN[:128] = _ASCII, 1, True


def normalise(
    code_points: npt.NDArray[np.uint32], char_starts: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
    """Normalise a flat batch of documents' code points.

    ``char_starts[d]`` is where document d's characters begin (first 0). Returns
    ``(norm, ends)``: the documents' normalised characters end to end (uint32),
    and for every input character the number of normalised characters produced
    by it and all characters before it (int64, shape (n,)), so a token that ends
    after character i ends at normalised position ``ends[i]``.

    >>> cps = np.frombuffer("A  b—".encode("utf-32-le"), dtype=np.uint32)
    >>> norm, ends = normalise(cps, np.zeros(1, np.int64))
    >>> "".join(map(chr, norm)), ends.tolist()
    ('a b-', [1, 2, 2, 3, 4])
    """
    n = len(code_points)
    if n == 0:
        return np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.int64)
    sequence, lengths = map_chars(code_points)
    duplicate = np.zeros(len(sequence), dtype=np.bool_)
    collapsing = (sequence == SPACE) | (sequence == HYPHEN)
    duplicate[1:] = collapsing[1:] & (sequence[1:] == sequence[:-1])
    out_end = np.cumsum(lengths) if lengths is not None else np.arange(1, n + 1, dtype=np.int64)
    # a document's first normalised character never collapses into the previous document
    first = np.concatenate(([0], out_end))[np.asarray(char_starts, dtype=np.int64)]
    duplicate[first[first < len(sequence)]] = False
    keep = ~duplicate
    if lengths is None:  # one output per character: the kept count is a running sum
        return sequence[keep], np.cumsum(keep, dtype=np.int64)
    owner = np.searchsorted(out_end, np.flatnonzero(duplicate), side="right")  # character that made each removed output
    removed = np.cumsum(np.bincount(owner, minlength=n)[:n])
    return sequence[keep], (out_end - removed).astype(np.int64)


def map_chars(code_points: npt.NDArray[np.uint32]) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64] | None]:
    """Concatenated N(c) of every character, and len(N(c)) per character (None when all are 1)."""
    if int(code_points.max()) < 128:  # the common case
        return _ASCII[code_points], None
    single, lengths = _single_and_lengths(code_points)
    if lengths is None:
        return single, None
    out_end = np.cumsum(lengths)
    sequence = np.empty(int(out_end[-1]), dtype=np.uint32)
    ones = lengths == 1
    sequence[(out_end - 1)[ones]] = single[ones]
    multi = np.flatnonzero(lengths > 1)  # few: ligatures, decomposed accents, compatibility spellings
    if len(multi):
        distinct, which = np.unique(code_points[multi], return_inverse=True)
        mapped = [normalise_char(int(c)) for c in distinct]
        mapped_lengths = np.array([len(m) for m in mapped], dtype=np.int64)
        mapped_flat = np.array([c for m in mapped for c in m], dtype=np.uint32)
        mapped_starts = np.cumsum(mapped_lengths) - mapped_lengths
        reps = lengths[multi]
        within = np.arange(int(reps.sum()), dtype=np.int64) - np.repeat(np.cumsum(reps) - reps, reps)
        sequence[np.repeat(out_end[multi] - reps, reps) + within] = mapped_flat[np.repeat(mapped_starts[which.ravel()], reps) + within]
    return sequence, lengths


def _single_and_lengths(code_points: npt.NDArray[np.uint32]) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64] | None]:
    """N(c) where it is one character (else 0), and len(N(c)) (None when every length is 1)."""
    if int(code_points.max()) < 0x10000:  # two gathers from the dense tables
        bmp_single, bmp_lengths = _bmp_tables(code_points)
        single = bmp_single[code_points]
        small_lengths = bmp_lengths[code_points]
        if (small_lengths == 1).all():
            return single, None
        return single, small_lengths.astype(np.int64)
    inside = code_points < 0x10000
    bmp_single, bmp_lengths = _bmp_tables(code_points[inside])
    single = np.zeros(len(code_points), dtype=np.uint32)
    lengths = np.ones(len(code_points), dtype=np.int64)
    single[inside] = bmp_single[code_points[inside]]
    lengths[inside] = bmp_lengths[code_points[inside]]
    astral = np.flatnonzero(~inside)
    distinct, which = np.unique(code_points[astral], return_inverse=True)
    mapped = [normalise_char(int(c)) for c in distinct]
    lengths[astral] = np.array([len(m) for m in mapped], dtype=np.int64)[which.ravel()]
    single[astral] = np.array([m[0] if len(m) == 1 else 0 for m in mapped], dtype=np.uint32)[which.ravel()]
    return single, (None if (lengths == 1).all() else lengths)
