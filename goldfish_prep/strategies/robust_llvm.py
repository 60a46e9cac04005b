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

The IR (``robust_llvm_ir``) is ``robust_compiled._scan`` statement for
statement, over the same per-id rows, built with numpy (``id_rows``); this
module compiles it, caches the machine code and calls it through ctypes.
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

from goldfish_prep.strategies.robust_llvm_ir import ARGUMENTS, build_scan, build_unsolid

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
            build_scan(module, f"scan_i{bits}", bits)
            build_unsolid(module, f"unsolid_i{bits}", bits)
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
        prototype = ctypes.CFUNCTYPE(None, *(types[kind] for _, kind in ARGUMENTS))
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
