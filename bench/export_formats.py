"""``goldfish-prep export``: speed and peak memory of each format, and whether memory stays flat as the corpus grows.

The corpus is ``peers.py``'s (Debian copyright files and licences, about 18 MB as
JSON lines) at ``--scales`` copies, masked once per scale with the default
tokenizer (cl100k_base) into shards of ``--shard-size``. Each export then runs as
its own ``goldfish-prep export`` process on one core (``measure.py``: wall time,
largest peak RSS). Exports stream shard by shard, so peak RSS should not grow
with the scale; the tokens per second say what each format costs.

    python bench/export_formats.py                    # scales 1 and 4, 16MB shards
    python bench/export_formats.py --scales 1 --formats nanogpt,olmo
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import load_average, measure
from peers import WORK, build_corpus

FORMATS = ["nanogpt", "olmo", "megatron", "parquet"]


def masked(scale: int, shard_size: str) -> Path:
    """The corpus at ``scale``, masked once (cached under bench/results/work)."""
    out = WORK / f"export-shards-x{scale}-{shard_size}"
    if not (out / "state.json").is_file():
        shutil.rmtree(out, ignore_errors=True)
        corpus = build_corpus(WORK, scale)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "goldfish_prep_cli",
                "mask",
                str(corpus),
                "-o",
                str(out),
                "-q",
                "--num-proc",
                "2",
                "--shard-size",
                shard_size,
            ],
            check=True,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="1,4")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--shard-size", default="16MB")
    args = parser.parse_args()
    rows = []
    for scale in [int(s) for s in args.scales.split(",")]:
        shards = masked(scale, args.shard_size)
        manifest = json.loads((shards / "goldfish_manifest.json").read_text())
        tokens, num_shards = manifest["counts"]["tokens"], len(manifest["shards"])
        for name in args.formats.split(","):
            out = WORK / f"export-{name}-x{scale}"
            command = [sys.executable, "-m", "goldfish_prep_cli", "export", str(shards), "-o", str(out), "--format", name, "--overwrite"]
            run = measure(command, cores=1, log=WORK / f"export-{name}-x{scale}.log")
            assert run.returncode == 0, (WORK / f"export-{name}-x{scale}.log").read_text()
            rows.append((name, scale, num_shards, tokens, run.seconds, tokens / run.seconds, run.max_rss_mb, load_average()))
            shutil.rmtree(out, ignore_errors=True)
            for leftover in [*WORK.glob(f"export-{name}-x{scale}.*bin"), WORK / f"export-{name}-x{scale}.json"]:
                leftover.unlink(missing_ok=True)
    print("| format | scale | shards | tokens | seconds | tokens/s | peak RSS MB | load |")
    print("|---|---|---|---|---|---|---|---|")
    for name, scale, num_shards, tokens, seconds, speed, rss, load in rows:
        print(f"| {name} | x{scale} | {num_shards} | {tokens:,} | {seconds:.2f} | {speed:,.0f} | {rss:.0f} | {load:.1f} |")


if __name__ == "__main__":
    main()
