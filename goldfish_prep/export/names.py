"""The export formats' names as their projects write them, for messages (``--format`` takes the lower-case keys).

>>> format_title("olmo"), with_article("olmo"), with_article("megatron")
('OLMo', 'an OLMo', 'a Megatron')
"""

from __future__ import annotations

#: --format value -> the project's own spelling: nanoGPT, OLMo(-core), Megatron(-LM), Apache Parquet, Hugging Face
#: datasets (a ``save_to_disk`` folder); every format needs one (tests/test_export_names.py)
TITLES = {"nanogpt": "nanoGPT", "olmo": "OLMo", "megatron": "Megatron", "parquet": "Parquet", "hf": "Hugging Face datasets"}


def format_title(format_name: str) -> str:
    """``format_name`` as its project writes it (an unknown name as it is)."""
    return TITLES.get(format_name, format_name)


def with_article(format_name: str) -> str:
    """The title with its indefinite article, by sound: "an OLMo", "a nanoGPT", "a Parquet"."""
    title = format_title(format_name)
    return f"{'an' if title[0].upper() in 'AEIO' else 'a'} {title}"
