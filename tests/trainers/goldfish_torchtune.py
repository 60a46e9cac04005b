"""goldfish_torchtune.py: a torchtune dataset builder for a `goldfish-prep export --format hf` folder.

Put this file where the recipe can import it (beside the config, or on PYTHONPATH) and name
the builder in the config: ``dataset: {_component_: goldfish_torchtune.goldfish_dataset, path: hf/}``.
torchtune's SFT collator pads ``tokens`` with the tokenizer's pad id and ``labels`` with -100,
and the recipe shifts the labels by one before the loss: the goldfish labels go through as
they are. Packed rows lose their padding here (``attention_mask`` 0), which the collator adds back.
"""

from typing import Any

from datasets import load_from_disk
from torch.utils.data import Dataset


class GoldfishDataset(Dataset):
    """The rows of an hf export as torchtune's ``{"tokens", "labels"}`` samples."""

    def __init__(self, path: str) -> None:
        self._rows = load_from_disk(path)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        row = self._rows[index]
        used = sum(row["attention_mask"])
        return {"tokens": row["input_ids"][:used], "labels": row["labels"][:used]}


def goldfish_dataset(tokenizer: Any, path: str) -> GoldfishDataset:
    """The builder torchtune calls with the recipe's tokenizer (unused: the rows are tokenized)."""
    return GoldfishDataset(path)
