"""Ids back to text for display: range checks and per-token pieces.

``show`` prints each token of a document with its label, so it needs the text
of every token, one string per id, such that the strings joined give the
decoded document. Tokens do not always hold whole characters (a byte-level
BPE token can end in the middle of a UTF-8 sequence; SentencePiece byte
fallback spells a character as several ``<0xNN>`` tokens), so the rule is:

    a character belongs to the token that completes it.

The tokens before it that hold only part of it get ``""``. Bytes that never
form a valid character decode to U+FFFD, exactly as ``decode`` shows them.

With token bytes at hand (tiktoken) ``"".join(pieces) == decode(ids)`` holds
for every id list. Where only ``decode`` is available (HF tokenizers,
SentencePiece) it holds for decoders that act locally, which covers the
byte-level, Metaspace, byte-fallback and WordPiece decoders; a decoder that
rewrites earlier text gets each token decoded alone instead.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Sequence

from goldfish_prep.errors import TokenizerError


def check_ids(ids: Sequence[int], vocab_size: int, name: str) -> list[int]:
    """``ids`` as a list of ints, or a ``TokenizerError`` if one lies outside ``[0, vocab_size)``.

    Ids from another tokenizer would otherwise crash deep in a native library.

    >>> check_ids([0, 5], 10, "toy")
    [0, 5]
    """
    values = [int(i) for i in ids]
    bad = [i for i in values if not 0 <= i < vocab_size]
    if bad:
        raise TokenizerError(
            f"token id {bad[0]} is outside the {vocab_size} ids of tokenizer {name!r}. "
            "Fix: pass the --tokenizer the ids were made with (the manifest's tokenizer.spec)"
        )
    return values


def pieces_from_bytes(token_bytes: Sequence[bytes]) -> list[str]:
    """Per-token text from each token's raw bytes (tiktoken, byte-level BPE).

    An incremental UTF-8 decoder holds back an unfinished character until the
    token that completes it; ``errors="replace"`` matches ``bytes.decode``.

    >>> pieces_from_bytes([b"caf", b"\\xc3", b"\\xa9!"])
    ['caf', '', 'é!']
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pieces = [decoder.decode(chunk) for chunk in token_bytes]
    tail = decoder.decode(b"", final=True)
    if tail:
        pieces[-1] += tail
    return pieces


def pieces_by_decoding(decode: Callable[[list[int]], str], ids: Sequence[int]) -> list[str]:
    """Per-token text for tokenizers that only offer ``decode`` (HF tokenizers, SentencePiece).

    A token's text is what it adds to the decoded text of a window that starts
    at the previous finished piece (its tokens together decode to whole
    characters). That left context is what decoders need (a leading space
    stripped only at the start of the text, ``##`` word pieces, byte-fallback
    runs that only decode as a whole) and keeps the work linear. A token whose
    window ends in U+FFFD (half a character) or changes earlier text waits for
    the next token.

    >>> pieces_by_decoding(lambda ids: "".join("ab"[i] for i in ids), [0, 1, 1])
    ['a', 'b', 'b']
    """
    ids = list(ids)
    pieces = [""] * len(ids)
    start = done = 0  # ids[:done] have their pieces; ids[start:done] is the last finished piece
    for end in range(1, len(ids) + 1):
        before = decode(ids[start:done]) if done > start else ""
        after = decode(ids[start:end])
        if after.startswith(before) and not after.endswith("\ufffd"):
            pieces[end - 1] = after[len(before) :]
            start, done = done, end
    whole = decode(ids)
    joined = "".join(pieces)
    if not whole.startswith(joined):
        # a decoder that rewrites earlier text: no split joins back, show each token alone
        return [decode([i]) for i in ids]
    if ids:
        pieces[-1] += whole[len(joined) :]
    return pieces
