"""``robust``: goldfish decisions taken on normalised text, so near-copies drop alike (spec v1 and v2).

Goldfish hashes the h token ids ending at a token. A passage copied with a case
change, a double space, a re-wrapped line or curly quotes has other ids after
the edit, so its copies drop different tokens and together supervise them all.
``robust`` decides each token from the *normalised text* it ends in
(``normalize``: NFKD, case-folded, whitespace runs and dashes collapsed, quotes
unified), so copies that differ only by such edits drop the tokens that end at
the same place of their shared text, whatever ids spelled it.

Spec (docs/mask-spec.md, all arithmetic mod 2**64)::

    bytes  = concatenation of the tokens' bytes (special tokens: none)
    chars  = bytes decoded as UTF-8, each invalid byte one U+DC80+b (surrogateescape)
    S      = normalised chars; e_t = normalised end of token t (chars it completes)
    token t is eligible  iff  e_t > e_{t-1}  and  at least h units begin in S[:e_t]
    window = S[s .. e_t - 1], s = where the h-th last unit begun in S[:e_t] begins
    w      = sum_{q=s}^{e_t-1} (S[q] + A) * B**(e_t-1-q);  H = (w ^ (w >> 32)) * M
    drop t iff eligible and H < 2**64 // k

with A, B, M from xxh64 of ``goldfish-prep/robust-v1/{offset,base,mix}``. Spec v2 (the
default) also decides the tokens with 1 to h-1 units before them, on the
window from their document's first unit, adding ``(h - units) * D`` to ``w``
(``D = xxh64(b"goldfish-prep/robust-v1/partial", seed)``); every other
decision is v1's.
A unit begins at every non-space character of S except a word character
(letter, digit or combining mark below U+2E80) right after another: a run of
word characters, or any other single character (punctuation, a CJK ideograph),
so paths and code have as many units as prose has words and punctuation.
The decision needs only the token ids and the tokenizer's bytes per id
(``TokenBytes``), so ``verify`` recomputes it from a shard alone.

Two forms compute it: numpy (``robust_windows``: the normalised text gathered
from a per-id table, windows of units, one prefix sum for every token's hash),
about 3x the speed of decoding and normalising each batch but still about 10x
slower than goldfish; and, by default where llvmlite is installed, a compiled
scan over the tokens (``robust_kernels``: built as LLVM IR by ``robust_llvm``;
``robust_compiled`` is the same scan through numba, chosen with
``GOLDFISH_PREP_ROBUST_KERNEL=compiled``): the same bytes, about 1.1x
goldfish's kernel CPU time, and a whole ``mask`` process at 0.93x to 0.98x
goldfish's speed (docs/performance.md).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from goldfish_prep.errors import ConfigError
from goldfish_prep.strategies import robust_compiled, robust_kernels, robust_llvm, robust_windows
from goldfish_prep.strategies.base import Bools, Extras, Int64s, Strategy
from goldfish_prep.strategies.normalised_pieces import NormalisedPieces

if TYPE_CHECKING:
    from goldfish_prep.config import MaskConfig

#: Newest version of the ``robust`` specification (docs/mask-spec.md), the default; any change that alters one mask bit bumps it
ROBUST_SPEC_VERSION = 2
#: the ``extras`` key robust needs: the tokenizer's ``TokenBytes`` (the same table for every document)
TOKEN_BYTES = "token_bytes"


@dataclasses.dataclass(frozen=True)
class TokenBytes:
    """The bytes each token id spells: ``flat[offsets[i]:offsets[i+1]]`` for id i (special ids: empty)."""

    flat: npt.NDArray[np.uint8]
    offsets: npt.NDArray[np.int64]  # shape (vocab_size + 1,)

    @classmethod
    def from_list(cls, pieces: list[bytes]) -> TokenBytes:
        """Build the table from one bytes object per id.

        >>> TokenBytes.from_list([b"a", b"", b"bc"]).offsets.tolist()
        [0, 1, 1, 3]
        """
        lengths = np.array([len(p) for p in pieces], dtype=np.int64)
        offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
        return cls(np.frombuffer(b"".join(pieces), dtype=np.uint8).copy(), offsets)

    @property
    def vocab_size(self) -> int:
        return len(self.offsets) - 1

    @functools.cached_property
    def pieces(self) -> list[bytes]:
        """One bytes object per id."""
        raw = self.flat.tobytes()
        bounds = self.offsets.tolist()
        return [raw[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    @functools.cached_property
    def lengths(self) -> npt.NDArray[np.int64]:
        return np.diff(self.offsets)

    @functools.cached_property
    def normalised(self) -> NormalisedPieces:
        """N of every id's characters (built on first use, once per table): what the kernel gathers."""
        return NormalisedPieces.cached(self.flat, self.offsets)


def decide(
    ids: npt.NDArray[np.integer],
    starts: npt.NDArray[np.integer],
    table: TokenBytes,
    context_width: int,
    k: int,
    seed: int,
    spec_version: int = 1,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(dropped, eligible) for every token of a flat batch; ``starts[d]`` is where document d begins.

    ``spec_version`` 2 also decides the tokens before a document's h-th unit,
    on the partial window of the units since its start (``robust_windows._partial_term``).

    >>> table = TokenBytes.from_list([b"Hello", b" world", b"\\n", b"world"])
    >>> dropped, eligible = decide(np.array([0, 1, 0, 2, 3]), np.array([0, 2]), table, 1, 2, 0)
    >>> dropped[[1]].tolist() == dropped[[4]].tolist(), eligible.tolist()
    (True, [True, True, True, True, True])
    """
    if spec_version not in (1, 2):
        raise ValueError(f"robust has spec versions 1 and 2, not {spec_version}")
    doc_starts = np.asarray(starts, dtype=np.int64)
    threshold = np.uint64((1 << 64) // k)
    mode = robust_compiled.kernel_mode()
    if len(ids) and mode in ("auto", "llvm"):
        kernels = robust_llvm.compiled()
        if kernels is not None:
            given = np.ascontiguousarray(ids) if ids.dtype in (np.int32, np.int64) else np.asarray(ids, dtype=np.int64)
            return robust_kernels.decide_llvm(kernels, given, doc_starts, table, context_width, seed, threshold, spec_version)
    if len(ids) and robust_compiled.use_compiled(len(ids)):
        # int32 ids (the pipeline's) are read as they are: a copy to int64 would cost about what the scan does
        given = np.ascontiguousarray(ids) if ids.dtype in (np.int32, np.int64) else np.asarray(ids, dtype=np.int64)
        return robust_kernels.decide_compiled(given, doc_starts, table, context_width, seed, threshold, spec_version)
    return robust_windows.decide_blocks(ids, doc_starts, table, context_width, seed, threshold, spec_version)


def start_loading_compiled() -> None:
    """Prepare the compiled kernel at the start of a job that will mask with ``robust``, before workers fork.

    ``auto`` and ``llvm``: the llvmlite scan, compiled here (about 0.05 s), so
    ``--num-proc`` workers forked later inherit it instead of each compiling
    it. ``compiled``: numba, loaded beside the pipeline (``robust_compiled.start_loading``).
    """
    mode = robust_compiled.kernel_mode()
    if mode in ("auto", "llvm"):
        robust_llvm.compiled()
    elif mode == "compiled":
        robust_compiled.start_loading(_warm_compiled)


def _warm_compiled() -> None:
    """Load numba's signatures for the pipeline's ids now, in the loader thread (``robust_kernels.warm_compiled``)."""
    robust_kernels.warm_compiled(TokenBytes.from_list([b"a", b" b", b"\xe2", b"\x80\x94"]), ROBUST_SPEC_VERSION)


class RobustV1Strategy(Strategy):
    """Goldfish decisions on the normalised text the tokens spell (the spec above), from each document's h-th unit on."""

    name = "robust"
    spec_version = 1
    coverage_fix = "mask again without --spec-version 1 (robust spec version 2, the default, covers each document's first units)"
    content_addressed = True
    random_draws = True
    requires = frozenset({TOKEN_BYTES})

    def drop(self, ids: npt.NDArray[np.integer], starts: Int64s, config: MaskConfig, extras: Extras | None = None) -> Bools:
        return self._decide(ids, starts, config, extras)[0]

    def drop_and_eligible(
        self, ids: npt.NDArray[np.integer], starts: Int64s, config: MaskConfig, extras: Extras | None = None
    ) -> tuple[Bools, Int64s]:
        starts = np.asarray(starts, dtype=np.int64)
        dropped, eligible = self._decide(ids, starts, config, extras)
        ends = np.append(starts[1:], len(ids))
        # the few ineligible tokens counted by bisection: a cumsum over all the bools costs about 10x more
        where = np.flatnonzero(~eligible)
        return dropped, (ends - starts) - (np.searchsorted(where, ends) - np.searchsorted(where, starts))

    def _decide(self, ids: npt.NDArray[np.integer], starts: Int64s, config: MaskConfig, extras: Extras | None) -> tuple[Bools, Bools]:
        table = _table(extras)
        if len(ids) and int(np.max(ids)) >= table.vocab_size:
            raise ConfigError(
                f"token id {int(np.max(ids))} is outside the tokenizer's {table.vocab_size} ids; pass the tokenizer the ids were made with"
            )
        return decide_config(ids, np.asarray(starts, dtype=np.int64), table, config)

    def eligible_counts(self, lengths: Int64s, config: MaskConfig) -> Int64s:
        raise ConfigError("robust's eligible positions depend on the text the ids spell: ask drop_and_eligible")

    def eligible_rule(self, config: MaskConfig) -> str:
        return f"tokens that complete normalised text, from the {config.context_width}th unit of each document on"


class RobustStrategy(RobustV1Strategy):
    """The default, spec v2: v1's decisions from a document's h-th unit on, partial windows of units before."""

    spec_version = ROBUST_SPEC_VERSION
    coverage_fix = (
        "robust never drops tokens that spell no text (special tokens, split characters); mask with --strategy goldfish to reach them"
    )

    def eligible_rule(self, config: MaskConfig) -> str:
        return "tokens that complete normalised text, from each document's first unit on"


def decide_config(
    ids: npt.NDArray[np.integer], starts: npt.NDArray[np.integer], table: TokenBytes, config: MaskConfig
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """``decide`` under a config's k, width, seed and spec version: (dropped, eligible) per token."""
    version = config.spec_version if config.spec_version is not None else ROBUST_SPEC_VERSION
    return decide(ids, starts, table, config.context_width, config.k, config.seed, spec_version=version)


def _table(extras: Extras | None) -> TokenBytes:
    tables = (extras or {}).get(TOKEN_BYTES)
    if not tables or not isinstance(tables[0], TokenBytes):
        raise ConfigError("the robust strategy needs the tokenizer's bytes per id (extras token_bytes) to read the text the ids spell")
    return tables[0]
