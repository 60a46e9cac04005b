"""Plain-Python reference of the ``robust`` spec v1 and v2 (docs/mask-spec.md), one document at a time.

Written from the spec text, independently of the vectorised kernel: no numpy,
Python integers reduced mod 2**64, strings for the normalised text. The tests
hold the kernel equal to this on random and real inputs.
"""

from __future__ import annotations

import unicodedata

import xxhash

MASK64 = (1 << 64) - 1
SINGLE = "\u2018\u2019\u201a\u201b\u2032\u2035\u02bc\u0060"
DOUBLE = "\u201c\u201d\u201e\u201f\u2033\u2036\u00ab\u00bb"
DASH = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"


def normalise_one(char: str) -> str:
    if char.isspace():
        return " "
    out = ""
    for c in unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", char).casefold()):
        if c.isspace():
            out += " "
        elif c in SINGLE:
            out += "'"
        elif c in DOUBLE:
            out += '"'
        elif c in DASH:
            out += "-"
        elif unicodedata.category(c) != "Cf":
            out += c
    return out


def reference_normalised(ids: list[int], pieces: list[bytes]) -> tuple[str, list[int]]:
    """The normalised text S of one document and each token's normalised end e_t."""
    text = b"".join(pieces[i] for i in ids).decode("utf-8", "surrogateescape")
    # normalised text, and how many normalised characters exist after each input character
    norm = ""
    after_char = []
    for char in text:
        for c in normalise_one(char):
            if c in " -" and norm.endswith(c):
                continue
            norm += c
        after_char.append(len(norm))
    # normalised end of each token: the characters whose bytes it completes
    ends = []
    byte_end = 0
    for i in ids:
        byte_end += len(pieces[i])
        done, used = 0, 0
        for char in text:
            width = 1 if 0xDC80 <= ord(char) <= 0xDCFF else len(char.encode("utf-8"))
            if used + width > byte_end:
                break
            used += width
            done += 1
        ends.append(after_char[done - 1] if done else 0)
    return norm, ends


def reference_robust(ids: list[int], pieces: list[bytes], k: int, h: int, seed: int, spec_version: int = 1) -> list[bool]:
    """Drop decisions for one document; ``pieces[i]`` is the bytes of token id i."""
    return reference_decisions(ids, pieces, k, h, seed, spec_version)[0]


def reference_decisions(
    ids: list[int], pieces: list[bytes], k: int, h: int, seed: int, spec_version: int = 1
) -> tuple[list[bool], list[bool]]:
    """(dropped, eligible) for one document. Spec v2 also decides tokens with 1 to h-1 units up to them."""
    norm, ends = reference_normalised(ids, pieces)
    a = xxhash.xxh64_intdigest(b"goldfish-prep/robust-v1/offset", seed=seed)
    b = xxhash.xxh64_intdigest(b"goldfish-prep/robust-v1/base", seed=seed) | 1
    m = xxhash.xxh64_intdigest(b"goldfish-prep/robust-v1/mix", seed=seed) | 1
    d = xxhash.xxh64_intdigest(b"goldfish-prep/robust-v1/partial", seed=seed)

    # where units begin: every non-space character but a word character right after one
    def word(c: str) -> bool:
        return ord(c) < 0x2E80 and (c.isalnum() or unicodedata.category(c).startswith("M"))

    begins = [p for p, c in enumerate(norm) if c != " " and not (p > 0 and word(c) and word(norm[p - 1]))]
    dropped, eligible = [], []
    previous = 0
    for end in ends:
        decision = allowed = False
        if end > previous:
            begun = [p for p in begins if p < end]
            if len(begun) >= h or (spec_version >= 2 and begun):
                allowed = True
                start = begun[-h] if len(begun) >= h else begun[0]  # v2: the units since the document's start
                w = 0
                for c in norm[start:end]:
                    w = (w * b + ord(c) + a) & MASK64
                w = (w + max(h - len(begun), 0) * d) & MASK64
                hashed = ((w ^ (w >> 32)) * m) & MASK64
                decision = hashed < (1 << 64) // k
        dropped.append(decision)
        eligible.append(allowed)
        previous = end
    return dropped, eligible
