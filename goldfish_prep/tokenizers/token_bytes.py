"""The bytes each token id spells, for every id of a tokenizer: what ``robust`` masks read.

``robust`` decides on the text the tokens spell, not on the input text, so a
mask is a function of the ids and this table alone: ``verify`` recomputes it
from a shard, and pre-tokenized input is masked exactly like text. For a
byte-level BPE (tiktoken, GPT-2 / Llama 3 / Qwen / DeepSeek ``tokenizer.json``)
the tokens' bytes joined are exactly the input text's UTF-8. For
SentencePiece-style vocabularies they are the text as the model sees it:
``▁`` is a space (so a document gains the leading space the model adds) and
``<0xNN>`` byte-fallback pieces are that byte.

Special and control tokens (BOS, EOS, ``<|endoftext|>``, ``<unk>``) spell
nothing: they are not text, and a token that covers no text is never dropped by
``robust``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

from goldfish_prep.config import MaskConfig
from goldfish_prep.errors import TokenizerError
from goldfish_prep.strategies import Extras
from goldfish_prep.strategies.robust import TOKEN_BYTES, TokenBytes
from goldfish_prep.tokenizers.base import Tokenizer

_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_METASPACE = "\u2581"


def token_bytes(tokenizer: Tokenizer) -> TokenBytes:
    """The table for a loaded tokenizer (built once per process; ~0.1-0.5 s for 100-200 k ids).

    >>> from goldfish_prep.tokenizers import load_tokenizer
    >>> table = token_bytes(load_tokenizer("cl100k_base"))
    >>> bytes(table.flat[table.offsets[13347] : table.offsets[13348]]), table.vocab_size
    (b'Hi', 100277)
    """
    cached = _CACHE.get(id(tokenizer))
    if cached is not None and cached[0] is tokenizer:
        return cached[1]
    table = _build(tokenizer)
    _CACHE[id(tokenizer)] = (tokenizer, table)
    return table


#: per loaded tokenizer (load_tokenizer caches those per process), keyed by identity
_CACHE: dict[int, tuple[Tokenizer, TokenBytes]] = {}


def _build(tokenizer: Tokenizer) -> TokenBytes:
    # chosen by what the engine can do, not by the adapter's kind: an HF vocabulary may be
    # served by a tiktoken engine with the same ids and bytes
    engines = [getattr(tokenizer, name, None) for name in ("_encoding", "_backend", "_processor")]
    if any(hasattr(e, "decode_single_token_bytes") for e in engines):
        pieces = _tiktoken_pieces(next(e for e in engines if hasattr(e, "decode_single_token_bytes")), tokenizer.vocab_size)
    elif any(hasattr(e, "to_str") and hasattr(e, "id_to_token") for e in engines):
        pieces = _hf_pieces(next(e for e in engines if hasattr(e, "to_str") and hasattr(e, "id_to_token")), tokenizer.vocab_size)
    elif any(hasattr(e, "id_to_piece") for e in engines):
        pieces = _sentencepiece_pieces(next(e for e in engines if hasattr(e, "id_to_piece")), tokenizer.vocab_size)
    else:
        raise TokenizerError(
            f"the robust strategy cannot read the token bytes of tokenizer {tokenizer.name!r} ({tokenizer.kind}). "
            "Fix: use a tiktoken, tokenizer.json or SentencePiece tokenizer, or another --strategy"
        )
    for special in (tokenizer.bos_id, tokenizer.eos_id):
        if special is not None and special < len(pieces):
            pieces[special] = b""
    return TokenBytes.from_list(pieces)


def needs_token_bytes(config: MaskConfig) -> bool:
    """Whether the configured strategy reads the text the ids spell (``robust``)."""
    return TOKEN_BYTES in config.strategy_object.requires


def extras_for(config: MaskConfig, table: TokenBytes | None, num_documents: int) -> Extras | None:
    """The ``extras`` a strategy needs for a batch of ``num_documents`` documents (None when it needs none)."""
    if table is None or not needs_token_bytes(config):
        return None
    return {TOKEN_BYTES: [table] * max(num_documents, 1)}


def recorded_table(config: MaskConfig, recorded: Mapping[str, Any]) -> TokenBytes | None:
    """The recorded tokenizer's table when the manifest's strategy needs it (``verify``, ``stats``, ``show``, ``repeats``)."""
    return recorded_token_bytes(recorded) if needs_token_bytes(config) else None


def recorded_token_bytes(recorded: Mapping[str, Any]) -> TokenBytes:
    """The table of the tokenizer a manifest records (``manifest["tokenizer"]``), checked by fingerprint.

    ``verify``, ``stats`` and ``repeats`` recompute robust masks with it; a
    tokenizer that loads under the same spec but spells other bytes would give
    other masks, so a changed fingerprint is an error, not a warning.
    """
    from goldfish_prep.tokenizers.load import load_tokenizer

    tokenizer = load_tokenizer(str(recorded.get("spec")))
    found = tokenizer.describe().get("fingerprint")
    if recorded.get("fingerprint") not in (None, found):
        raise TokenizerError(
            f"tokenizer {recorded.get('spec')!r} now loads with fingerprint {str(found)[:12]}..., the manifest records "
            f"{str(recorded.get('fingerprint'))[:12]}...; robust masks depend on its vocabulary. "
            "Fix: make the recorded tokenizer available unchanged"
        )
    return token_bytes(tokenizer)


def _tiktoken_pieces(encoding: Any, vocab_size: int) -> list[bytes]:
    special = set(getattr(encoding, "_special_tokens", {}).values())
    pieces = [b""] * vocab_size
    for token_id in range(vocab_size):
        if token_id in special:
            continue
        try:
            pieces[token_id] = encoding.decode_single_token_bytes(token_id)
        except KeyError:  # cl100k leaves some ids unused
            pass
    return pieces


def _hf_pieces(backend: Any, vocab_size: int) -> list[bytes]:
    decoder = json.loads(backend.to_str()).get("decoder") or {}
    byte_level = "ByteLevel" in _types(decoder)
    added = backend.get_added_tokens_decoder()
    spell = _byte_level_bytes if byte_level else _metaspace_bytes
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


def _sentencepiece_pieces(processor: Any, vocab_size: int) -> list[bytes]:
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


def _metaspace_bytes(piece: str) -> bytes:
    match = _BYTE_PIECE.fullmatch(piece)
    if match:
        return bytes([int(match.group(1), 16)])
    return piece.replace(_METASPACE, " ").encode("utf-8", "surrogatepass")
