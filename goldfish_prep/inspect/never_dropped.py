"""The ids the answer-local rule never drops in a chat output: ``--keep-ids`` and the tokenizer's special tokens.

``stats``, ``show`` and ``verify`` need them to recompute or explain a chat
mask. They come from the manifest where a run recorded them, else from the
tokenizer it names (loading one takes seconds, so it is cached).
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

from goldfish_prep.errors import InputError
from goldfish_prep.format.manifest import Manifest


def never_dropped_ids(manifest: Manifest, tokenizer: str | None = None) -> npt.NDArray[np.int64]:
    """Ids the answer-local rule never drops: ``--keep-ids`` and the tokenizer's special tokens.

    ``keep_ids`` are in the manifest's ``chat`` object; the special ids are
    taken from ``chat.special_ids`` where a run recorded them, else from the
    tokenizer the manifest names (or ``tokenizer``, when it moved): its added
    tokens marked special, as ``mask`` protects them (docs/mask-spec.md).
    """
    chat = manifest.get("chat") or {}
    special = chat.get("special_ids")
    if special is None:
        special = _special_ids(tokenizer or manifest.tokenizer.get("spec"))
    return np.unique(np.asarray([*chat.get("keep_ids", []), *special], dtype=np.int64))


@functools.lru_cache(maxsize=8)
def _special_ids(spec: str | None) -> tuple[int, ...]:
    """The tokenizer's added tokens marked special (cached: loading a large tokenizer takes seconds)."""
    from goldfish_prep.errors import TokenizerError
    from goldfish_prep.tokenizers import load_tokenizer

    fix = "Pass --tokenizer with the tokenizer the output was made with (its special tokens are never dropped)"
    if not spec:
        raise InputError(
            "goldfish_manifest.json",
            "the manifest names no tokenizer, so the special tokens of this chat output are unknown",
            fix,
            "no-tokenizer",
        )
    try:
        backend = load_tokenizer(spec).chat_backend()  # type: ignore[attr-defined]
    except (TokenizerError, AttributeError, OSError) as exc:
        raise InputError(str(spec), f"cannot load the chat output's tokenizer here ({exc})", fix, "no-tokenizer") from exc
    return tuple(sorted(int(index) for index, token in backend.get_added_tokens_decoder().items() if token.special))
