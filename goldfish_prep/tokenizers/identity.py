"""What every adapter shares: its identity in the manifest, and pickling by spec.

The manifest must say exactly which tokenizer made the ids, because a mask is
only reproducible with the same ids. A name is not enough (two files called
``tokenizer.json`` differ; a library upgrade can change how a vocabulary
splits text), so ``describe()`` adds a fingerprint: sha256 over

- the adapter kind,
- the vocabulary as stored (the tokenizer files' bytes, or tiktoken's
  mergeable ranks in ``.tiktoken`` file form, plus its regex and special tokens),
- the BOS and EOS ids,
- the ids of ``PROBE_TEXT``, a fixed multilingual text, as little-endian int32.

Each part is length-prefixed, so no two different part lists hash alike. The
probe makes the fingerprint change when the same files tokenize differently.
It costs one sha256 over the files (about 10 ms per 20 MB) and one encode.

Adapters pickle as ``load_tokenizer(spec, backend)``: a worker process rebuilds
(or finds in its per-process cache) the tokenizer instead of receiving a copy.
The engine that encodes is recorded next to the fingerprint, not in it: the
engines goldfish-prep picks give identical ids, so they share a fingerprint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from goldfish_prep.errors import TokenizerError

#: Latin with diacritics, Greek, Cyrillic, CJK, Korean, Arabic, Devanagari, emoji,
#: digits, runs of whitespace and special-token text: one line that exercises
#: normalisation, byte fallback and pre-tokenisation. Never change it: every
#: recorded fingerprint depends on it.
PROBE_TEXT = (
    "Goldfish loss, 2024: the quick brown fox jumps over 13 lazy dogs.\n"
    "Grüße aus Köln, naïve café, déjà vu. Ελληνικά. Русский текст. "
    "中文文本，日本語のテキスト，한국어 텍스트. مرحبا بالعالم. हिन्दी पाठ. 🐟🐠\t  x  "
    "<|endoftext|> <s> </s> [INST] 1234567890"
)

#: ids are stored as int32 (see docs/format.md); a larger vocabulary cannot be written
MAX_VOCAB_SIZE = 2**31


class AdapterIdentity:
    """The fields of the ``Tokenizer`` protocol, ``describe()`` and pickling; adapters add encoding."""

    #: the library that encodes (recorded in the manifest; not part of the fingerprint)
    engine = "unknown"
    #: the ``--tokenizer-backend`` this adapter was loaded for (pickling reloads the same)
    requested_backend = "auto"

    def __init__(
        self,
        spec: str,
        kind: str,
        name: str,
        vocab_size: int,
        bos_id: int | None,
        eos_id: int | None,
        default_add_bos: bool,
    ) -> None:
        if vocab_size > MAX_VOCAB_SIZE:
            raise TokenizerError(
                f"tokenizer {spec!r} has {vocab_size} ids, more than the int32 ids of the output format "
                f"can hold ({MAX_VOCAB_SIZE}). Fix: use a tokenizer with a smaller vocabulary"
            )
        self.spec = spec
        self.kind = kind
        self.name = name
        self.vocab_size = vocab_size
        self.bos_id = bos_id
        self.eos_id = eos_id
        # a tokenizer without BOS cannot add it by default, whatever its config says
        self.default_add_bos = default_add_bos and bos_id is not None
        self._fingerprint: str | None = None

    def encode_batch(self, texts: Sequence[str]) -> list[npt.NDArray[np.int32]]:
        raise NotImplementedError

    def vocabulary_parts(self) -> Iterable[bytes]:
        """The bytes that define the vocabulary, in a fixed order (hashed into the fingerprint)."""
        raise NotImplementedError

    def spelled_bytes(self) -> list[bytes]:
        """The bytes each id spells (``spelling``); an adapter that cannot tell refuses."""
        raise TokenizerError(
            f"the robust strategy cannot read the token bytes of tokenizer {self.name!r} ({self.kind}). "
            "Fix: use a tiktoken, tokenizer.json or SentencePiece tokenizer, or another --strategy"
        )

    def describe(self) -> dict[str, Any]:
        """Identity for the manifest: spec, kind, name, vocab_size, bos_id, eos_id, fingerprint."""
        if self._fingerprint is None:
            self._fingerprint = self._compute_fingerprint()
        return {
            "spec": self.spec,
            "kind": self.kind,
            "name": self.name,
            "vocab_size": self.vocab_size,
            "bos_id": self.bos_id,
            "eos_id": self.eos_id,
            "fingerprint": self._fingerprint,
            "engine": self.engine,
        }

    def _compute_fingerprint(self) -> str:
        digest = hashlib.sha256()
        special = np.array([-1 if i is None else i for i in (self.bos_id, self.eos_id)], dtype="<i8")
        probe = np.asarray(self.encode_batch([PROBE_TEXT])[0], dtype="<i4")
        for part in (self.kind.encode(), *self.vocabulary_parts(), special.tobytes(), probe.tobytes()):
            digest.update(len(part).to_bytes(8, "little"))
            digest.update(part)
        return digest.hexdigest()

    def __reduce__(self) -> tuple[Callable[[str, str], Any], tuple[str, str]]:
        return (_reload, (self.spec, self.requested_backend))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} ({self.vocab_size} ids) from {self.spec!r}>"


def name_for(path: Path) -> str:
    """A short name for the manifest: the folder for generic file names, else the file name.

    >>> name_for(Path("models/llama-2/tokenizer.model")), name_for(Path("data/tekken.json"))
    ('llama-2', 'tekken.json')
    """
    generic = path.stem == "tokenizer" and path.suffix in (".json", ".model", ".tiktoken")
    return path.parent.name if generic and path.parent.name else path.name


def _reload(spec: str, backend: str = "auto") -> Any:
    """Unpickle an adapter: load it again from its spec and backend (cached per process)."""
    from goldfish_prep.tokenizers.load import load_tokenizer

    return load_tokenizer(spec, backend)
