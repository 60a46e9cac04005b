"""``robust``'s decisions in one compiled pass over the tokens (numba): the spec's own loop.

Why a second kernel: the numpy kernel (``robust.decide``) materialises the
normalised text and runs about 15 array passes over it, about 10x goldfish's
time, which made the whole ``mask`` pipeline with ``robust`` about 0.7x as fast
as with ``goldfish``. The spec is a left-to-right scan, so a compiled loop does
it in one pass, and nothing is materialised. Per document (mod 2**64)::

    for each normalised character x, at position q:
        skip x if it is " " or "-" and equals the last character kept (runs collapse)
        a unit begins at x unless x is " ", or x and the character kept before are word characters
        at a unit start: remember P (the prefix below, at q) in a ring of the last h starts
        P += (x + A) * B**-q
    a token that kept a character, ending at e, with h units begun:
        w = (P - P at the h-th last unit start) * B**(e-1)   # = sum_{q=s}^{e-1} (S[q] + A) * B**(e-1-q)
        drop iff (w ^ (w >> 32)) * M < 2**64 // k
    spec v2 only, the same with u = 1 to h-1 units begun (a partial window):
        w = (P - P at the document's first unit start) * B**(e-1) + (h - u) * D

which is the spec's ``w`` with the offset ``A`` folded into the prefix sum. The
ring holds the last h unit starts by unit index mod a size above h, so while
fewer than h units have begun it still holds the document's first: v2 costs the
scan one branch where v1 skips the token.
Most tokens do not even loop over their characters: a token whose characters
are all kept adds what its id always adds (``_id_tables``: the sum, the powers,
the units after its first character), read from one 64-byte row per id; only
its first character's unit depends on the character before. Tokens whose first
character collapses, and tokens that split a UTF-8 character (decoded per batch
as for the numpy kernel, ``normalised_pieces.split_characters``), go character
by character. Both kernels are held to the plain-Python reference
(``tests/test_robust_kernel.py``) and give the same bytes.

By default the same scan runs built as LLVM IR (``robust_llvm``), which
needs no numba at run time: numba's start-up (about 0.6 s of CPU) kept a whole
``mask`` process at about 0.75x goldfish's speed. This kernel stays as
``GOLDFISH_PREP_ROBUST_KERNEL=compiled``, and as the second opinion the tests
hold the IR to. numba is imported when first needed (``use_compiled``), or beside the
pipeline from a job's start (``start_loading``), and the compiled
functions are cached on disk (next to this file, or in numba's user cache where
that is read-only), so only the first run on a machine compiles them (a few
seconds); where numba is missing, the numpy kernel runs.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

#: ``GOLDFISH_PREP_ROBUST_KERNEL``: ``numpy``, ``compiled`` or ``auto`` (the default; ``use_compiled``)
KERNEL_VARIABLE = "GOLDFISH_PREP_ROBUST_KERNEL"

_SPACE = 0x20
_HYPHEN = 0x2D


#: columns of a row of ``_id_tables``: one 64-byte row per id, so a token usually costs one cache line
_CHARS, _SUM, _POWER, _INVERSE, _ENDS, _UNITS, _UNIT_PREFIX = range(7)
_LOW = np.uint64(0xFFFFFFFF)
_HIGH = np.uint64(32)
_ONE = np.uint64(1)
#: bits of ``ENDS``: the first character (21 bits), the last, whether each is a word character, whether the first is not " "
_CHAR = np.uint64(0x1FFFFF)
_LAST, _FIRST_WORD, _LAST_WORD, _FIRST_STARTS = np.uint64(21), np.uint64(42), np.uint64(43), np.uint64(44)


def _id_tables(
    chars: npt.NDArray[np.uint32],
    offsets: npt.NDArray[np.int64],
    word: npt.NDArray[np.bool_],
    offset: np.uint64,
    base: np.uint64,
    inverse: np.uint64,
    rows: npt.NDArray[np.uint64],
) -> npt.NDArray[np.uint64]:
    """Per id, what a token adds when its characters are kept whole (the usual case), so most tokens cost
    one row instead of a loop over their characters; fills ``rows`` (ids x 8) and returns the unit prefixes.

    Row i (two 32-bit halves: low | high << 32): ``CHARS``: id i's characters are
    ``chars[low:high]``; ``SUM = sum_j (c_j + A) * B**-j`` over them; ``POWER = B**len``;
    ``INVERSE = B**-len``; ``ENDS``: its first and last characters, whether each is
    a word character, whether the first is not a space; ``UNITS``: the
    units that begin after its first character (they do wherever the token stands)
    are ``prefixes[low:high]``, each the sum up to the unit's first character, the
    first of them also in ``UNIT_PREFIX``.
    """
    prefixes = np.zeros(len(chars), dtype=np.uint64)
    units = 0
    for i in range(len(offsets) - 1):
        total = np.uint64(0)
        power = np.uint64(1)
        inverse_power = np.uint64(1)
        previous = -1
        first_unit = units
        for j in range(offsets[i], offsets[i + 1]):
            x = np.int64(chars[j])
            if previous >= 0 and x != _SPACE and not (word[x] and word[previous]):
                prefixes[units] = total
                units += 1
            total += (np.uint64(x) + offset) * inverse_power
            inverse_power *= inverse
            power *= base
            previous = x
        rows[i, _CHARS] = np.uint64(offsets[i]) | (np.uint64(offsets[i + 1]) << _HIGH)
        rows[i, _SUM] = total
        rows[i, _POWER] = power
        rows[i, _INVERSE] = inverse_power
        if offsets[i + 1] > offsets[i]:
            first = np.int64(chars[offsets[i]])
            rows[i, _ENDS] = (
                np.uint64(first)
                | (np.uint64(previous) << _LAST)
                | (np.uint64(word[first]) << _FIRST_WORD)
                | (np.uint64(word[previous]) << _LAST_WORD)
                | (np.uint64(first != _SPACE) << _FIRST_STARTS)
            )
        rows[i, _UNITS] = np.uint64(first_unit) | (np.uint64(units) << _HIGH)
        rows[i, _UNIT_PREFIX] = prefixes[first_unit] if units > first_unit else np.uint64(0)
    return prefixes[:units]


def id_tables(
    chars: npt.NDArray[np.uint32],
    offsets: npt.NDArray[np.int64],
    word: npt.NDArray[np.bool_],
    constants: tuple[np.uint64, np.uint64, np.uint64],
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """``_id_tables`` compiled, its rows aligned to cache lines: (rows, prefixes)."""
    kernels = compiled()
    assert kernels is not None
    ids = len(offsets) - 1
    memory = np.zeros(ids * 8 + 8, dtype=np.uint64)
    skip = (-memory.ctypes.data % 64) // 8
    rows = memory[skip : skip + ids * 8].reshape(ids, 8)
    prefixes = kernels.id_tables(chars, offsets, word, *constants, rows)
    return rows, prefixes


def _unsolid(ids: npt.NDArray[np.integer], solid: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.int64], int]:
    """The tokens (ascending) whose id is not ``solid`` (empty, or splits a character), and the first token
    whose id is outside the table (-1: none), checked before any table is read at an id."""
    found = np.empty(len(ids), dtype=np.int64)  # few are written: only their pages are ever touched
    count = 0
    for t in range(len(ids)):
        token = ids[t]
        if token < 0 or token >= len(solid):
            return found[:0], t
        found[count] = t
        count += 1 - np.int64(solid[token])
    return found[:count].copy(), -1


def _scan(
    ids: npt.NDArray[np.integer],
    starts: npt.NDArray[np.int64],
    chars: npt.NDArray[np.uint32],
    rows: npt.NDArray[np.uint64],
    prefixes: npt.NDArray[np.uint64],
    split: npt.NDArray[np.int64],
    split_chars: npt.NDArray[np.uint32],
    split_offsets: npt.NDArray[np.int64],
    word: npt.NDArray[np.bool_],
    h: int,
    offset: np.uint64,
    base: np.uint64,
    inverse: np.uint64,
    mix: np.uint64,
    threshold: np.uint64,
    partial: bool,
    missing: np.uint64,
    dropped: npt.NDArray[np.bool_],
    eligible: npt.NDArray[np.bool_],
) -> None:
    """The loop above over a flat batch; written to be compiled by numba.

    ``chars``: the normalised characters of every id, ``rows`` and ``prefixes``
    their ``_id_tables``; ``split`` (ascending): the tokens whose characters are
    instead ``split_chars[split_offsets[j]:split_offsets[j+1]]``; ``word[c]``: c
    is a word character. A token whose first character collapses into the one
    before, or that splits a character, goes character by character. ``partial``:
    spec v2, which also decides tokens with 1 to h-1 units begun, adding
    ``(h - units) * missing`` (the spec's D) to their window's ``w``.
    """
    n = len(ids)
    size = 2
    while size <= h:
        size *= 2
    # P at the last h unit starts, by unit index mod size; size > h, so the slot of the next unit, which may be
    # written before it is known to begin, never holds one of the last h
    ring = np.zeros(size, dtype=np.uint64)
    mask = size - 1
    shift = np.uint64(32)
    next_split = 0
    document = 0
    prefix = np.uint64(0)
    inverse_power = np.uint64(1)  # B**-q, q: characters kept so far
    last_power = inverse  # B**(q-1)
    units = 0
    previous = -1  # the last character kept in this document (-1: none yet)
    previous_word = np.uint64(0)  # 1 where it is a word character
    for t in range(n):
        if document < len(starts) and t == starts[document]:
            units = 0
            previous = -1
            previous_word = np.uint64(0)
            while document < len(starts) and starts[document] == t:  # empty documents too
                document += 1
        dropped[t] = False  # the outputs are not cleared beforehand: every token writes both
        eligible[t] = False
        token = ids[t]
        row = rows[token]
        kept = False
        if next_split < len(split) and split[next_split] == t:  # its characters from the batch's decode
            for i in range(split_offsets[next_split], split_offsets[next_split + 1]):
                x = np.int64(split_chars[i])
                if (x == _SPACE or x == _HYPHEN) and x == previous:
                    continue
                is_word = np.uint64(word[x])
                if x != _SPACE and not (previous_word & is_word):
                    ring[units & mask] = prefix
                    units += 1
                prefix += (np.uint64(x) + offset) * inverse_power
                inverse_power *= inverse
                last_power *= base
                previous = x
                previous_word = is_word
                kept = True
            next_split += 1
        else:
            bounds = row[_CHARS]
            ends = row[_ENDS]
            first = np.int64(ends & _CHAR)
            if (bounds & _LOW) == (bounds >> _HIGH):  # spells nothing
                continue
            if (first == _SPACE or first == _HYPHEN) and first == previous:  # collapses into the character before
                for i in range(np.int64(bounds & _LOW) + 1, np.int64(bounds >> _HIGH)):
                    x = np.int64(chars[i])
                    is_word = np.uint64(word[x])
                    if x != _SPACE and not (previous_word & is_word):
                        ring[units & mask] = prefix
                        units += 1
                    prefix += (np.uint64(x) + offset) * inverse_power
                    inverse_power *= inverse
                    last_power *= base
                    previous = x
                    previous_word = is_word
                    kept = True
            else:
                # kept whole (the usual case): its first unit depends on the character before, the others
                # are the table's; branch-free for the first unit and one more, as most tokens have
                ring[units & mask] = prefix
                units += np.int64(((ends >> _FIRST_STARTS) & ~(previous_word & (ends >> _FIRST_WORD))) & _ONE)
                inner = row[_UNITS]
                low = np.int64(inner & _LOW)
                high = np.int64(inner >> _HIGH)
                ring[units & mask] = prefix + inverse_power * row[_UNIT_PREFIX]
                units += min(high - low, 1)
                for u in range(low + 1, high):
                    ring[units & mask] = prefix + inverse_power * prefixes[u]
                    units += 1
                prefix += inverse_power * row[_SUM]
                inverse_power *= row[_INVERSE]
                last_power *= row[_POWER]
                previous = np.int64((ends >> _LAST) & _CHAR)
                previous_word = (ends >> _LAST_WORD) & _ONE
                kept = True
        if not kept:
            continue
        if units >= h:
            eligible[t] = True
            w = (prefix - ring[(units - h) & mask]) * last_power  # times B**(e-1)
            dropped[t] = ((w ^ (w >> shift)) * mix) < threshold
        elif partial and units > 0:  # ring[0]: the document's first unit start (units < h < size: not yet overwritten)
            eligible[t] = True
            w = (prefix - ring[0]) * last_power + np.uint64(h - units) * missing
            dropped[t] = ((w ^ (w >> shift)) * mix) < threshold


def use_compiled(tokens: int) -> bool:
    """Whether to mask the next ``tokens`` tokens with numba's compiled kernel (both give the same bytes).

    Asked only where the llvmlite scan (``robust_llvm``, the default) is not
    used: under ``compiled``, or under ``auto`` where it does not compile.

    ``GOLDFISH_PREP_ROBUST_KERNEL``: ``numpy`` or ``compiled`` (numba, where
    installed) choose; otherwise (``auto``) a process masks its first
    ``NUMPY_FIRST`` tokens with numpy, then compiled. Loading numba costs a
    process about 0.5 s of CPU (its import and code generator); the compiled
    kernel saves about 75 ns a token, so it pays off after about 6 M tokens,
    which is when ``auto`` loads it: a job of up to about 25 MB of text never
    pays the start-up, and no job spends more than about twice the least it
    could (the rent-or-buy rule). Where a job started the load beside its
    pipeline (``start_loading``), ``auto`` masks compiled as soon as it is done.
    """
    mode = kernel_mode()
    if mode in ("numpy", "llvm"):
        return False
    if mode != "compiled" and _loader:  # loading beside the pipeline (``start_loading``): numpy until it is done
        if _loader[0].is_alive():
            return False
        return compiled() is not None
    if mode != "compiled" and _numpy_tokens[0] < NUMPY_FIRST:
        _numpy_tokens[0] += tokens
        return False
    return compiled() is not None


def kernel_mode() -> str:
    """``GOLDFISH_PREP_ROBUST_KERNEL``, lower case: ``auto`` (the default), ``llvm``, ``compiled`` (numba) or ``numpy``.

    ``auto`` masks with the llvmlite scan (``robust_llvm``) where it compiles, else
    as described at ``use_compiled``; every kernel gives the same bytes.
    """
    return os.environ.get(KERNEL_VARIABLE, "auto").strip().lower()


def start_loading(warm: Callable[[], object]) -> None:
    """Load numba and the cached kernels in a background thread, once per process (``auto`` and ``compiled`` only).

    Why: a whole ``mask`` process spends about 0.3 s importing numba and 0.3 s
    loading the cached machine code (LLVM's start-up), which the rent-or-buy
    rule of ``use_compiled`` pays only after 6 M tokens of the slow numpy
    kernel. Started when a job is known to mask with ``robust`` (before its
    tokenizer loads) and a core is spare (``spare_core``; always under
    ``compiled``), the load overlaps with loading the tokenizer, reading and
    tokenizing on another core; until it is done ``auto`` masks with numpy,
    then compiled from the next batch on. Both kernels give the same bytes, so
    when the switch happens changes no output. ``warm`` calls the kernels once
    on a tiny batch of the pipeline's types, so every signature is loaded from
    numba's cache here, not in the first batch. ``pipeline.pool`` joins the
    thread (``LOADER_NAME``) before it forks workers, which then inherit the
    loaded kernels instead of each loading them.
    """
    mode = kernel_mode()
    if _loader or mode == "numpy" or (mode != "compiled" and not spare_core()):
        return
    thread = threading.Thread(target=_load, args=(warm,), name=LOADER_NAME)
    _loader.append(thread)
    thread.start()


def spare_core() -> bool:
    """Whether this process may use a core that nothing else is busy on (the load average a core below those it may use).

    Why ``auto`` loads beside the pipeline only then: on a machine with every
    core busy, a second thread gains no wall time and costs the load's CPU
    time (about 0.6 s, more than the numpy kernel's for a job under about
    6 M tokens), and its import work contends with the main thread for the
    GIL; ``use_compiled``'s rent-or-buy rule then decides as before.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        load = 0.0
    return cores >= 2 and load <= cores - 1


def _load(warm: Callable[[], object]) -> None:
    try:
        if compiled() is not None:
            warm()
    except Exception:  # noqa: BLE001 - a failed load leaves the numpy kernel, which gives the same bytes
        pass


#: the name of ``start_loading``'s thread (``pipeline.pool`` joins it before forking)
LOADER_NAME = "goldfish-prep-robust-loader"
_loader: list[threading.Thread] = []


#: tokens a process masks with the numpy kernel before it loads the compiled one (``auto``)
NUMPY_FIRST = 6_000_000
_numpy_tokens = [0]


def compiled() -> Kernels | None:
    """The functions above compiled by numba (cached on disk), or None where numba is missing (thread-safe: once)."""
    with _compiling:
        if not _kernels:
            _kernels.append(_compile())
        return _kernels[0]


def _compile() -> Kernels | None:
    try:
        import numba
    except ImportError:
        return None
    try:
        jit = numba.njit(cache=True, nogil=True)
        return Kernels(jit(_id_tables), jit(_unsolid), jit(_scan))
    except RuntimeError:  # no writable cache location: compile in memory, each process
        jit = numba.njit(nogil=True)
        return Kernels(jit(_id_tables), jit(_unsolid), jit(_scan))


_compiling = threading.Lock()
_kernels: list[Kernels | None] = []


class Kernels(NamedTuple):
    """``_id_tables``, ``_unsolid`` and ``_scan``, compiled."""

    id_tables: Callable[..., npt.NDArray[np.uint64]]
    unsolid: Callable[..., tuple[npt.NDArray[np.int64], int]]
    scan: Callable[..., None]
