"""The normalised text of a batch of tokens, gathered from a per-id table instead of decoded (robust spec v1).

Why a table: ``N(c)`` (``normalize``) maps every character on its own, so a
token whose bytes are whole UTF-8 characters always contributes the same
normalised string, wherever it stands. Built once per tokenizer, the table turns
"join the bytes, decode, map every character" into one numpy gather per batch;
only the collapsing of " " and "-" runs that cross a token boundary, and tokens
whose bytes split a character, remain to be done per batch.

Exactly the spec's ``S`` and ``e_t``, by these facts:

- runs collapse to one character, so collapsing each piece's runs first (in the
  table) and then the runs across token boundaries gives the spec's ``S``; a
  character across a boundary is removed iff it is " " or "-" and equals the
  last character of the nearest earlier token that produced any (in the same
  document);
- a token that decodes alone (strict UTF-8, the empty token included) begins
  with a lead byte and ends a character, so the batch decodes to its
  characters whatever stands around it; every other token belongs to a *run* of
  such tokens (within one document; empty tokens do not end a run), and a run
  decodes alone as the whole text would: the runs' bytes are decoded here in one
  call, a NUL byte between runs, each character owned by the token holding its
  last byte (``surrogateescape`` for invalid bytes, as the spec).

``tests/test_robust_kernel.py`` aims random and hand-made ids at each of these.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np
import numpy.typing as npt

from goldfish_prep.strategies.normalize import COLLAPSING, HYPHEN, SPACE, map_chars

#: separates the runs of split-character tokens in one decode: ASCII, so it ends any open sequence as the run's end would
_SEPARATOR = b"\x00"


@dataclasses.dataclass(frozen=True)
class NormalisedPieces:
    """``flat[offsets[i]:offsets[i+1]]``: N of the characters of id i, its own " "/"-" runs collapsed.

    ``whole[i]``: id i's bytes decode as UTF-8 alone (empty pieces included); the
    other ids have an empty entry and are decoded per batch. ``lengths`` and
    ``last`` (the entry's last character, 0 when empty) save work per batch.
    ``solid[i]``: whole and not empty, so no character, and no run of split
    tokens, continues across a token of id i: the text before and after it
    decodes independently.
    """

    flat: npt.NDArray[np.uint32]
    offsets: npt.NDArray[np.int64]
    whole: npt.NDArray[np.bool_]
    lengths: npt.NDArray[np.int64]
    last: npt.NDArray[np.uint32]
    solid: npt.NDArray[np.bool_]

    @classmethod
    def build(cls, pieces: list[bytes]) -> NormalisedPieces:
        """The table for one bytes object per id (``from_bytes`` of them joined).

        >>> table = NormalisedPieces.build([b"A  b", b"\\xe2\\x80", b"\\xe2\\x80\\x94-"])
        >>> [chr(c) for c in table.flat], table.offsets.tolist(), table.whole.tolist()
        (['a', ' ', 'b', '-'], [0, 3, 3, 4], [True, False, True])
        """
        lengths = np.array([len(p) for p in pieces], dtype=np.int64)
        joined = np.frombuffer(b"".join(pieces), dtype=np.uint8)
        return cls.from_bytes(joined, np.concatenate(([0], np.cumsum(lengths))).astype(np.int64))

    @classmethod
    def from_bytes(cls, flat: npt.NDArray[np.uint8], offsets: npt.NDArray[np.int64]) -> NormalisedPieces:
        """The table for the ids spelled ``flat[offsets[i]:offsets[i+1]]`` (about 0.02 s for 100 k ids, once per
        tokenizer and process).

        Every piece is decoded in one call, an ASCII separator after each (so no
        sequence runs on into the next piece), each character owned by the piece
        holding its last byte: a piece decodes alone (strict UTF-8) iff none of its
        characters is a ``surrogateescape`` of an invalid byte (the decoder refuses
        encoded surrogates too, so no valid character falls in that range).
        """
        ids = len(offsets) - 1
        sizes = np.diff(offsets) + 1
        where = np.repeat(offsets[:-1] - (np.cumsum(sizes) - sizes), sizes) + np.arange(int(sizes.sum()), dtype=np.int64)
        raw = np.take(flat, where, mode="clip") if len(flat) else np.zeros(len(where), dtype=np.uint8)
        separators = np.cumsum(sizes) - 1
        raw[separators] = _SEPARATOR[0]
        byte_owner = np.repeat(np.arange(ids, dtype=np.int64), sizes)
        byte_owner[separators] = -1
        code_points = np.frombuffer(raw.tobytes().decode("utf-8", "surrogateescape").encode("utf-32-le", "surrogatepass"), dtype="<u4")
        escaped = (code_points >= 0xDC80) & (code_points <= 0xDCFF)
        width = 1 + (code_points >= 0x80) + (code_points >= 0x800) + (code_points >= 0x10000)
        char_owner = byte_owner[np.cumsum(np.where(escaped, 1, width)) - 1]
        whole = np.ones(ids, dtype=np.bool_)
        whole[char_owner[escaped]] = False
        kept = (char_owner >= 0) & whole[np.maximum(char_owner, 0)]
        flat_chars, counts = _collapse_within(code_points[kept].astype(np.uint32), char_owner[kept], ids)
        starts = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        last = np.where(counts > 0, flat_chars[np.maximum(starts[1:] - 1, 0)] if len(flat_chars) else 0, 0).astype(np.uint32)
        return cls(flat_chars, starts, whole, counts, last, whole & (np.diff(offsets) > 0))


def _collapse_within(
    code_points: npt.NDArray[np.uint32], owner: npt.NDArray[np.int64], owners: int
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
    """N of each character with runs collapsed inside each owner (owners ascending), and the count per owner."""
    if len(code_points) == 0:
        return np.zeros(0, dtype=np.uint32), np.zeros(owners, dtype=np.int64)
    sequence, lengths = map_chars(code_points)
    out_owner = owner if lengths is None else np.repeat(owner, lengths)
    repeat = np.zeros(len(sequence), dtype=np.bool_)
    repeat[1:] = (sequence[1:] == sequence[:-1]) & (out_owner[1:] == out_owner[:-1])
    repeat &= (sequence == SPACE) | (sequence == HYPHEN)
    keep = ~repeat
    return sequence[keep], np.bincount(out_owner[keep], minlength=owners).astype(np.int64)


class Spelling(Protocol):
    """The bytes of every id: ``flat[offsets[i]:offsets[i+1]]`` (``robust.TokenBytes``)."""

    @property
    def flat(self) -> npt.NDArray[np.uint8]: ...

    @property
    def offsets(self) -> npt.NDArray[np.int64]: ...


def gather_normalised(
    ids: npt.NDArray[np.int64], starts: npt.NDArray[np.int64], spelling: Spelling, table: NormalisedPieces
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
    """The batch's normalised text ``S`` (documents end to end) and each token's normalised end ``e_t``.

    ``starts[d]`` is where document d begins (first 0); ``spelling``: the bytes per id.
    """
    offset = np.take(table.offsets, ids)
    length = np.take(table.lengths, ids)
    last = np.take(table.last, ids)
    split = np.flatnonzero(~np.take(table.whole, ids))
    chars = _Chars(table.flat, np.zeros(0, dtype=np.uint32))
    if len(split):
        extra, extra_length = _decode_runs(ids, split, starts, spelling, np.flatnonzero(~np.take(table.solid, ids)))
        chars = _Chars(table.flat, extra)
        offset[split] = len(table.flat) + np.cumsum(extra_length) - extra_length
        length[split] = extra_length
        spelled = split[extra_length > 0]
        last[split] = 0
        last[spelled] = chars.at(offset[spelled] + length[spelled] - 1)
    _collapse_across(chars, offset, length, last, starts)
    token_end = np.cumsum(length)
    total = int(token_end[-1]) if len(token_end) else 0
    index = np.int32 if len(table.flat) + total < 1 << 31 else np.int64
    # positions in ``flat``: each token's entry, end to end (split tokens' point past it and are written after)
    where = np.repeat((offset - (token_end - length)).astype(index), length)
    where += np.arange(total, dtype=index)
    norm = np.take(table.flat, where, mode="clip")
    if len(split):  # split tokens' characters, from the decoded runs
        spelled = split[length[split] > 0]
        count = length[spelled]
        within = np.arange(int(count.sum()), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
        taken = np.repeat(offset[spelled] - len(table.flat), count) + within
        norm[np.repeat(token_end[spelled] - count, count) + within] = chars.extra[taken]
    return norm, token_end


def split_characters(
    ids: npt.NDArray[np.integer],
    starts: npt.NDArray[np.int64],
    spelling: Spelling,
    table: NormalisedPieces,
    unsolid: npt.NDArray[np.int64] | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
    """The tokens that split a character (ascending), and their normalised characters: token ``split[j]``'s
    are ``chars[offsets[j]:offsets[j+1]]`` (runs collapsed inside each, as in the table; empty when none).

    ``unsolid``: the tokens whose id is not ``table.solid``, where the caller has them already.
    """
    if unsolid is None:  # few: split and empty tokens (a split one is never solid)
        unsolid = np.flatnonzero(~np.take(table.solid, ids))
    split = unsolid[~np.take(table.whole, np.take(ids, unsolid))]
    if len(split) == 0:
        return split, np.zeros(0, dtype=np.uint32), np.zeros(1, dtype=np.int64)
    chars, lengths = _decode_runs(ids, split, starts, spelling, unsolid)
    return split, np.ascontiguousarray(chars, dtype=np.uint32), np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class _Chars:
    """The table's characters followed by a batch's decoded ones, without copying the table."""

    flat: npt.NDArray[np.uint32]
    extra: npt.NDArray[np.uint32]

    def at(self, where: npt.NDArray[np.int64]) -> npt.NDArray[np.uint32]:
        found = np.take(self.flat, where, mode="clip")
        beyond = np.flatnonzero(where >= len(self.flat))
        if len(beyond):
            found[beyond] = self.extra[where[beyond] - len(self.flat)]
        return found


def _collapse_across(
    chars: _Chars, offset: npt.NDArray[np.int64], length: npt.NDArray[np.int64], last: npt.NDArray[np.uint32], starts: npt.NDArray[np.int64]
) -> None:
    """Drop (in place) each token's first character where it repeats the previous token's last " " or "-".

    The previous token is the nearest earlier one that produced a character, in the same document.
    """
    if length.all():  # the common case: every token produces, so the previous one is t - 1
        after = np.flatnonzero((last[:-1] == COLLAPSING[0]) | (last[:-1] == COLLAPSING[1])) + 1
        previous = after - 1
    else:
        producing = np.flatnonzero(length)
        ends = np.flatnonzero((last[producing[:-1]] == COLLAPSING[0]) | (last[producing[:-1]] == COLLAPSING[1]))
        after, previous = producing[ends + 1], producing[ends]
    if len(after) == 0:
        return
    same_document = np.searchsorted(starts, after, side="right") == np.searchsorted(starts, previous, side="right")
    repeat = (chars.at(offset[after]) == last[previous]) & same_document
    removed = after[repeat]
    offset[removed] += 1
    length[removed] -= 1


def _decode_runs(
    ids: npt.NDArray[np.integer],
    split: npt.NDArray[np.int64],
    starts: npt.NDArray[np.int64],
    spelling: Spelling,
    unsolid: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
    """Normalised characters owned by the split-character tokens ``split`` (in order), and how many each owns.

    Split tokens of one document with only empty tokens between them form a run
    (``unsolid``: the tokens, ascending, whose bytes are empty or do not decode alone); the runs' bytes
    are gathered with numpy and decoded in one call, separated by an ASCII byte
    that no character can absorb.
    """
    new_run = np.ones(len(split), dtype=np.bool_)
    if len(split) > 1:  # a run ends at a token with bytes that decode alone (not at an empty one) or a document start
        rank = np.searchsorted(unsolid, split)  # split[j] is unsolid[rank[j]]: no solid token between two split
        document = np.searchsorted(starts, split, side="right")  # tokens iff every token between them is unsolid
        new_run[1:] = (np.diff(rank) != np.diff(split)) | (document[1:] != document[:-1])
    separated = new_run.copy()  # a separator byte before the token's bytes
    separated[0] = False
    source = np.take(spelling.offsets, ids[split])
    size = np.take(spelling.offsets, ids[split] + 1) - source + separated
    part_start = np.cumsum(size) - size
    where = np.repeat(source - part_start - separated, size) + np.arange(int(size.sum()), dtype=np.int64)
    raw = np.take(spelling.flat, where, mode="clip")
    byte_owner = np.repeat(np.arange(len(split), dtype=np.int64), size)
    raw[part_start[separated]] = _SEPARATOR[0]
    byte_owner[part_start[separated]] = -1
    code_points = np.frombuffer(raw.tobytes().decode("utf-8", "surrogateescape").encode("utf-32-le", "surrogatepass"), dtype="<u4")
    escaped = (code_points >= 0xDC80) & (code_points <= 0xDCFF)
    width = 1 + (code_points >= 0x80) + (code_points >= 0x800) + (code_points >= 0x10000)
    char_owner = byte_owner[np.cumsum(np.where(escaped, 1, width)) - 1]  # the token holding each character's last byte
    real = char_owner >= 0
    return _collapse_within(code_points[real].astype(np.uint32), char_owner[real], len(split))
