"""The bytes each token id spells, for every id of a tokenizer: what ``robust`` masks read.

``robust`` decides on the text the tokens spell, not on the input text, so a
mask is a function of the ids and this table alone: ``verify`` recomputes it
from a shard, and pre-tokenized input is masked exactly like text. For a
byte-level BPE (tiktoken, GPT-2 / Llama 3 / Qwen / DeepSeek ``tokenizer.json``)
the tokens' bytes joined are exactly the input text's UTF-8. For
other vocabularies they are the text as the model sees it (``spelling``: a
SentencePiece ``▁`` is a space, a ``<0xNN>`` piece that byte, a WordPiece
``##`` piece continues the word before). Each adapter spells its own ids
(``Tokenizer.spelled_bytes``).

Special and control tokens (BOS, EOS, ``<|endoftext|>``, ``<unk>``) spell
nothing: they are not text, and a token that covers no text is never dropped by
``robust``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from goldfish_prep.config import MaskConfig
from goldfish_prep.errors import TokenizerError
from goldfish_prep.strategies import Extras
from goldfish_prep.strategies.robust import TOKEN_BYTES, TokenBytes
from goldfish_prep.tokenizers.base import Tokenizer


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
    pieces = tokenizer.spelled_bytes()
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
