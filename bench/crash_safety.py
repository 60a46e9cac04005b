"""Kill `goldfish-prep mask` with SIGKILL at random points, resume, and demand the same bytes.

Each trial starts `mask` in a subprocess (its own process group, so worker processes die
with it, as they do when a node fails or a scheduler kills a job), sends SIGKILL at a random
moment of the run, and then checks what the kill left:

- partial output never passes for complete: `datasets.load_from_disk`, `goldfish-prep stats`
  and `goldfish-prep verify` refuse it, or, if one accepts it, it holds exactly the
  uninterrupted run's data;
- `mask --resume` (sometimes killed again itself) finishes the run;
- the finished folder is byte-identical to an uninterrupted run (shards, metadata and
  manifest; the `.goldfish/` resume markers aside), holds no temporary files, and verifies.

Kill moments are drawn uniformly over the working part of a reference run (from the moment
the output folder is prepared to the end), so kills land in shard writes, renames,
completion records and the final metadata alike.

    python bench/crash_safety.py                       # 12 trials, ~800 real documents
    python bench/crash_safety.py --trials 30 --num-proc 2 --json results.json
    python bench/crash_safety.py --trials 3 --docs 120 --shard-size 32KB    # what CI runs

Exit status 0 when every trial holds, 1 otherwise (each problem is printed).
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MASK = [sys.executable, "-m", "goldfish_prep_cli", "mask"]
PROGRESS_DIR = ".goldfish"
MANIFEST = "goldfish_manifest.json"


@dataclasses.dataclass
class Trial:
    """What one trial did and found; ``problems`` empty means it held."""

    index: int
    kills: list[float] = dataclasses.field(default_factory=list)  # seconds after start, one per killed run
    shards_at_kill: list[int] = dataclasses.field(default_factory=list)
    finished_before_kill: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Setup:
    corpus: list[Path]
    options: list[str]
    reference: dict[str, bytes]
    #: seconds from start until the output folder is prepared, and until the run ends
    work_start: float
    work_end: float


def make_corpus(folder: Path, docs: int) -> list[Path]:
    """Real text with repeated passages: Debian copyright files as JSON lines, plus one Parquet file.

    Falls back to generated text where /usr/share/doc is missing (not a Debian system).
    """
    paths = sorted(glob.glob("/usr/share/doc/*/copyright")) + sorted(glob.glob("/usr/share/common-licenses/*"))
    texts = [Path(p).read_text(encoding="utf-8", errors="replace") for p in paths[:docs]]
    rng = random.Random(0)
    while len(texts) < docs:
        texts.append(" ".join(f"word{rng.randrange(5000)}" for _ in range(rng.randrange(50, 2000))))
    folder.mkdir(parents=True, exist_ok=True)
    split = len(texts) * 3 // 4
    jsonl = folder / "a.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[:split]), encoding="utf-8")
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = folder / "b.parquet"
    pq.write_table(pa.table({"text": texts[split:]}), parquet)
    return [jsonl, parquet]


def output_bytes(folder: Path) -> dict[str, bytes]:
    """Every file of an output folder except the resume markers under .goldfish/."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and PROGRESS_DIR not in p.relative_to(folder).parts
    }


def start(setup_corpus: list[Path], out: Path, options: list[str], resume: bool) -> subprocess.Popen[bytes]:
    command = [*MASK, *map(str, setup_corpus), "-o", str(out), "-q", *options, *(["--resume"] if resume else [])]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the run and its workers (they share its process group)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def prepare(workdir: Path, docs: int, options: list[str]) -> Setup:
    """The corpus and an uninterrupted reference run, timed to place the kills."""
    corpus = make_corpus(workdir / "corpus", docs)
    out = workdir / "reference"
    began = time.monotonic()
    process = start(corpus, out, options, resume=False)
    work_start = None
    while process.poll() is None:
        if work_start is None and (out / PROGRESS_DIR).is_dir():
            work_start = time.monotonic() - began
        time.sleep(0.002)
    work_end = time.monotonic() - began
    stderr = process.stderr.read().decode() if process.stderr else ""
    if process.returncode != 0:
        raise SystemExit(f"the reference run failed ({process.returncode}): {stderr}")
    shards = len(list(out.glob("data-*.arrow")))
    if shards < 3:
        raise SystemExit(f"the reference run wrote {shards} shard(s); use more --docs or a smaller --shard-size")
    return Setup(corpus, options, output_bytes(out), work_start if work_start is not None else 0.0, work_end)


def completeness_problems(out: Path, reference: dict[str, bytes], when: str) -> list[str]:
    """What a reader would wrongly accept in ``out``: complete-looking output that is not the reference."""
    problems = []
    current = output_bytes(out) if out.is_dir() else {}
    complete = current == reference
    loaded = _loads_with_datasets(out)
    if loaded is not None and not complete:
        shards = {name: data for name, data in current.items() if name.startswith("data-")}
        expected = {name: data for name, data in reference.items() if name.startswith("data-")}
        if shards != expected or loaded != _reference_rows(reference):
            problems.append(f"{when}: datasets.load_from_disk loads a partial output ({loaded} rows)")
    for command in ("stats", "verify"):
        code = _cli_exit_code(command, out)
        if code == 0 and not complete:
            problems.append(f"{when}: `goldfish-prep {command}` accepts a partial output")
    return problems


def _loads_with_datasets(out: Path) -> int | None:
    """Rows loaded by datasets, or None when it refuses the folder."""
    import datasets

    try:
        return int(datasets.load_from_disk(str(out)).num_rows)
    except Exception:  # noqa: BLE001 - any refusal is a refusal
        return None


def _reference_rows(reference: dict[str, bytes]) -> int:
    counts = json.loads(reference[MANIFEST])["counts"]
    return int(counts["documents_written"])


def _cli_exit_code(command: str, out: Path) -> int:
    from click.testing import CliRunner

    from goldfish_prep_cli.main import cli

    args = [command, str(out)] + (["-q"] if command == "verify" else [])
    return CliRunner().invoke(cli, args).exit_code


def run_trial(index: int, setup: Setup, workdir: Path, rng: random.Random, max_kills: int) -> Trial:
    """Kill a run (and, with probability 1/2 each time, its resumption) at random moments, then finish it."""
    trial = Trial(index)
    out = workdir / f"trial-{index:03d}"
    for attempt in range(max_kills):
        if attempt and rng.random() < 0.5:
            break
        # a resumed run (shorter) may finish before its kill; the first run is always killed
        # while it works, drawn again earlier when this machine happened to be faster than the reference
        limit = setup.work_end * (1.05 if attempt else 0.98)
        for _ in range(1 if attempt else 5):
            if not attempt:
                shutil.rmtree(out, ignore_errors=True)
            delay = rng.uniform(setup.work_start, limit)
            outcome = _run_until(setup, out, resume=attempt > 0, delay=delay)
            if outcome != "finished":
                break
            trial.finished_before_kill += 1
            limit = max(setup.work_start, limit * 0.6)
        if outcome not in ("killed", "finished"):
            trial.problems.append(f"run {attempt} failed on its own: {outcome}")
            return trial
        if outcome == "killed":
            trial.kills.append(round(delay, 3))
            trial.shards_at_kill.append(len(list(out.glob(f"{PROGRESS_DIR}/shard-*.json"))))
        trial.problems += completeness_problems(out, setup.reference, f"after kill {attempt}")
    finish = subprocess.run(
        [*MASK, *map(str, setup.corpus), "-o", str(out), "-q", *setup.options, "--resume"], capture_output=True, text=True
    )
    if finish.returncode != 0:
        trial.problems.append(f"--resume failed ({finish.returncode}): {finish.stderr.strip()[-500:]}")
        return trial
    trial.problems += _final_problems(out, setup.reference)
    return trial


def _run_until(setup: Setup, out: Path, resume: bool, delay: float) -> str:
    """Run `mask` and SIGKILL it after ``delay`` s: "killed", "finished", or why it failed on its own."""
    process = start(setup.corpus, out, setup.options, resume)
    deadline = time.monotonic() + delay
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    if process.poll() is None:
        kill_group(process)
        outcome = "killed"
    elif process.returncode == 0:
        outcome = "finished"
    else:
        err = process.stderr.read().decode() if process.stderr else ""
        outcome = f"exit code {process.returncode}: {err.strip()[-500:]}"
    if process.stderr:
        process.stderr.close()
    return outcome


def _final_problems(out: Path, reference: dict[str, bytes]) -> list[str]:
    problems = []
    current = output_bytes(out)
    if current != reference:
        differing = sorted(name for name in set(current) | set(reference) if current.get(name) != reference.get(name))
        problems.append(f"resumed output differs from the uninterrupted run: {differing[:5]}")
    leftovers = [p.name for p in out.rglob("*.partial")]
    if leftovers:
        problems.append(f"temporary files left after a successful resume: {leftovers[:5]}")
    if _cli_exit_code("verify", out) != 0:
        problems.append("the resumed output fails `goldfish-prep verify`")
    return problems


def run(trials: int, docs: int, shard_size: str, num_proc: int, seed: int, workdir: Path, max_kills: int = 3) -> list[Trial]:
    """Prepare the corpus and reference, then run the trials; return them (problems listed in each)."""
    options = ["--shard-size", shard_size, "--num-proc", str(num_proc)]
    setup = prepare(workdir, docs, options)
    shards = sum(name.startswith("data-") for name in setup.reference)
    print(f"reference: {shards} shards, output folder prepared at {setup.work_start:.2f} s, done at {setup.work_end:.2f} s", flush=True)
    rng = random.Random(seed)
    results = []
    for index in range(trials):
        trial = run_trial(index, setup, workdir, rng, max_kills)
        results.append(trial)
        shutil.rmtree(workdir / f"trial-{index:03d}", ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--docs", type=int, default=800, help="documents in the corpus (real text from /usr/share/doc)")
    parser.add_argument("--shard-size", default="128KB")
    parser.add_argument("--num-proc", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder, removed afterwards")
    parser.add_argument("--json", type=Path, default=None, help="also write every trial as JSON here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="goldfish-crash-"))
    try:
        results = run(args.trials, args.docs, args.shard_size, args.num_proc, args.seed, workdir)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    failed = [trial for trial in results if trial.problems]
    for trial in results:
        status = "FAIL" if trial.problems else "ok"
        print(
            f"trial {trial.index:3d}  kills at {trial.kills} s  shards done at kill {trial.shards_at_kill}  "
            f"finished before kill {trial.finished_before_kill}  {status}"
        )
        for problem in trial.problems:
            print(f"    {problem}")
    kills = sum(len(trial.kills) for trial in results)
    print(f"{len(results)} trials, {kills} kills, {len(failed)} failed")
    if args.json is not None:
        args.json.write_text(json.dumps([dataclasses.asdict(t) for t in results], indent=2) + "\n", encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
