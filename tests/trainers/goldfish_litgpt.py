"""goldfish_litgpt.py: a litgpt data module for a `goldfish-prep export --format hf` folder.

litgpt's own data modules tokenize text themselves, so none can take pre-computed labels.
This one reads the export's Arrow files with pyarrow (memory-mapped: no copy, and no
``datasets`` release needed: litgpt[extra] pins datasets<4) and hands litgpt's SFT collator
``input_ids`` and ``labels`` as they are; the collator pads labels with -100 and the
finetune scripts shift them by one before the loss. Put this file on PYTHONPATH and run
``litgpt finetune_full CHECKPOINT --data goldfish_litgpt.Goldfish --data.path hf/``.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import torch
from litgpt.data import DataModule
from litgpt.data.base import get_sft_collate_fn
from litgpt.prompts import Default, PromptStyle
from litgpt.tokenizer import Tokenizer
from torch.utils.data import DataLoader, Dataset


def read_export(path: Path) -> pa.Table:
    """The export's rows, every data file in ``state.json`` order, memory-mapped."""
    state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    tables = []
    for entry in state["_data_files"]:
        with pa.memory_map(str(path / entry["filename"])) as source:
            tables.append(pa.ipc.open_stream(source).read_all())
    return pa.concat_tables(tables)


class GoldfishRows(Dataset):
    """Rows ``index`` of the export as litgpt samples; packed rows lose their padding (attention_mask 0)."""

    def __init__(self, table: pa.Table, index: list[int]) -> None:
        self.table = table
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        row = self.index[i]
        used = sum(self.table.column("attention_mask")[row].as_py())
        ids = torch.tensor(self.table.column("input_ids")[row].as_py()[:used], dtype=torch.int64)
        labels = torch.tensor(self.table.column("labels")[row].as_py()[:used], dtype=torch.int64)
        return {"input_ids": ids, "labels": labels, "token_counts": {"raw": used, "raw_plus_prompt_template": used}}


@dataclass
class Goldfish(DataModule):
    """The rows of an hf export; the last ``val_rows`` rows (at least one) are held out for litgpt's validation."""

    path: Path
    val_rows: int = 1
    seed: int = 42
    num_workers: int = 0
    prompt_style: str | PromptStyle = "default"
    tokenizer: Tokenizer | None = field(default=None, init=False, repr=False)
    batch_size: int = field(default=1, init=False, repr=False)
    max_seq_length: int = field(default=-1, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__init__()
        if isinstance(self.prompt_style, str):  # only for litgpt's sample generations: the rows are already templated
            self.prompt_style = Default() if self.prompt_style == "default" else PromptStyle.from_name(self.prompt_style)

    def connect(self, tokenizer: Tokenizer | None = None, batch_size: int = 1, max_seq_length: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_seq_length = -1 if max_seq_length is None else max_seq_length

    def setup(self, stage: str = "") -> None:
        table = read_export(Path(self.path))
        held = max(1, self.val_rows)
        self.train = GoldfishRows(table, list(range(table.num_rows - held)))
        self.val = GoldfishRows(table, list(range(table.num_rows - held, table.num_rows)))

    def _loader(self, rows: GoldfishRows, shuffle: bool) -> DataLoader:
        return DataLoader(
            rows,
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(self.seed),
            num_workers=self.num_workers,
            collate_fn=get_sft_collate_fn(max_seq_length=self.max_seq_length, ignore_index=-100),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val, shuffle=False)
