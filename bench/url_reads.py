"""Reading an output folder by URL: memory and time of streamed shards against the same folder on local disk.

One-shard outputs of pre-tokenized documents (400 ids each, 256 documents per
record batch as ``mask`` writes them) of growing size are uploaded to moto's S3
server (``tests/s3_server.py``, on this machine) and read through
``open_shards``: every document (``.documents()``: one record batch at a time)
and the whole shard (``.table(0)``, what ``stats``, ``verify`` and ``export``
hold). Memory is tracemalloc's peak (the streamed bytes are Python objects; the
client is loaded before tracing starts); times are wall seconds, the local read
included for scale (a memory map and its hash).

    python bench/url_reads.py --documents 1000,4000,16000 --blocks 8192,256
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from click.testing import CliRunner  # noqa: E402

from goldfish_prep.format import open_shards, url_folder  # noqa: E402
from goldfish_prep.readers.remote import use_storage_options  # noqa: E402
from goldfish_prep_cli.main import cli  # noqa: E402
from tests.s3_server import S3Server  # noqa: E402
from tests.shards import train_bpe  # noqa: E402


def make_output(root: Path, documents: int, tokenizer: Path) -> Path:
    values = (np.arange(documents * 400, dtype=np.int64) * 7 % 500).astype(np.int32)
    ids = pa.ListArray.from_arrays(pa.array(np.arange(0, documents * 400 + 1, 400, dtype=np.int32)), pa.array(values))
    pq.write_table(pa.table({"input_ids": ids}), root / f"ids-{documents}.parquet")
    out = root / f"out-{documents}"
    args = ["mask", str(root / f"ids-{documents}.parquet"), "-o", str(out), "-q", "--shard-size", "1GB", "--tokenizer", str(tokenizer)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return out


def peak(location: str, read: Callable[[Any], object]) -> tuple[int, float]:
    shards = open_shards(location)  # the client is made (and the manifest read) before tracing starts
    tracemalloc.start()
    start = time.perf_counter()
    try:
        read(shards)
        return tracemalloc.get_traced_memory()[1], time.perf_counter() - start
    finally:
        tracemalloc.stop()


def every_document(shards: Any) -> None:
    for _ in shards.documents():
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", default="1000,4000,16000", help="documents per output, comma-separated")
    parser.add_argument("--blocks", default="8192,256", help="url_folder.READ_BLOCK values in KiB, comma-separated")
    args = parser.parse_args()
    server = S3Server()
    try:
        os.environ.update(server.env())
        with tempfile.TemporaryDirectory(prefix="goldfish-url-reads-") as work:
            root = Path(work)
            tokenizer = train_bpe(root)
            outputs = {n: make_output(root, n, tokenizer) for n in map(int, args.documents.split(","))}
            for n, out in outputs.items():
                server.upload("bench", out, f"o{n}/")
            print("| READ_BLOCK | shard MB | documents() peak MB | table() peak MB | table() s, URL | table() s, local |")
            print("|---|---|---|---|---|---|")
            for block in map(int, args.blocks.split(",")):
                url_folder.READ_BLOCK = block << 10
                for n, out in outputs.items():
                    use_storage_options(None)
                    url = f"s3://bench/o{n}"
                    size = (out / "data-00000.arrow").stat().st_size
                    documents, _ = peak(url, every_document)
                    whole, seconds = peak(url, lambda shards: shards.table(0))
                    _, local = peak(str(out), lambda shards: shards.table(0))
                    row = [
                        f"{block} KiB",
                        f"{size / 1e6:.1f}",
                        f"{documents / 1e6:.1f}",
                        f"{whole / 1e6:.1f}",
                        f"{seconds:.2f}",
                        f"{local:.3f}",
                    ]
                    print("| " + " | ".join(row) + " |", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
