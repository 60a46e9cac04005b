"""Tokenizer adapters: one small interface over tiktoken, HF tokenizers and SentencePiece.

``load_tokenizer(spec)`` turns a ``--tokenizer`` value into a ``Tokenizer``
(see ``load`` for the spec forms); ``resolve_special_tokens`` decides whether
BOS/EOS are added. Only tiktoken is imported here: the HF and SentencePiece
adapters import their libraries when a spec needs them.
"""

from goldfish_prep.tokenizers.base import Tokenizer
from goldfish_prep.tokenizers.load import DEFAULT_TOKENIZER, load_tokenizer
from goldfish_prep.tokenizers.special_tokens import resolve_special_tokens

__all__ = ["DEFAULT_TOKENIZER", "Tokenizer", "load_tokenizer", "resolve_special_tokens"]
