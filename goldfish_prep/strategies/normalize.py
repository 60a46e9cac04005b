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

Speed: ASCII goes through a 128-entry table; other code points are mapped once
per distinct value with ``unicodedata`` (cached) and spread with numpy, so the
cost per character is a few vectorised passes.
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


def _ascii_table() -> npt.NDArray[np.uint32]:
    """N(c) for c < 128: every ASCII character maps to exactly one character (checked at import)."""
    table = np.zeros(128, dtype=np.uint32)
    for code_point in range(128):
        (mapped,) = normalise_char(code_point)
        table[code_point] = mapped
    return table


_ASCII = _ascii_table()


def normalise(code_points: npt.NDArray[np.uint32], char_starts: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
    """Normalise a flat batch of documents' code points.

    ``char_starts[d]`` is where document d's characters begin (first 0). Returns
    ``(norm, ends)``: the documents' normalised characters end to end (uint32),
    and for every input character the number of normalised characters produced
    by it and all characters before it (int64, shape (n,)), so a token that ends
    after character i ends at normalised position ``ends[i]``.

    >>> cps = np.frombuffer("A  b\u2014".encode("utf-32-le"), dtype=np.uint32)
    >>> norm, ends = normalise(cps, np.zeros(1, np.int64))
    >>> "".join(map(chr, norm)), ends.tolist()
    ('a b-', [1, 2, 2, 3, 4])
    """
    n = len(code_points)
    if n == 0:
        return np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.int64)
    sequence, owner, lengths = _map_chars(code_points)
    duplicate = np.zeros(len(sequence), dtype=np.bool_)
    collapsing = (sequence == SPACE) | (sequence == HYPHEN)
    duplicate[1:] = collapsing[1:] & (sequence[1:] == sequence[:-1])
    # a document's first normalised character never collapses into the previous document
    first = np.concatenate(([0], np.cumsum(lengths)))[np.asarray(char_starts, dtype=np.int64)]
    duplicate[first[first < len(sequence)]] = False
    keep = ~duplicate
    ends = np.cumsum(np.bincount(owner[keep], minlength=n)).astype(np.int64)
    return sequence[keep], ends


def _map_chars(code_points: npt.NDArray[np.uint32]) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Concatenated N(c) of every character, the index of the character owning each output, and len(N(c))."""
    n = len(code_points)
    is_ascii = code_points < 128
    if is_ascii.all():  # the common case: one output per character
        return _ASCII[code_points], np.arange(n, dtype=np.int64), np.ones(n, dtype=np.int64)
    others = np.flatnonzero(~is_ascii)
    distinct, which = np.unique(code_points[others], return_inverse=True)
    mapped = [normalise_char(int(c)) for c in distinct]
    mapped_lengths = np.array([len(m) for m in mapped], dtype=np.int64)
    mapped_flat = np.array([c for m in mapped for c in m], dtype=np.uint32)
    mapped_starts = np.cumsum(mapped_lengths) - mapped_lengths
    lengths = np.ones(n, dtype=np.int64)
    lengths[others] = mapped_lengths[which]
    owner = np.repeat(np.arange(n, dtype=np.int64), lengths)
    # offset of each output within its character's N(c)
    within = np.arange(len(owner), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    sequence = np.empty(len(owner), dtype=np.uint32)
    from_ascii = is_ascii[owner]
    sequence[from_ascii] = _ASCII[code_points[owner[from_ascii]]]
    slot = np.full(n, -1, dtype=np.int64)
    slot[others] = which
    rest = ~from_ascii
    sequence[rest] = mapped_flat[mapped_starts[slot[owner[rest]]] + within[rest]]
    return sequence, owner, lengths
