"""Hugging Face tokenizers: a ``tokenizer.json`` file, a model folder, or a hub id.

All three end as a ``tokenizers.Tokenizer`` (the Rust "fast" tokenizer), which
does the encoding:

- ``tokenizer.json`` loads with the ``tokenizers`` library alone. BOS/EOS come
  from the ``tokenizer_config.json`` beside it (``bos_token``, ``eos_token``);
  without one, from common token names (``<s>``, ``</s>``, ``<|endoftext|>``,
  ``<|begin_of_text|>``, ...).
- A folder goes through ``transformers.AutoTokenizer`` (``trust_remote_code``
  is never set: goldfish-prep runs no code from model folders), which applies
  the folder's config, then its fast ``backend_tokenizer`` does the work. A
  folder holding only ``tokenizer.model`` is read as that SentencePiece model:
  without a config AutoTokenizer cannot know the model's pre-tokenisation and
  builds a tokenizer that splits text differently. A folder holding only
  ``tokenizer.json`` is read as that file (``load._load``), so its BOS/EOS come
  from their names as above, where AutoTokenizer would know none.
- A hub id (``owner/name``) also goes through AutoTokenizer, from the local
  cache when ``HF_HUB_OFFLINE=1``.

BOS is added by default when ``tokenizer_config.json`` says ``add_bos_token:
true``, else when the tokenizer adds it itself (its post-processor, or
transformers' ``encode``). The config wins because transformers 5 ignores
``add_bos_token`` for some classes (LlamaTokenizer), while the model was
trained as the config says.

Added special tokens (``<s>``, ``<|endoftext|>``) that appear in input text are
encoded as ordinary text (``encode_special_tokens = True``), as the other
adapters do: only the pipeline adds special tokens.

Threads: ``encode_batch_fast`` would run on a Rayon pool with one thread per
core, and the pipeline already runs one worker process per core. Loading an HF
tokenizer sets ``TOKENIZERS_PARALLELISM=false`` for the process unless the
user set it, which keeps the batch call on the calling thread. Measured on 5.8
MB of Debian copyright files with a Llama-2 tokenizer.json, one core:
``encode_batch_fast`` 0.89 M tokens/s, ``encode_batch`` (offsets too) 0.58,
a Python loop over ``encode`` 0.57.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from goldfish_prep.errors import TokenizerError
from goldfish_prep.tokenizers.base import Tokenizer
from goldfish_prep.tokenizers.decoding import check_ids, pieces_by_decoding
from goldfish_prep.tokenizers.identity import AdapterIdentity, name_for
from goldfish_prep.tokenizers.optional import import_optional, one_line
from goldfish_prep.tokenizers.special_tokens import BOS_NAMES, EOS_NAMES, first_known_id
from goldfish_prep.tokenizers.spelling import hf_spelling

#: files that define a tokenizer in a model folder; their bytes make the fingerprint
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
    "added_tokens.json", "vocab.json", "merges.txt", "vocab.txt",
)  # fmt: skip
_TRUE = ("1", "on", "yes", "true")


class HFTokenizer(AdapterIdentity):
    """A ``tokenizers.Tokenizer`` behind the ``Tokenizer`` protocol."""

    engine = "hf-tokenizers"

    def __init__(
        self,
        spec: str,
        name: str,
        backend: Any,
        special_ids: tuple[int | None, int | None],
        default_add_bos: bool,
        files: Sequence[Path],
        special_tokens_map: dict[str, str] | None = None,
    ) -> None:
        # no Rayon pool: the pipeline's worker processes are the parallelism
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        if not hasattr(backend, "encode_special_tokens"):
            raise TokenizerError(
                f"tokenizer {spec!r} needs tokenizers >= 0.19 (to encode special-token text as text). Fix: pip install -U tokenizers"
            )
        backend.encode_special_tokens = True
        largest = max(backend.get_vocab(with_added_tokens=True).values(), default=-1)
        super().__init__(spec, "hf", name, largest + 1, *special_ids, default_add_bos)
        self._backend = backend
        self._files = list(files)
        #: the named special tokens (``bos_token``: text) a chat template sees, as transformers passes them
        self.special_tokens_map = dict(special_tokens_map or {})

    def chat_backend(self) -> Any:
        """The ``tokenizers.Tokenizer`` itself, for ``chat.encode``.

        A rendered chat template writes its markup as text (``<|im_start|>``), and
        ``apply_chat_template`` encodes that text into the special ids, so the chat
        encoder turns ``encode_special_tokens`` off around its calls and back on
        after (documents keep special-token text as text). Shared, not copied:
        a copy of a 128k vocabulary costs about a second per process.
        """
        return self._backend

    def encode_batch(self, texts: Sequence[str]) -> list[npt.NDArray[np.int32]]:
        encode = getattr(self._backend, "encode_batch_fast", self._backend.encode_batch)
        return [np.asarray(e.ids, dtype=np.int32) for e in encode(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, special tokens included as their text (``<s>``)."""
        return str(self._backend.decode(check_ids(ids, self.vocab_size, self.name), skip_special_tokens=False))

    def token_pieces(self, ids: Sequence[int]) -> list[str]:
        return pieces_by_decoding(self.decode, check_ids(ids, self.vocab_size, self.name))

    def spelled_bytes(self) -> list[bytes]:
        return hf_spelling(self._backend, self.vocab_size)

    @property
    def backend(self) -> Any:
        """The ``tokenizers.Tokenizer`` (special-token text encoded as text)."""
        return self._backend

    @property
    def files(self) -> list[Path]:
        """The files this tokenizer was read from (none for a hub id)."""
        return list(self._files)

    def vocabulary_parts(self) -> Iterable[bytes]:
        if not self._files:  # from the hub: the cached files are not at hand, the loaded tokenizer is
            yield str(self._backend.to_str()).encode()
        yield from file_parts(self._files)


def file_parts(files: Iterable[Path]) -> Iterable[bytes]:
    """Name and bytes of each tokenizer file, in order: what a file-based fingerprint hashes."""
    for path in files:
        yield path.name.encode()
        yield path.read_bytes()


def load_hf_file(spec: str, path: Path) -> HFTokenizer:
    """A ``tokenizer.json`` file, with BOS/EOS from the ``tokenizer_config.json`` beside it if any."""
    tokenizers = import_optional("tokenizers", "hf", spec)
    backend = _read_tokenizer_json(tokenizers, path)
    config_path = path.with_name("tokenizer_config.json")
    config = _read_config(config_path) if config_path.is_file() else {}
    bos = _special_id(backend, config, "bos_token", BOS_NAMES)
    eos = _special_id(backend, config, "eos_token", EOS_NAMES)
    add_bos = config.get("add_bos_token")
    if not isinstance(add_bos, bool):
        add_bos = _post_processor_adds(backend, bos)
    files = [path, config_path] if config_path.is_file() else [path]
    return HFTokenizer(spec, name_for(path), backend, (bos, eos), add_bos, files, _named_special_tokens(config))


def load_hf_folder(spec: str, folder: Path) -> Tokenizer:
    """A local tokenizer or model folder, through ``AutoTokenizer`` (see the module docstring)."""
    files = [folder / name for name in TOKENIZER_FILES if (folder / name).is_file()]
    present = {path.name for path in files}
    if not present:
        raise TokenizerError(
            f"{folder}: no tokenizer files here (looked for {', '.join(TOKENIZER_FILES)}). "
            "Fix: pass the folder that holds the tokenizer, or the tokenizer file itself"
        )
    if "tokenizer.model" in present and not present & {"tokenizer.json", "tokenizer_config.json"}:
        from goldfish_prep.tokenizers.sentencepiece_adapter import load_sentencepiece

        return load_sentencepiece(spec, folder / "tokenizer.model")
    if "tokenizer.model" in present and "tokenizer.json" not in present:
        # transformers converts the SentencePiece model to a fast tokenizer with both; missing, it warns at length and fails
        import_optional("sentencepiece", "sentencepiece", spec)
        import_optional("google.protobuf", "hf", spec, package="protobuf")
    try:
        auto = _auto_tokenizer(spec, str(folder), from_hub=False)
    except TokenizerError:
        _diagnose_folder(folder, present)
        raise
    config = _read_config(folder / "tokenizer_config.json") if "tokenizer_config.json" in present else {}
    return _from_transformers(spec, folder.resolve().name, auto, files, config.get("add_bos_token"))


def _diagnose_folder(folder: Path, present: set[str]) -> None:
    """Name the broken file when AutoTokenizer fails on a folder (raises), else return."""
    if "tokenizer_config.json" in present:
        _read_config(folder / "tokenizer_config.json")
    if "tokenizer.json" in present:
        tokenizers = import_optional("tokenizers", "hf", str(folder))
        _read_tokenizer_json(tokenizers, folder / "tokenizer.json")


def load_hf_hub(spec: str) -> HFTokenizer:
    """A hub id through ``AutoTokenizer``: online, or from the cache when the hub is offline."""
    auto = _auto_tokenizer(spec, spec, from_hub=True)
    return _from_transformers(spec, spec, auto, files=(), declared_add_bos=None)


def _import_transformers(spec: str) -> Any:
    """transformers, without the advice it logs at import when PyTorch is missing (a tokenizer needs no model)."""
    previous = os.environ.get(_NO_ADVICE)
    os.environ[_NO_ADVICE] = "1"
    try:
        return import_optional("transformers", "hf", spec)
    finally:
        if previous is None:
            del os.environ[_NO_ADVICE]
        else:
            os.environ[_NO_ADVICE] = previous


_NO_ADVICE = "TRANSFORMERS_NO_ADVISORY_WARNINGS"


def hub_is_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set now, or was when the hub library loaded."""
    if any(os.environ.get(var, "").strip().lower() in _TRUE for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def _auto_tokenizer(spec: str, source: str, from_hub: bool) -> Any:
    transformers = _import_transformers(spec)
    # a folder never needs the hub; asking it anyway would stall offline machines on timeouts
    local_only = not from_hub or hub_is_offline()
    try:
        return transformers.AutoTokenizer.from_pretrained(source, trust_remote_code=False, local_files_only=local_only)
    except Exception as error:  # transformers raises OSError, ValueError, KeyError... by cause
        where = f"tokenizer {spec!r}" if from_hub else source
        raise _auto_error(where, from_hub, local_only, error) from error


def _auto_error(where: str, from_hub: bool, local_only: bool, error: Exception) -> TokenizerError:
    local = "pass a local tokenizer.json, folder, .model or tiktoken encoding (e.g. cl100k_base)"
    if "trust_remote_code" in str(error):
        return TokenizerError(
            f"{where}: this tokenizer needs custom code from its repository, which goldfish-prep never runs. "
            f"Fix: save it as tokenizer.json with a trusted transformers session, or {local}"
        )
    if from_hub and local_only:
        return TokenizerError(f"{where}: not found locally and the hub is offline (HF_HUB_OFFLINE=1); {local}")
    fix = (
        f"check the hub id (owner/name; gated models need `hf auth login`), or {local}"
        if from_hub
        else "check that the folder holds an intact tokenizer (tokenizer.json, or tokenizer.model with its "
        "tokenizer_config.json), or pass one of its files"
    )
    return TokenizerError(f"{where}: transformers could not load a tokenizer ({one_line(error)}). Fix: {fix}")


def _from_transformers(spec: str, name: str, auto: Any, files: Sequence[Path], declared_add_bos: Any) -> HFTokenizer:
    backend = getattr(auto, "backend_tokenizer", None)
    if backend is None:
        raise TokenizerError(
            f"tokenizer {spec!r}: transformers loaded a {type(auto).__name__}, which has no fast "
            "(tokenizer.json) backend. Fix: pass its SentencePiece tokenizer.model, or a tokenizer.json"
        )
    bos, eos = auto.bos_token_id, auto.eos_token_id
    named = {key: str(value) for key, value in dict(getattr(auto, "special_tokens_map", {})).items() if isinstance(value, str)}
    if isinstance(declared_add_bos, bool):  # the config's word wins: transformers 5 drops it for some classes
        return HFTokenizer(spec, name, backend, (bos, eos), declared_add_bos, files, named)
    with_special = auto.encode("a", add_special_tokens=True)
    plain = auto.encode("a", add_special_tokens=False)
    adds_bos = bos is not None and with_special[:1] == [bos] and plain[:1] != [bos]
    return HFTokenizer(spec, name, backend, (bos, eos), adds_bos, files, named)


def _named_special_tokens(config: dict[str, Any]) -> dict[str, str]:
    """``bos_token``, ``eos_token``, ... of a tokenizer config as text (transformers' ``special_tokens_map``)."""
    named = {}
    for key in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"):
        token = config.get(key)
        if isinstance(token, dict):
            token = token.get("content")
        if isinstance(token, str):
            named[key] = token
    return named


def _read_tokenizer_json(tokenizers: Any, path: Path) -> Any:
    try:
        return tokenizers.Tokenizer.from_file(str(path))
    except Exception as error:  # the Rust side raises a bare Exception for every parse error
        raise TokenizerError(
            f"{path}: not a Hugging Face tokenizer.json ({one_line(error)}). "
            "Fix: pass an intact tokenizer.json (as saved by tokenizers or transformers), or a .model / .tiktoken file"
        ) from error


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        cause = one_line(error)
        raise TokenizerError(f"{path}: cannot read this tokenizer config ({cause}). Fix: repair or remove it") from error
    if not isinstance(config, dict):
        raise TokenizerError(f"{path}: a tokenizer config must be a JSON object. Fix: repair or remove it")
    return config


def _special_id(backend: Any, config: dict[str, Any], key: str, names: Sequence[str]) -> int | None:
    """The id of the config's ``key`` token (a string or ``{"content": ...}``), else of a common name."""
    if key not in config:
        return first_known_id(backend.token_to_id, names)
    token = config[key]
    if isinstance(token, dict):
        token = token.get("content")
    # an explicit null (or a token missing from the vocabulary) means: this tokenizer has none
    return backend.token_to_id(token) if isinstance(token, str) else None


def _post_processor_adds(backend: Any, bos: int | None) -> bool:
    """Whether the tokenizer's post-processor puts BOS first (Llama's TemplateProcessing does)."""
    if bos is None:
        return False
    with_special = backend.encode("a", add_special_tokens=True).ids
    plain = backend.encode("a", add_special_tokens=False).ids
    return bool(with_special[:1] == [bos] and plain[:1] != [bos])
