"""Run one matrix of commands with two versions of goldfish-prep and compare every output byte for byte.

A refactoring of how output folders are written and read must not change a
byte: not of the shards, the metadata, the manifest, the resume markers, the
exports, nor of what the commands print. This script runs the same matrix with
the code of a git revision (default ``main``, extracted with ``git archive``)
and with the working tree, each in the same scratch folder so that relative
paths print alike, then compares every file and every captured stdout.

The matrix: every strategy (goldfish, robust, hash-table, static, none), in
documents and packed (``--pack 256``), with ``--num-proc`` 1 and 2; a
``--num-tasks 2`` run and ``finalize``; a Ray run of 2 tasks (when Ray is
installed); a resumed and an overwritten run; a chat corpus (Llama 3's tokenizer with
its template, plain, packed and with ``--k-field``); every export format of a
document and a packed output (and of the chat ones); the stdout of
``stats``, ``stats --json``, ``verify``, ``show`` (and ``--html``) and
``repeats``; and a tiny ``train`` run with ``memorization`` on its shards. Inputs are
small (``/usr/share/common-licenses`` as text, generated conversations), so a
run takes a few minutes on a loaded machine.

    python bench/format_bytes.py                    # main against the working tree
    python bench/format_bytes.py --before HEAD~3 --keep /tmp/fb

Prints ``N files compared, M differ`` (listing the differing ones) and exits 1
when any differs. Only ``TIMING_FIELDS`` are taken out before comparing (they
differ between two runs of the same code too); the mask outputs, exports and
inspection commands hold no timestamps (progress bars go to stderr, which is
not compared).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LICENSES = "/usr/share/common-licenses"
STRATEGIES = ("goldfish", "robust", "hash-table", "static", "none")
EXPORTS = ("nanogpt", "olmo", "megatron", "parquet")
#: a step that deletes the files it names (to stage a damaged folder), not a goldfish-prep command
DAMAGE = "(delete)"


def extract(revision: str, into: Path) -> Path:
    """The tree of ``revision`` as plain files (``goldfish_prep`` and ``cli``) under ``into``."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, "goldfish_prep", "cli"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def import_root(code: Path, into: Path) -> Path:
    """A folder that imports ``goldfish_prep`` and ``goldfish_prep_cli`` from ``code`` (put first on PYTHONPATH)."""
    into.mkdir(parents=True)
    (into / "goldfish_prep").symlink_to(code / "goldfish_prep")
    (into / "goldfish_prep_cli").symlink_to(code / "cli")
    return into


def make_inputs(folder: Path) -> dict[str, Path]:
    """The chat corpus and its tokenizer folder, made once and shared by both versions."""
    sys.path.insert(0, str(REPO))
    from tests.chat_data import conversation, template_text, tokenizer_folder

    folder.mkdir(parents=True)
    rng = random.Random(7)
    records = []
    for i in range(60):
        record: dict[str, object] = {"messages": conversation(rng)}
        if i % 5:
            record["k"] = [0, 2, 4, None][i % 4]
        records.append(record)
    chat = folder / "chats.jsonl"
    chat.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return {"chat": chat, "tokenizer": tokenizer_folder(folder, "llama3", template_text("llama3"))}


def commands(inputs: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """(name, goldfish-prep arguments) in the order they run; outputs are relative to the scratch folder."""
    text = [LICENSES, "--assume-format", "text", "-q"]
    chat = [str(inputs["chat"]), "--tokenizer", str(inputs["tokenizer"]), "-q"]
    runs: list[tuple[str, list[str]]] = []
    for strategy in STRATEGIES:
        for pack in (None, 256):
            for proc in (1, 2):
                name = f"{strategy}-{'pack' if pack else 'docs'}-p{proc}"
                options = ["--strategy", strategy, "--num-proc", str(proc), "--shard-size", "40KB"]
                runs.append((f"mask-{name}", ["mask", *text, "-o", name, *options, *(["--pack", str(pack)] if pack else [])]))
    for index in (0, 1):
        runs.append(
            (f"mask-tasks-{index}", ["mask", *text, "-o", "tasks", "--shard-size", "40KB", "--num-tasks", "2", "--task-index", str(index)])
        )
    runs.append(("finalize-tasks", ["finalize", "tasks"]))
    runs.append(("mask-ray", ["mask", *text, "-o", "ray", "--shard-size", "40KB", "--ray-address", "local", "--ray-tasks", "2"]))
    # resume: a finished run that lost a shard, its record and its manifest is finished again
    runs.append(("mask-resume", ["mask", *text, "-o", "resume", "--shard-size", "40KB"]))
    runs.append(("damage-resume", [DAMAGE, "resume/data-00001.arrow", "resume/.goldfish/shard-00002.json", "resume/state.json"]))
    runs.append(("mask-resume-again", ["mask", *text, "-o", "resume", "--shard-size", "40KB", "--resume"]))
    runs.append(("mask-overwrite", ["mask", *text, "-o", "resume", "--shard-size", "40KB", "--overwrite", "--k", "3"]))
    runs.append(("mask-chat", ["mask", *chat, "-o", "chat", "--shard-size", "8KB"]))
    runs.append(("mask-chat-pack", ["mask", *chat, "-o", "chat-pack", "--pack", "256", "--num-proc", "2"]))
    runs.append(("mask-chat-k", ["mask", *chat, "-o", "chat-k", "--k-field", "k"]))
    for folder in ("goldfish-docs-p1", "robust-pack-p1", "chat", "chat-pack", "tasks"):
        runs.append((f"stats-{folder}", ["stats", folder]))
        runs.append((f"stats-json-{folder}", ["stats", folder, "--json"]))
        runs.append((f"verify-{folder}", ["verify", folder, "-q"]))
        runs.append((f"show-{folder}", ["show", folder, "--row", "1", "--no-color"]))
        runs.append((f"repeats-{folder}", ["repeats", folder, "--min-length", "20"]))
    runs.append(("show-html", ["show", "goldfish-docs-p1", "--row", "2", "--no-color", "--html", "show.html"]))
    runs.append(("repeats-normalized", ["repeats", "robust-docs-p1", "--normalized", "--json"]))
    for folder in ("goldfish-docs-p1", "goldfish-pack-p1", "chat", "chat-pack"):
        for export in EXPORTS:
            out = f"export-{export}-{folder}" + ("/train" if export == "nanogpt" else "")
            runs.append((f"export-{export}-{folder}", ["export", folder, "-o", out, "--format", export]))
    # the bundled trainer's checkpoint and memorisation report (a tiny model, a few steps on the CPU)
    model = ["--preset", "tiny", "--max-steps", "4", "--block-size", "32", "--n-layer", "1", "--n-head", "2", "--n-embd", "16"]
    runs.append(("train", ["train", "goldfish-pack-p1", "-o", "trainrun", *model, "--device", "cpu", "--checkpoint-interval", "2", "-q"]))
    runs.append(
        (
            "memorization",
            ["memorization", "trainrun", "goldfish-docs-p1", "--device", "cpu", "--max-documents", "4", "--suffix-length", "8", "-q"],
        )
    )
    return runs


def run_matrix(code: Path, scratch: Path, inputs: dict[str, Path], into: Path) -> None:
    """Run every command with ``code`` inside ``scratch``, then move the results to ``into``."""
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    root = import_root(code, scratch.parent / f"{into.name}-imports")
    env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "NO_COLOR": "1"}
    where = subprocess.run(
        [sys.executable, "-c", "import goldfish_prep; print(goldfish_prep.__file__)"],
        env=env,
        cwd=scratch,
        capture_output=True,
        text=True,
        check=True,
    )
    print(f"{into.name}: goldfish_prep from {Path(where.stdout.strip()).resolve()}", file=sys.stderr)
    (scratch / "_stdout").mkdir()
    for name, args in commands(inputs):
        if args[0] == DAMAGE:
            for path in args[1:]:
                (scratch / path).unlink(missing_ok=True)
            continue
        if args[0] == "export" and "nanogpt" in args:
            (scratch / args[args.index("-o") + 1]).parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([sys.executable, "-m", "goldfish_prep_cli", *args], env=env, cwd=scratch, capture_output=True)
        (scratch / "_stdout" / f"{name}.txt").write_bytes(done.stdout + f"\n[exit {done.returncode}]\n".encode())
        if done.returncode != 0:
            print(f"  {name}: exit {done.returncode}: {done.stderr.decode()[-300:]}", file=sys.stderr)
    scratch.rename(into)


#: what may differ between two runs of the *same* code, and is compared with it taken out:
#: the trainer's wall-clock figures, and the name of the folder inside torch's zip archive
#: (torch derives it from the file name it writes, which holds the writer's pid)
TIMING_FIELDS = ("train stdout: 'in N s'", "metrics.jsonl: tokens_per_s, seconds", "checkpoint.pt: the archive's root folder name")


def _comparable(name: Path, data: bytes) -> bytes:
    if name.name == "train.txt":
        return re.sub(rb"in [0-9.]+ s;", b"in - s;", data)
    if name.name == "metrics.jsonl":
        lines = [json.loads(line) for line in data.splitlines() if line.strip()]
        return json.dumps([{k: v for k, v in line.items() if k not in ("tokens_per_s", "seconds")} for line in lines]).encode()
    if name.suffix == ".pt":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = sorted((info.filename.split("/", 1)[1], archive.read(info)) for info in archive.infolist())
        return repr(members).encode()
    return data


def compare(before: Path, after: Path) -> tuple[int, list[str]]:
    """(files compared, names that differ or exist on one side only)."""
    names = sorted(
        {p.relative_to(before) for p in before.rglob("*") if p.is_file()} | {p.relative_to(after) for p in after.rglob("*") if p.is_file()}
    )
    differ = []
    for name in names:
        a, b = before / name, after / name
        if not a.is_file() or not b.is_file() or _comparable(name, a.read_bytes()) != _comparable(name, b.read_bytes()):
            differ.append(str(name) + ("" if a.is_file() and b.is_file() else " (only in one)"))
    return len(names), differ


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="main", help="git revision to compare against (default: main)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the outputs in this folder (default: a temporary one)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="format-bytes-"))
    if args.keep and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    try:
        inputs = make_inputs(work / "inputs")
        old = extract(args.before, work / "code-before")
        new = work / "code-after"  # a copy, so that editing the tree while this runs does not mix versions
        for part in ("goldfish_prep", "cli"):
            shutil.copytree(REPO / part, new / part, ignore=shutil.ignore_patterns("__pycache__"))
        run_matrix(old, work / "run", inputs, work / "before")
        run_matrix(new, work / "run", inputs, work / "after")
        count, differ = compare(work / "before", work / "after")
        for name in differ:
            print(f"differs: {name}")
        print(f"{count} files compared, {len(differ)} differ (taken out before comparing: {'; '.join(TIMING_FIELDS)})")
        return 1 if differ else 0
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
