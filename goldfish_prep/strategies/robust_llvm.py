"""``robust``'s compiled scan built directly as LLVM IR (llvmlite): numba's kernel without numba's start-up.

Why: the numba scan (``robust_compiled``) masks about as fast as goldfish, but
a process pays about 0.6 to 0.9 s of CPU to get it (importing numba, then
numba's typing and lowering registries on the first call, even with the
machine code cached on disk): more than the numpy kernel spends on a job of
20 MB, so a whole ``mask --strategy robust`` process stayed at about 0.75x
``goldfish``'s speed. llvmlite (numba's own code generator, wheels for Linux,
macOS and Windows) imports in about 20 ms, and the scan below, written with
its IR builder, compiles in about 50 ms (its machine code is then cached on
disk: 1 to 2 ms to load): cheap enough for every process to use from its first
token.

The IR is ``robust_compiled._scan`` statement for statement (read its
docstring for the loop), over the same per-id rows, which are built here with
numpy (``id_rows``). Mutable state lives in
stack slots that LLVM's default pipeline turns into registers.
``tests/test_robust_kernel.py`` holds it to the plain-Python reference and to
the other kernels, v1 and v2.
"""

from __future__ import annotations

import ctypes
import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from goldfish_prep.strategies.id_rows import CHARS, ENDS, INVERSE, POWER, SUM, UNIT_PREFIX, UNITS

_SPACE, _HYPHEN = 0x20, 0x2D


#: the scan's arguments, in order: (name, C type); pointers are numpy arrays' addresses
_ARGUMENTS = (
    ("ids", "ids"),
    ("n", "i64"),
    ("starts", "p64"),
    ("documents", "i64"),
    ("chars", "p32"),
    ("rows", "p64"),
    ("prefixes", "p64"),
    ("split", "p64"),
    ("splits", "i64"),
    ("split_chars", "p32"),
    ("split_offsets", "p64"),
    ("word", "p8"),
    ("h", "i64"),
    ("offset", "i64"),
    ("base", "i64"),
    ("inverse", "i64"),
    ("mix", "i64"),
    ("threshold", "i64"),
    ("partial", "i64"),
    ("missing", "i64"),
    ("ring", "p64"),
    ("ring_mask", "i64"),
    ("dropped", "p8"),
    ("eligible", "p8"),
)


def _build_scan(module: Any, name: str, id_bits: int) -> None:  # noqa: PLR0915 - one loop, as in robust_compiled._scan
    """Emit ``robust_compiled._scan`` into ``module`` as ``name``, for ids of ``id_bits`` bits."""
    from llvmlite import ir

    i1, i8, i32, i64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
    kinds = {"ids": ir.IntType(id_bits).as_pointer(), "i64": i64, "p64": i64.as_pointer(), "p32": i32.as_pointer(), "p8": i8.as_pointer()}
    function = ir.Function(module, ir.FunctionType(ir.VoidType(), [kinds[kind] for _, kind in _ARGUMENTS]), name=name)
    a = {argument: value for (argument, _), value in zip(_ARGUMENTS, function.args)}
    for value in function.args:
        if isinstance(value.type, ir.PointerType):
            value.add_attribute("noalias")
    b = ir.IRBuilder(function.append_basic_block("entry"))

    def block(label: str) -> Any:
        return function.append_basic_block(label)

    def slot(initial: Any) -> Any:
        memory = b.alloca(initial.type)
        b.store(initial, memory)
        return memory

    def at(pointer: Any, index: Any) -> Any:
        return b.load(b.gep(pointer, [index]))

    def const(value: int) -> Any:
        return ir.Constant(i64, value)

    t = slot(const(0))
    next_split = slot(const(0))
    document = slot(const(0))
    prefix = slot(const(0))
    inverse_power = slot(const(1))
    last_power = slot(a["inverse"])
    units = slot(const(0))
    previous = slot(const(-1))
    previous_word = slot(const(0))
    kept = slot(ir.Constant(i1, 0))
    index = slot(const(0))
    ring, ring_mask = a["ring"], a["ring_mask"]

    def begin_unit(value: Any) -> None:
        """ring[units & mask] = value; the caller decides whether units grows."""
        b.store(value, b.gep(ring, [b.and_(b.load(units), ring_mask)]))

    def char_loop(source: Any, low: Any, high: Any, check: bool, done: Any) -> None:
        """Each of ``source[low:high]``, as the scan's character loop; then branch to ``done``."""
        b.store(low, index)
        head, body, skip, unit, add, step = (block(x) for x in ("c_head", "c_body", "c_skip", "c_unit", "c_add", "c_step"))
        b.branch(head)
        b.position_at_end(head)
        i = b.load(index)
        b.cbranch(b.icmp_signed("<", i, high), body, done)
        b.position_at_end(body)
        x = b.zext(at(source, i), i64)
        if check:
            collapsing = b.or_(b.icmp_unsigned("==", x, const(_SPACE)), b.icmp_unsigned("==", x, const(_HYPHEN)))
            b.cbranch(b.and_(collapsing, b.icmp_signed("==", x, b.load(previous))), step, skip)
        else:
            b.branch(skip)
        b.position_at_end(skip)
        is_word = b.zext(at(a["word"], x), i64)
        starts = b.and_(b.icmp_unsigned("!=", x, const(_SPACE)), b.icmp_unsigned("==", b.and_(b.load(previous_word), is_word), const(0)))
        b.cbranch(starts, unit, add)
        b.position_at_end(unit)
        begin_unit(b.load(prefix))
        b.store(b.add(b.load(units), const(1)), units)
        b.branch(add)
        b.position_at_end(add)
        power = b.load(inverse_power)
        b.store(b.add(b.load(prefix), b.mul(b.add(x, a["offset"]), power)), prefix)
        b.store(b.mul(power, a["inverse"]), inverse_power)
        b.store(b.mul(b.load(last_power), a["base"]), last_power)
        b.store(x, previous)
        b.store(is_word, previous_word)
        b.store(ir.Constant(i1, 1), kept)
        b.branch(step)
        b.position_at_end(step)
        b.store(b.add(b.load(index), const(1)), index)
        b.branch(head)

    head, body, latch, exit_ = block("head"), block("body"), block("latch"), block("exit")
    b.branch(head)
    b.position_at_end(head)
    b.cbranch(b.icmp_signed("<", b.load(t), a["n"]), body, exit_)

    # a document begins at t (empty documents too): reset the units and the character before
    b.position_at_end(body)
    tv = b.load(t)
    doc_check, doc_reset, doc_skip, doc_skip_check, doc_next, tokens = (
        block(x) for x in ("doc_check", "doc_reset", "doc_skip", "doc_skip_check", "doc_next", "tokens")
    )
    b.cbranch(b.icmp_signed("<", b.load(document), a["documents"]), doc_check, tokens)
    b.position_at_end(doc_check)
    b.cbranch(b.icmp_signed("==", at(a["starts"], b.load(document)), tv), doc_reset, tokens)
    b.position_at_end(doc_reset)
    b.store(const(0), units)
    b.store(const(-1), previous)
    b.store(const(0), previous_word)
    b.branch(doc_skip)
    b.position_at_end(doc_skip)
    b.cbranch(b.icmp_signed("<", b.load(document), a["documents"]), doc_skip_check, tokens)
    b.position_at_end(doc_skip_check)
    b.cbranch(b.icmp_signed("==", at(a["starts"], b.load(document)), tv), doc_next, tokens)
    b.position_at_end(doc_next)
    b.store(b.add(b.load(document), const(1)), document)
    b.branch(doc_skip)

    b.position_at_end(tokens)
    b.store(ir.Constant(i8, 0), b.gep(a["dropped"], [tv]))
    b.store(ir.Constant(i8, 0), b.gep(a["eligible"], [tv]))
    b.store(ir.Constant(i1, 0), kept)
    token = at(a["ids"], tv)
    token = b.sext(token, i64) if id_bits < 64 else token
    row = b.gep(a["rows"], [b.mul(token, const(8))])
    decide = block("decide")
    split_check, split_path, table_path = block("split_check"), block("split_path"), block("table_path")
    b.cbranch(b.icmp_signed("<", b.load(next_split), a["splits"]), split_check, table_path)
    b.position_at_end(split_check)
    b.cbranch(b.icmp_signed("==", at(a["split"], b.load(next_split)), tv), split_path, table_path)

    b.position_at_end(split_path)  # its characters from the batch's decode
    j = b.load(next_split)
    split_done = block("split_done")
    char_loop(a["split_chars"], at(a["split_offsets"], j), at(a["split_offsets"], b.add(j, const(1))), True, split_done)
    b.position_at_end(split_done)
    b.store(b.add(b.load(next_split), const(1)), next_split)
    b.branch(decide)

    b.position_at_end(table_path)
    bounds = at(row, const(CHARS))
    ends = at(row, const(ENDS))
    low32 = const(0xFFFFFFFF)
    first = b.and_(ends, const(0x1FFFFF))
    low = b.and_(bounds, low32)
    high = b.lshr(bounds, const(32))
    spells = block("spells")
    b.cbranch(b.icmp_unsigned("==", low, high), latch, spells)  # spells nothing
    b.position_at_end(spells)
    collapse_path, whole_path = block("collapse_path"), block("whole_path")
    collapsing = b.or_(b.icmp_unsigned("==", first, const(_SPACE)), b.icmp_unsigned("==", first, const(_HYPHEN)))
    b.cbranch(b.and_(collapsing, b.icmp_signed("==", first, b.load(previous))), collapse_path, whole_path)
    b.position_at_end(collapse_path)  # its first character collapses into the one before
    char_loop(a["chars"], b.add(low, const(1)), high, False, decide)

    b.position_at_end(whole_path)  # kept whole: the row's sums
    begin_unit(b.load(prefix))
    one = const(1)
    first_starts = b.and_(b.and_(b.lshr(ends, const(44)), b.xor(b.and_(b.load(previous_word), b.lshr(ends, const(42))), const(-1))), one)
    b.store(b.add(b.load(units), first_starts), units)
    inner = at(row, const(UNITS))
    inner_low = b.and_(inner, low32)
    inner_high = b.lshr(inner, const(32))
    power = b.load(inverse_power)
    base_prefix = b.load(prefix)
    begin_unit(b.add(base_prefix, b.mul(power, at(row, const(UNIT_PREFIX)))))
    count = b.sub(inner_high, inner_low)
    b.store(b.add(b.load(units), b.select(b.icmp_signed("<", count, one), count, one)), units)
    b.store(b.add(inner_low, one), index)
    u_head, u_body, u_done = block("u_head"), block("u_body"), block("u_done")
    b.branch(u_head)
    b.position_at_end(u_head)
    u = b.load(index)
    b.cbranch(b.icmp_signed("<", u, inner_high), u_body, u_done)
    b.position_at_end(u_body)
    begin_unit(b.add(base_prefix, b.mul(power, at(a["prefixes"], u))))
    b.store(b.add(b.load(units), one), units)
    b.store(b.add(u, one), index)
    b.branch(u_head)
    b.position_at_end(u_done)
    b.store(b.add(base_prefix, b.mul(power, at(row, const(SUM)))), prefix)
    b.store(b.mul(power, at(row, const(INVERSE))), inverse_power)
    b.store(b.mul(b.load(last_power), at(row, const(POWER))), last_power)
    b.store(b.and_(b.lshr(ends, const(21)), const(0x1FFFFF)), previous)
    b.store(b.and_(b.lshr(ends, const(43)), one), previous_word)
    b.store(ir.Constant(i1, 1), kept)
    b.branch(decide)

    b.position_at_end(decide)
    full, partial_check, partial_path = block("full"), block("partial_check"), block("partial_path")
    b.cbranch(b.load(kept), block_after := block("kept"), latch)
    b.position_at_end(block_after)
    units_now = b.load(units)
    b.cbranch(b.icmp_signed(">=", units_now, a["h"]), full, partial_check)

    def finish(w: Any) -> None:
        hashed = b.mul(b.xor(w, b.lshr(w, const(32))), a["mix"])
        b.store(ir.Constant(i8, 1), b.gep(a["eligible"], [tv]))
        b.store(b.zext(b.icmp_unsigned("<", hashed, a["threshold"]), i8), b.gep(a["dropped"], [tv]))
        b.branch(latch)

    b.position_at_end(full)
    start = at(ring, b.and_(b.sub(units_now, a["h"]), ring_mask))
    finish(b.mul(b.sub(b.load(prefix), start), b.load(last_power)))
    b.position_at_end(partial_check)  # ring[0]: the document's first unit start
    b.cbranch(b.and_(b.icmp_signed("!=", a["partial"], const(0)), b.icmp_signed(">", units_now, const(0))), partial_path, latch)
    b.position_at_end(partial_path)
    w = b.mul(b.sub(b.load(prefix), at(ring, const(0))), b.load(last_power))
    finish(b.add(w, b.mul(b.sub(a["h"], units_now), a["missing"])))

    b.position_at_end(latch)
    b.store(b.add(b.load(t), const(1)), t)
    b.branch(head)
    b.position_at_end(exit_)
    b.ret_void()


def _build_unsolid(module: Any, name: str, id_bits: int) -> None:
    """Emit ``robust_compiled._unsolid`` into ``module`` as ``name``: one pass that lists the tokens whose id is not
    solid (ascending, into ``found``) and stops at the first id outside the table; returns the count, or -1 - t."""
    from llvmlite import ir

    i8, i64 = ir.IntType(8), ir.IntType(64)
    arguments = [ir.IntType(id_bits).as_pointer(), i64, i8.as_pointer(), i64, i64.as_pointer()]
    function = ir.Function(module, ir.FunctionType(i64, arguments), name=name)
    ids, n, solid, vocab, found = function.args
    for value in (ids, solid, found):
        value.add_attribute("noalias")
    entry, head, body, check, outside, done = (
        function.append_basic_block(x) for x in ("entry", "head", "body", "check", "outside", "done")
    )
    b = ir.IRBuilder(entry)
    t_slot, count_slot = b.alloca(i64), b.alloca(i64)
    b.store(ir.Constant(i64, 0), t_slot)
    b.store(ir.Constant(i64, 0), count_slot)
    b.branch(head)
    b.position_at_end(head)
    t = b.load(t_slot)
    b.cbranch(b.icmp_signed("<", t, n), body, done)
    b.position_at_end(body)
    token = b.load(b.gep(ids, [t]))
    token = b.sext(token, i64) if id_bits < 64 else token
    b.cbranch(b.icmp_unsigned(">=", token, vocab), outside, check)  # unsigned: negative ids too
    b.position_at_end(check)
    count = b.load(count_slot)
    b.store(t, b.gep(found, [count]))  # written always, kept only where the id is not solid (branch-free)
    is_solid = b.zext(b.icmp_unsigned("!=", b.load(b.gep(solid, [token])), ir.Constant(i8, 0)), i64)
    b.store(b.add(count, b.sub(ir.Constant(i64, 1), is_solid)), count_slot)
    b.store(b.add(t, ir.Constant(i64, 1)), t_slot)
    b.branch(head)
    b.position_at_end(outside)
    b.ret(b.sub(ir.Constant(i64, -1), t))
    b.position_at_end(done)
    b.ret(b.load(count_slot))


Scan = Callable[..., None]


#: bump when what the object cache stores changes (the IR text is in the key: any edit of the scan changes it)
OBJECT_VERSION = "goldfish-prep/robust-llvm-object-1"


class Compiled:
    """The scans for int32 and int64 ids, compiled once per process; kept alive with their execution engine.

    The machine code is kept on disk in the tokenizer cache
    (``$GOLDFISH_PREP_CACHE/robust/*.o``, beside the normalised tables), keyed
    by the IR text, llvmlite's version and the target triple, and checked by a
    sha256 of its bytes: building the IR costs about 5 ms, generating the code
    about 45 ms, loading it 1 to 2 ms. The code is generated for the triple's
    generic CPU, so a cache shared between machines of one kind stays valid.
    A missing, damaged or unwritable entry means compiling, never a failure.
    """

    def __init__(self) -> None:
        import llvmlite
        import llvmlite.binding as llvm
        from llvmlite import ir

        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        module = ir.Module(name="goldfish_prep_robust")
        for bits in (32, 64):
            _build_scan(module, f"scan_i{bits}", bits)
            _build_unsolid(module, f"unsolid_i{bits}", bits)
        text = str(module)
        target = llvm.Target.from_default_triple()
        machine = target.create_target_machine(opt=2)
        key = (OBJECT_VERSION, llvmlite.__version__, target.triple, text)
        code = _read_object(key)
        if code is None:
            parsed = llvm.parse_assembly(text)
            parsed.verify()
            try:  # llvmlite's new pass manager (0.44 on): stack slots to registers, the loop tidied
                builder = llvm.create_pass_builder(machine, llvm.create_pipeline_tuning_options(speed_level=2))
                builder.getModulePassManager().run(parsed, builder)
            except AttributeError:  # an older llvmlite: the code generator's own optimisation only (the same results)
                pass
            code = machine.emit_object(parsed)
            _write_object(key, code)
        self._engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), machine)
        self._engine.add_object_file(llvm.ObjectFileRef.from_data(code))
        self._engine.finalize_object()
        types = {"i64": ctypes.c_int64, "ids": ctypes.c_void_p, "p64": ctypes.c_void_p, "p32": ctypes.c_void_p, "p8": ctypes.c_void_p}
        prototype = ctypes.CFUNCTYPE(None, *(types[kind] for _, kind in _ARGUMENTS))
        addresses = {name: self._engine.get_function_address(name) for name in _FUNCTIONS}
        if not all(addresses.values()):
            raise RuntimeError("a compiled function has no address")
        self.scans = {bits: prototype(addresses[f"scan_i{bits}"]) for bits in (32, 64)}
        finder = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p)
        self.unsolids = {bits: finder(addresses[f"unsolid_i{bits}"]) for bits in (32, 64)}


#: the functions of the module: the scan and ``unsolid`` for int32 and int64 ids
_FUNCTIONS = tuple(f"{name}_i{bits}" for name in ("scan", "unsolid") for bits in (32, 64))


def _object_path(key: tuple[str, ...]) -> Path | None:
    from goldfish_prep.tokenizers.cache import cache_dir, content_key

    folder = cache_dir()
    return None if folder is None else folder / "robust" / f"{content_key(part.encode() for part in key)}.o"


def _read_object(key: tuple[str, ...]) -> bytes | None:
    """The cached machine code for ``key``, or None (missing, unreadable, or not the bytes that were written)."""
    path = _object_path(key)
    try:
        stored = path.read_bytes() if path is not None else b""
    except OSError:
        return None
    digest, code = stored[:32], stored[32:]
    return code if len(stored) > 32 and hashlib.sha256(code).digest() == digest else None


def _write_object(key: tuple[str, ...], code: bytes) -> None:
    """Keep the machine code for later processes (its sha256 first); a cache that cannot be written is skipped."""
    from goldfish_prep.format.commit import write_bytes_atomic

    path = _object_path(key)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, hashlib.sha256(code).digest() + code, unique=True)  # processes may write it at once
    except OSError:
        pass


def compiled() -> Compiled | None:
    """The compiled scans (once per process, thread-safe), or None where llvmlite is missing or fails."""
    with _lock:
        if not _compiled:
            try:
                _compiled.append(Compiled())
            except Exception:  # noqa: BLE001 - no llvmlite, or no native target: the numpy kernel gives the same bytes
                _compiled.append(None)
        return _compiled[0]


_lock = threading.Lock()
_compiled: list[Compiled | None] = []


def _address(array: npt.NDArray[Any]) -> int:
    address: int = array.ctypes.data
    return address


def unsolid(kernels: Compiled, ids: npt.NDArray[np.integer], solid: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64] | None:
    """The tokens (ascending) whose id is not ``solid`` (``NormalisedPieces.solid``), in one compiled pass; None when
    an id is outside the table (checked before any table is read at one). ``ids``: int32 or int64, C-contiguous."""
    assert ids.dtype in (np.int32, np.int64) and ids.flags.c_contiguous and solid.dtype == np.bool_
    solid = np.ascontiguousarray(solid)
    found = np.empty(len(ids), dtype=np.int64)  # few are written: only their pages are ever touched
    count = kernels.unsolids[ids.dtype.itemsize * 8](_address(ids), len(ids), _address(solid), len(solid), _address(found))
    return None if count < 0 else found[:count].copy()


def scan(
    kernels: Compiled,
    ids: npt.NDArray[np.integer],
    starts: npt.NDArray[np.int64],
    chars: npt.NDArray[np.uint32],
    rows: npt.NDArray[np.uint64],
    prefixes: npt.NDArray[np.uint64],
    split: tuple[npt.NDArray[np.int64], npt.NDArray[np.uint32], npt.NDArray[np.int64]],
    word: npt.NDArray[np.bool_],
    h: int,
    constants: tuple[int, int, int, int],
    threshold: int,
    missing: int | None,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(dropped, eligible) of a flat batch of in-range ids (int32 or int64, C-contiguous), by the compiled scan.

    ``constants``: (A, B, B**-1, M); ``missing``: spec v2's D, None for spec v1.
    """
    assert ids.dtype in (np.int32, np.int64) and ids.flags.c_contiguous
    n = len(ids)
    dropped = np.empty(n, dtype=np.bool_)
    eligible = np.empty(n, dtype=np.bool_)
    size = 2
    while size <= h:
        size *= 2
    ring = np.zeros(size, dtype=np.uint64)
    arrays = [np.ascontiguousarray(x) for x in (starts, chars, rows, prefixes, *split, word)]
    starts_, chars_, rows_, prefixes_, split_, split_chars, split_offsets, word_ = arrays
    assert starts_.dtype == np.int64 and chars_.dtype == np.uint32 and rows_.dtype == np.uint64 and prefixes_.dtype == np.uint64
    assert split_.dtype == np.int64 and split_chars.dtype == np.uint32 and split_offsets.dtype == np.int64 and word_.dtype == np.bool_
    offset, base, inverse, mix = (_signed(c) for c in constants)
    kernels.scans[ids.dtype.itemsize * 8](
        _address(ids),
        n,
        _address(starts_),
        len(starts_),
        _address(chars_),
        _address(rows_),
        _address(prefixes_),
        _address(split_),
        len(split_),
        _address(split_chars),
        _address(split_offsets),
        _address(word_),
        h,
        offset,
        base,
        inverse,
        mix,
        _signed(threshold),
        int(missing is not None),
        _signed(missing or 0),
        _address(ring),
        size - 1,
        _address(dropped),
        _address(eligible),
    )
    return dropped, eligible


def _signed(value: int) -> int:
    """A uint64 as the int64 with the same bits (ctypes' c_int64 refuses values of 2**63 and above)."""
    value = int(value) & 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >= 1 << 63 else value
