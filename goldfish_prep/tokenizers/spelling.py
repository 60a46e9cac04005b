"""How each tokenizer family spells its ids as bytes: one ``bytes`` per id, special ids empty.

``robust`` masks are decided on the text the ids spell (``token_bytes``), so
every adapter answers ``spelled_bytes()`` from its own engine through one of the
functions here:

- tiktoken: each rank's bytes, as the encoding holds them;
- a HF ``tokenizer.json`` by its decoder: ``ByteLevel`` maps GPT-2's printable
  alphabet back to bytes; ``WordPiece`` joins ``##`` continuations to the word
  before and puts a space before every other token (the text BERT-style
  tokenizers decode to); anything else is read as Metaspace (``▁`` is a space,
  ``<0xNN>`` is that byte);
- SentencePiece: Metaspace pieces, control and unknown pieces empty.

For byte-level BPEs the joined bytes are exactly the input's UTF-8; for the others
they are the text as the model sees it (a leading space, normalised case), which
is the same for every copy of a passage, and that is all ``robust`` needs.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_METASPACE = "\u2581"
_WORDPIECE_CONTINUATION = "##"


def tiktoken_spelling(encoding: Any, vocab_size: int) -> list[bytes]:
    """Bytes of every rank of a ``tiktoken.Encoding``; special and unused ids empty."""
    special = {encoding.encode_single_token(text) for text in encoding.special_tokens_set}
    pieces = [b""] * vocab_size
    ranks = getattr(encoding, "_mergeable_ranks", None)
    if isinstance(ranks, dict):  # what decode_single_token_bytes reads for every non-special id: 10x faster than asking per id
        for piece, rank in ranks.items():
            if 0 <= rank < vocab_size and rank not in special:
                pieces[rank] = piece
        return pieces
    for token_id in range(vocab_size):
        if token_id in special:
            continue
        try:
            pieces[token_id] = encoding.decode_single_token_bytes(token_id)
        except KeyError:  # cl100k leaves some ids unused
            pass
    return pieces


def hf_spelling(backend: Any, vocab_size: int) -> list[bytes]:
    """Bytes of every id of a ``tokenizers.Tokenizer``, chosen by its decoder; special added tokens empty.

    >>> from tokenizers import Tokenizer, models, decoders
    >>> wordpiece = Tokenizer(models.WordPiece({"[UNK]": 0, "play": 1, "##ing": 2}, unk_token="[UNK]"))
    >>> wordpiece.decoder = decoders.WordPiece()
    >>> hf_spelling(wordpiece, 3)
    [b' [UNK]', b' play', b'ing']
    """
    decoder = json.loads(backend.to_str()).get("decoder") or {}
    kinds = _types(decoder)
    spell = _byte_level_bytes if "ByteLevel" in kinds else _wordpiece_bytes if "WordPiece" in kinds else _metaspace_bytes
    added = backend.get_added_tokens_decoder()
    pieces = [b""] * vocab_size
    for token_id in range(vocab_size):
        token = backend.id_to_token(token_id)
        if token is None:
            continue
        if token_id in added:
            pieces[token_id] = b"" if added[token_id].special else token.encode("utf-8", "surrogatepass")
        else:
            pieces[token_id] = spell(token)
    return pieces


def sentencepiece_spelling(processor: Any, vocab_size: int) -> list[bytes]:
    """Bytes of every piece of a ``SentencePieceProcessor``; control and unknown pieces empty."""
    pieces = [b""] * vocab_size
    for token_id in range(vocab_size):
        if processor.is_control(token_id) or processor.is_unknown(token_id):
            continue
        pieces[token_id] = _metaspace_bytes(processor.id_to_piece(token_id))
    return pieces


def _types(node: Any) -> set[str]:
    """Every ``type`` named in a decoder description (Sequence decoders nest theirs)."""
    if isinstance(node, dict):
        found = {str(node["type"])} if "type" in node else set()
        for value in node.values():
            found |= _types(value)
        return found
    if isinstance(node, list):
        return set().union(*(_types(item) for item in node)) if node else set()
    return set()


@functools.lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet backwards: the printable character that stands for each byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1), *range(ord("\u00ae"), ord("\u00ff") + 1)]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def _byte_level_bytes(token: str) -> bytes:
    decoder = _byte_decoder()
    try:
        return bytes(decoder[c] for c in token)
    except KeyError:  # not in the alphabet (an added word): the token is its own text
        return token.encode("utf-8", "surrogatepass")


def _wordpiece_bytes(token: str) -> bytes:
    """``##ing`` continues the word before; any other token starts a new word, after a space."""
    if token.startswith(_WORDPIECE_CONTINUATION) and len(token) > len(_WORDPIECE_CONTINUATION):
        return token[len(_WORDPIECE_CONTINUATION) :].encode("utf-8", "surrogatepass")
    return (" " + token).encode("utf-8", "surrogatepass")


def _metaspace_bytes(piece: str) -> bytes:
    match = _BYTE_PIECE.fullmatch(piece)
    if match:
        return bytes([int(match.group(1), 16)])
    return piece.replace(_METASPACE, " ").encode("utf-8", "surrogatepass")
