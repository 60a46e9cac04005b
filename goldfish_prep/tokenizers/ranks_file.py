"""The ``.tiktoken`` ranks format, read in one place: lines ``<base64 token> <rank>``.

Local ``.tiktoken`` files (``tiktoken_adapter``) and the copies of cl100k's ranks
that faster engines read or ship (``fastokens_engine``, ``bpe_openai_engine``) are
all this format; the engines' copies are parsed to check them equal to the ranks
tiktoken loaded.
"""

from __future__ import annotations

import base64
import binascii

from goldfish_prep.errors import TokenizerError


def parse_ranks(data: bytes, source: str) -> dict[bytes, int]:
    """Token bytes -> rank from a ranks file's bytes; ranks must be 0..n-1 in some order.

    >>> parse_ranks(b"YQ== 0\\nYg== 1\\n", "x.tiktoken")
    {b'a': 0, b'b': 1}
    """
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except (ValueError, binascii.Error) as error:
            raise TokenizerError(
                f"{source} line {number}: not a '<base64 token> <rank>' line of a .tiktoken file ({error}). "
                "Fix: pass an intact .tiktoken file, or a tokenizer.json / SentencePiece .model"
            ) from error
    if sorted(ranks.values()) != list(range(len(ranks))) or not ranks:
        raise TokenizerError(f"{source}: the ranks are not 0..{len(ranks) - 1}, each once (or the file is empty). Fix: check the file")
    return ranks
