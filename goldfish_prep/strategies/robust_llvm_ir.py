"""The IR of ``robust``'s compiled scan, written with llvmlite's IR builder (``robust_llvm`` compiles and calls it).

Why a file of its own: this is the scan itself, ``robust_compiled._scan``
statement for statement (read its docstring for the loop), as LLVM IR over the
per-id rows of ``id_rows``; ``robust_llvm`` is the machinery around it (the
machine-code cache, loading, the ctypes calls). Mutable state lives in stack
slots that LLVM's default pipeline turns into registers. The IR text is part of
the cache key, so any edit here compiles anew.
"""

from __future__ import annotations

from typing import Any

from goldfish_prep.strategies.id_rows import CHARS, ENDS, INVERSE, POWER, SUM, UNIT_PREFIX, UNITS

_SPACE, _HYPHEN = 0x20, 0x2D


#: the scan's arguments, in order: (name, C type); pointers are numpy arrays' addresses
ARGUMENTS = (
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


def build_scan(module: Any, name: str, id_bits: int) -> None:  # noqa: PLR0915 - one loop, as in robust_compiled._scan
    """Emit ``robust_compiled._scan`` into ``module`` as ``name``, for ids of ``id_bits`` bits."""
    from llvmlite import ir

    i1, i8, i32, i64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
    kinds = {"ids": ir.IntType(id_bits).as_pointer(), "i64": i64, "p64": i64.as_pointer(), "p32": i32.as_pointer(), "p8": i8.as_pointer()}
    function = ir.Function(module, ir.FunctionType(ir.VoidType(), [kinds[kind] for _, kind in ARGUMENTS]), name=name)
    a = {argument: value for (argument, _), value in zip(ARGUMENTS, function.args)}
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


def build_unsolid(module: Any, name: str, id_bits: int) -> None:
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
