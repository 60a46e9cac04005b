"""Rendered conversations to ids and token offsets, encoded exactly as ``apply_chat_template`` does.

``apply_chat_template(..., tokenize=True)`` encodes the rendered text with
``add_special_tokens=False`` and special-token text read as the special token;
``ChatEncoder`` does the same with the same ``tokenizers.Tokenizer``.

Offsets locate each token in the text (the assistant's tokens are those that
overlap its spans). The ``tokenizers`` call that returns offsets is about 1.5x
slower than the one that does not, so for byte-level BPE tokenizers without a
normalizer (GPT-2 style: Llama 3, Qwen, GPT-NeoX...), whose tokens are a
segmentation of the text's UTF-8 bytes, offsets are computed instead: the
running sum of each token's byte length. A text whose token bytes do not add
up to its own size (a tokenizer that alters text after all) is encoded again
with offsets. Offsets and spans are then in bytes; the overlap rule gives the
same tokens in bytes as in characters, because a span's ends are character
boundaries.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

Offsets = npt.NDArray[np.int64]  # (n_tokens, 2): start and end of each token
Spans = list[tuple[int, int]]


class ChatEncoder:
    """Encodes rendered chats with a ``tokenizers.Tokenizer`` shared with the document path."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self._token_bytes = _byte_lengths(backend)

    def encode(self, texts: Sequence[str], spans: Sequence[Spans]) -> list[tuple[npt.NDArray[np.int32], Offsets, Spans]]:
        """Per text: ids (int32), token offsets, and ``spans`` in the offsets' unit."""
        if not texts:
            return []
        with self._reading_special_tokens():
            if self._token_bytes is None:
                return [
                    self._with_offsets(encoding, s)
                    for encoding, s in zip(self._backend.encode_batch(list(texts), add_special_tokens=False), spans)
                ]
            fast = self._backend.encode_batch_fast(list(texts), add_special_tokens=False)
            out = []
            for text, encoding, text_spans in zip(texts, fast, spans):
                ids = np.asarray(encoding.ids, dtype=np.int32)
                ends = np.cumsum(self._token_bytes[ids])
                size = len(text) if text.isascii() else len(text.encode("utf-8"))
                if len(ids) and ends[-1] != size:
                    out.append(self._with_offsets(self._backend.encode(text, add_special_tokens=False), text_spans))
                    continue
                offsets = np.stack([ends - self._token_bytes[ids], ends], axis=1)
                out.append((ids, offsets, text_spans if text.isascii() else _byte_spans(text, text_spans)))
            return out

    @staticmethod
    def _with_offsets(encoding: Any, spans: Spans) -> tuple[npt.NDArray[np.int32], Offsets, Spans]:
        ids = np.asarray(encoding.ids, dtype=np.int32)
        return ids, np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2), list(spans)

    @contextlib.contextmanager
    def _reading_special_tokens(self) -> Iterator[None]:
        previous = self._backend.encode_special_tokens
        self._backend.encode_special_tokens = False
        try:
            yield
        finally:
            self._backend.encode_special_tokens = previous


def _byte_spans(text: str, spans: Spans) -> Spans:
    """Character spans as UTF-8 byte spans of ``text``."""
    return [(len(text[:start].encode("utf-8")), len(text[:end].encode("utf-8"))) for start, end in spans]


def _byte_lengths(backend: Any) -> npt.NDArray[np.int64] | None:
    """Each id's length in UTF-8 bytes for a byte-level BPE without a normalizer, else None (use offsets)."""
    import tokenizers

    if (
        backend.normalizer is not None
        or not isinstance(backend.decoder, tokenizers.decoders.ByteLevel)
        or not isinstance(backend.model, tokenizers.models.BPE)
    ):
        return None
    decode = {character: byte for byte, character in _byte_alphabet().items()}
    added = {index: token.content for index, token in backend.get_added_tokens_decoder().items()}
    vocabulary = backend.get_vocab(with_added_tokens=True)
    lengths = np.zeros(max(vocabulary.values(), default=-1) + 1, dtype=np.int64)
    for piece, index in vocabulary.items():
        if index in added:
            lengths[index] = len(added[index].encode("utf-8"))
        elif all(character in decode for character in piece):
            lengths[index] = len(piece)  # one alphabet character per byte
        else:
            return None  # not a byte-level vocabulary after all
    return lengths


def _byte_alphabet() -> dict[int, str]:
    """GPT-2's byte-to-character table (printable bytes stand for themselves, the rest map to 256+)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(256 + extra)
            extra += 1
    return table
