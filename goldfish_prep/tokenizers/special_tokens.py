"""BOS/EOS: which tokens they are, and whether a run adds them.

Adapters encode without special tokens; the pipeline adds BOS/EOS itself,
once, so the policy is the same for every tokenizer kind and is recorded in the
manifest (``tokenizer.add_bos``, ``tokenizer.add_eos``). The defaults follow
how models are trained: BOS where the tokenizer adds it by default (Llama-style
SentencePiece), EOS whenever the tokenizer has one, because packed rows need a
separator between documents.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from goldfish_prep.errors import TokenizerError
from goldfish_prep.tokenizers.base import Tokenizer

#: token text that means "beginning of sequence", most common first;
#: used when a tokenizer file comes without a config naming its BOS
BOS_NAMES = ("<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>")
#: likewise for "end of sequence"
EOS_NAMES = ("</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>")


def first_known_id(token_to_id: Callable[[str], int | None], names: Sequence[str]) -> int | None:
    """The id of the first of ``names`` the vocabulary has, or None.

    >>> first_known_id({"</s>": 2}.get, EOS_NAMES)
    2
    """
    for name in names:
        token_id = token_to_id(name)
        if token_id is not None:
            return token_id
    return None


def resolve_special_tokens(tok: Tokenizer, add_bos: bool | None, add_eos: bool | None) -> tuple[bool, bool]:
    """Whether to add BOS and EOS to each document; ``None`` means the tokenizer's default.

    Asking for a token the tokenizer does not have is an error rather than a
    silent no-op, so the manifest never claims a BOS/EOS that is not there.

    >>> from goldfish_prep.tokenizers import load_tokenizer
    >>> resolve_special_tokens(load_tokenizer("cl100k_base"), None, None)
    (False, True)
    """
    bos = tok.default_add_bos and tok.bos_id is not None if add_bos is None else add_bos
    eos = tok.eos_id is not None if add_eos is None else add_eos
    if bos and tok.bos_id is None:
        raise TokenizerError(
            f"tokenizer {tok.name!r} ({tok.spec}) has no BOS token, so --bos cannot add one. Fix: drop --bos (or pass --no-bos)"
        )
    if eos and tok.eos_id is None:
        raise TokenizerError(
            f"tokenizer {tok.name!r} ({tok.spec}) has no EOS token, so --eos cannot add one. Fix: drop --eos (or pass --no-eos)"
        )
    return bos, eos
