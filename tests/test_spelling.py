"""How each tokenizer family spells its ids as bytes (``spelling``), which ``robust`` masks read.

Byte-level tokenizers are covered in test_robust.py (the bytes joined are the
input's UTF-8). Here: WordPiece (BERT-style ``tokenizer.json``, trained here with
the real ``tokenizers`` library), SentencePiece (Mistral's model from
mistral-common), and an adapter that cannot spell its ids.
"""

from __future__ import annotations

import glob
import importlib.resources
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from goldfish_prep.errors import TokenizerError
from goldfish_prep.tokenizers import load_tokenizer
from goldfish_prep.tokenizers.identity import AdapterIdentity
from goldfish_prep.tokenizers.token_bytes import token_bytes
from goldfish_prep_cli.main import cli


def licence_texts() -> list[str]:
    return [Path(p).read_text(errors="replace")[:4000] for p in sorted(glob.glob("/usr/share/common-licenses/*"))[:8] if Path(p).is_file()]


@pytest.fixture(scope="module")
def wordpiece(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(cleanup=False)
    trainer = trainers.WordPieceTrainer(vocab_size=800, special_tokens=["[UNK]", "[CLS]", "[SEP]"])
    tokenizer.train_from_iterator(licence_texts(), trainer)
    path = tmp_path_factory.mktemp("wordpiece") / "tokenizer.json"
    tokenizer.save(str(path))
    return path


def test_wordpiece_ids_spell_the_words_they_decode_to(wordpiece: Path) -> None:
    """``##`` pieces continue the word, others follow a space: the decoded text with one leading space."""
    tokenizer = load_tokenizer(str(wordpiece))
    table = token_bytes(tokenizer)
    texts = licence_texts() + ["Playing the GAME: re-licensing, sub-licensing; 123 456."]
    pieces = table.pieces
    continued = 0
    for ids in tokenizer.encode_batch(texts):
        spelled = b"".join(pieces[i] for i in ids).decode("utf-8")
        assert spelled == " " + tokenizer.decode(ids.tolist())
        continued += sum(tokenizer.decode([i]).startswith("##") for i in ids.tolist())
    assert continued > 100  # the corpus exercises continuations, not only whole words


def test_robust_masks_a_wordpiece_corpus_and_verify_recomputes_them(wordpiece: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(licence_texts()), encoding="utf-8")
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(cli, ["mask", str(corpus), "-o", str(out), "--tokenizer", str(wordpiece), "--strategy", "robust", "-q"])
    assert result.exit_code == 0, result.output
    verified = runner.invoke(cli, ["verify", str(out)])
    assert verified.exit_code == 0, verified.output
    import datasets

    labels = np.concatenate([np.asarray(row) for row in datasets.load_from_disk(str(out))["labels"]])
    assert 0.15 < float((labels == -100).mean()) < 0.35


def test_sentencepiece_pieces_spell_the_text_with_its_leading_space() -> None:
    model = importlib.resources.files("mistral_common") / "data" / "tokenizer.model.v1"
    tokenizer = load_tokenizer(str(model))
    table = token_bytes(tokenizer)
    texts = ["Hello world, caf\u00e9 \U0001f41f and \u4e2d\u6587.", "Copyright (C) 2024 Some One <one@example.org>"]
    for text, ids in zip(texts, tokenizer.encode_batch(texts)):
        assert b"".join(table.pieces[i] for i in ids) == (" " + text).encode("utf-8")
    assert tokenizer.bos_id is not None and table.pieces[tokenizer.bos_id] == b""


def test_an_adapter_that_cannot_spell_its_ids_is_refused_with_a_fix() -> None:
    class Opaque(AdapterIdentity):
        pass

    with pytest.raises(TokenizerError, match="cannot read the token bytes.*Fix: "):
        token_bytes(Opaque("opaque", "other", "opaque", 10, None, None, False))  # type: ignore[arg-type]
