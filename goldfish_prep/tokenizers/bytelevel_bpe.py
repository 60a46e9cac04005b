"""Whether a HF ``tokenizer.json`` is exactly a tiktoken encoding, and which one.

Byte-level BPE with a regex pre-split (GPT-2, Llama 3, Qwen 2/3, OLMo 2...) is
what tiktoken runs, several times faster than HF ``tokenizers``. The mapping
is taken only when every step is proven to give the same ids; otherwise
``NotExact`` names the first step that is not, and the caller keeps HF:

- no normalizer (or an empty ``Sequence``): any other one rewrites text first;
- pre-tokenizer: ``Split(regex, Isolated)`` then ``ByteLevel(use_regex=False)``,
  or ``ByteLevel(use_regex=True)`` alone (the GPT-2 regex), no prefix space;
  the regex goes through ``split_regex`` (Oniguruma -> fancy-regex, or refusal);
- model: BPE without dropout, byte fallback, word prefixes/suffixes; every
  vocabulary string spells bytes in the byte-level alphabet, all 256 bytes
  are tokens;
- merges = ranks. tiktoken merges, at each step, the adjacent pair whose
  concatenation has the lowest id (leftmost on ties); HF merges the pair that
  comes first in ``merges``. They agree when (a) each merge makes a token, in
  order of its id; (b) every way of splitting a token into two tokens is a
  merge (tiktoken would use it); (c) a text that is a token is that token
  (tiktoken looks it up whole; HF does too with ``ignore_merges``, else
  merging must reach it: checked by the caller's ``encode_words``).
  With (a) and (b) both engines pick, at every step, a pair making the same
  token; they can differ only in which of two *different* pairs making that
  token goes first (tiktoken: the leftmost; HF: the earlier merge). That step
  is not proven here (a vocabulary converted from tiktoken orders such merges
  by the parts' ids, Llama 3 has 5,709 overlapping cases and 36k tokens with a
  part of higher id, which defeats the simple proofs); the conformance tests
  run both BPEs on every overlapping case and 300k random multi-token words
  for each tokenizer the project ships a fast path for, and found none differ;
- added tokens: special only (goldfish-prep encodes special-token text as
  text; a non-special added token would still be cut out of the text by HF).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

from goldfish_prep.tokenizers.split_regex import UnsupportedPattern, translate_split_pattern

#: HF's built-in ByteLevel(use_regex=True) pattern (tokenizers pre_tokenizers/byte_level.rs)
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


class NotExact(ValueError):
    """This tokenizer cannot be run by tiktoken with identical ids; the message says why."""


@dataclasses.dataclass(frozen=True)
class TiktokenPlan:
    """What a ``tiktoken.Encoding`` needs: the fancy-regex split pattern and ranks (= ids)."""

    pattern: str
    ranks: dict[bytes, int]


@functools.cache
def byte_alphabet() -> dict[str, int]:
    """GPT-2's printable stand-in character for each byte (``Ġ`` is the space), as char -> byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars: dict[str, int] = {chr(b): b for b in printable}
    extra = 0
    for b in range(256):
        if b not in printable:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def plan_tiktoken(config: dict[str, Any], encode_words: Callable[[list[str]], list[list[int]]] | None) -> TiktokenPlan:
    """The exact tiktoken equivalent of the tokenizer ``config`` (a parsed ``tokenizer.json``), or ``NotExact``.

    ``encode_words`` runs the HF BPE model alone on byte-level strings; it is
    needed only when the model does not look whole words up first (``ignore_merges``).
    """
    _check_normalizer(config.get("normalizer"))
    pattern = _split_pattern(config.get("pre_tokenizer"))
    _check_added_tokens(config.get("added_tokens") or [])
    model = config.get("model") or {}
    _check_model_options(model)
    vocab: dict[str, int] = model.get("vocab") or {}
    ranks = _byte_ranks(vocab)
    merges = [_merge_pair(m) for m in model.get("merges") or []]
    _check_merges(vocab, merges)
    if not model.get("ignore_merges"):
        _check_words_reach_themselves(vocab, encode_words)
    try:
        translated = translate_split_pattern(pattern)
    except UnsupportedPattern as error:
        raise NotExact(f"its split regex cannot be proven to split alike in tiktoken: {error}") from error
    return TiktokenPlan(translated, ranks)


def _check_normalizer(normalizer: Any) -> None:
    if normalizer is None or (normalizer.get("type") == "Sequence" and not normalizer.get("normalizers")):
        return
    raise NotExact(f"it has a {normalizer.get('type')} normalizer")


def _split_pattern(pre: Any) -> str:
    steps = pre.get("pretokenizers", []) if isinstance(pre, dict) and pre.get("type") == "Sequence" else [pre]
    kinds = [step.get("type") if isinstance(step, dict) else None for step in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        _check_byte_level(steps[0])
        return GPT2_PATTERN
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        split = steps[0]
        _check_byte_level(steps[1])
        regex = (split.get("pattern") or {}).get("Regex")
        if split.get("behavior") != "Isolated" or split.get("invert") or not isinstance(regex, str):
            raise NotExact("its Split pre-tokenizer is not an isolating regex split")
        return regex
    raise NotExact(f"its pre-tokenizer ({' + '.join(map(str, kinds))}) is not one regex split then ByteLevel")


def _check_byte_level(step: dict[str, Any]) -> None:
    if step.get("add_prefix_space"):
        raise NotExact("its ByteLevel pre-tokenizer adds a prefix space")


def _check_added_tokens(added: Sequence[dict[str, Any]]) -> None:
    ordinary = [token.get("content") for token in added if not token.get("special")]
    if ordinary:
        raise NotExact(f"it has {len(ordinary)} non-special added token(s) (e.g. {ordinary[0]!r}) that split text")


def _check_model_options(model: dict[str, Any]) -> None:
    if model.get("type") != "BPE":
        raise NotExact(f"its model is {model.get('type')}, not BPE")
    for option in ("dropout", "continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(option):
            raise NotExact(f"its BPE model sets {option}")
    if model.get("byte_fallback"):
        raise NotExact("its BPE model uses byte fallback")


def _byte_ranks(vocab: dict[str, int]) -> dict[bytes, int]:
    alphabet = byte_alphabet()
    ranks: dict[bytes, int] = {}
    for token, rank in vocab.items():
        try:
            ranks[bytes(alphabet[char] for char in token)] = rank
        except KeyError:
            raise NotExact(f"its vocabulary entry {token!r} is not in the byte-level alphabet") from None
    if len(ranks) != len(vocab) or len(set(ranks.values())) != len(ranks):
        raise NotExact("its vocabulary maps two entries to one id")
    if any(bytes([b]) not in ranks for b in range(256)):
        raise NotExact("not every byte is a token")
    return ranks


def _merge_pair(merge: Any) -> tuple[str, str]:
    parts = merge.split(" ") if isinstance(merge, str) else list(merge)
    if len(parts) != 2:
        raise NotExact(f"its merge {merge!r} is not a pair")
    return parts[0], parts[1]


def _check_merges(vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
    """Conditions (a) and (b) of the module docstring."""
    index: dict[tuple[str, str], int] = {}
    last = -1
    for position, (left, right) in enumerate(merges):
        made = vocab.get(left + right)
        if made is None or left not in vocab or right not in vocab:
            raise NotExact(f"its merge {left!r} + {right!r} does not join two tokens into a token")
        if made < last:
            raise NotExact(f"its merges are not in the order of the ids they make ({left + right!r})")
        last = made
        if (left, right) in index:
            raise NotExact(f"its merge {left!r} + {right!r} is listed twice")
        index[(left, right)] = position
    for token in vocab:
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in vocab and right in vocab and (left, right) not in index:
                raise NotExact(f"the tokens {left!r} + {right!r} make the token {token!r} but are not a merge")


def _check_words_reach_themselves(vocab: dict[str, int], encode_words: Callable[[list[str]], list[list[int]]] | None) -> None:
    """(c) without ``ignore_merges``: BPE on the text of each token must give that token."""
    if encode_words is None:
        raise NotExact("its BPE model merges whole words (ignore_merges is off) and no BPE run was given to check it")
    words = list(vocab)
    for word, ids in zip(words, encode_words(words)):
        if ids != [vocab[word]]:
            raise NotExact(f"BPE does not turn the text of token {word!r} into that token")
