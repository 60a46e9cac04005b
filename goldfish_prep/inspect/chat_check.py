"""What the labels of a chat shard must be, recomputed from ``input_ids``, ``assistant_masks`` and the rule.

A chat label is the token's id exactly where the token is the assistant's and
the answer-local rule keeps it, and -100 everywhere else (docs/format.md). The
rule itself is the core's (``chat.masking.mask_answers``, docs/mask-spec.md
"answer-local v1"); this module only gathers its inputs from a shard: the
documents (rows, or ``doc_starts`` in packed shards), the assistant flags, the
ids never dropped, and each document's k (the ``k`` column of a ``--k-field``
run, else the run's k). Packed rows do not record a document's own k, so in a
packed ``--k-field`` output only the placement of labels can be checked, not
which answer tokens were dropped.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import numpy.typing as npt

from goldfish_prep.chat.masking import ChatTokens, mask_answers
from goldfish_prep.config import MaskConfig
from goldfish_prep.errors import InputError
from goldfish_prep.format.chat import Bools, assistant_flags, row_k, run_k
from goldfish_prep.format.columns import Int32s, TokenStream
from goldfish_prep.format.location import Location
from goldfish_prep.format.names import IGNORE_INDEX


@dataclasses.dataclass(frozen=True)
class ChatExpectation:
    """``expected`` labels; ``drop``: recomputed drops (None when the k of the documents is unknown)."""

    expected: Int32s
    assistant: Bools
    eligible: Bools
    drop: Bools | None


def chat_expectation(
    table: Any, stream: TokenStream, protected: npt.NDArray[np.int64], config: MaskConfig, k_field: bool
) -> ChatExpectation:
    """Recompute a chat shard's labels (see the module docstring)."""
    path: Location = stream.path
    assistant = assistant_flags(table, path, stream)
    if len(stream.ids) and (not len(stream.doc_starts) or stream.doc_starts[0] != 0):
        raise InputError(
            str(path),
            "the shard opens inside a conversation carried over from the previous shard",
            "Recreate the output with `goldfish-prep mask`",
            "bad-shard",
        )
    default_k = run_k(config)
    recorded = row_k(table, path)
    known = not (k_field and recorded is None)  # packed --k-field rows carry no k
    doc_k = recorded if recorded is not None else np.full(len(stream.doc_starts), default_k, np.int64)
    lengths = np.diff(np.append(stream.doc_starts, len(stream.ids)))
    token_k = np.repeat(doc_k, lengths) if known else np.full(len(stream.ids), 2, np.int64)
    eligible = assistant & ~np.isin(stream.ids, protected) & (token_k >= 2)
    drop = None
    if known:
        tokens = ChatTokens(stream.ids, stream.doc_starts.astype(np.int64), assistant, eligible, doc_k.astype(np.int32), [])
        drop = mask_answers(tokens, config)
        expected = np.where(assistant & ~drop, stream.ids, np.int32(IGNORE_INDEX)).astype(np.int32)
    else:  # the drops cannot be recomputed: accept them where the rule could drop, check the rest
        dropped = stream.labels == IGNORE_INDEX
        expected = np.where(assistant & ~(dropped & eligible), stream.ids, np.int32(IGNORE_INDEX)).astype(np.int32)
    return ChatExpectation(expected, assistant, eligible, drop)
