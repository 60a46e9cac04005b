"""The tokenizer interface every adapter implements.

The pipeline needs little from a tokenizer: encode many texts *without* special
tokens (the special-token policy is applied once, by the pipeline, and recorded
in the manifest), decode for display, the BOS/EOS ids, and an identity that
survives pickling so worker processes can rebuild it from ``spec``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt


class Tokenizer(Protocol):
    #: what the user passed to --tokenizer; ``load_tokenizer(spec)`` rebuilds this tokenizer
    spec: str
    #: "tiktoken", "hf" or "sentencepiece"
    kind: str
    name: str
    vocab_size: int
    bos_id: int | None
    eos_id: int | None
    #: whether BOS is added by default (Llama-style SentencePiece: yes; tiktoken: no)
    default_add_bos: bool

    def encode_batch(self, texts: Sequence[str]) -> list[npt.NDArray[np.int32]]:
        """Ids of each text, no special tokens added; special-token text is encoded as ordinary text."""
        ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def token_pieces(self, ids: Sequence[int]) -> list[str]:
        """The text of each token, one string per id, so that ``"".join(pieces)`` is
        ``decode(ids)`` wherever tokens fall on character boundaries (used by ``show``)."""
        ...

    def spelled_bytes(self) -> list[bytes]:
        """The bytes each id spells, one per id, special ids empty (what ``robust`` masks read)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Identity for the manifest: spec, kind, name, vocab_size, bos_id, eos_id, fingerprint."""
        ...
