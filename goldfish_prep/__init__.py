"""goldfish-prep: pre-computed goldfish loss masks for LLM training data.

The goldfish loss (Hans et al. 2024, arXiv 2406.10209) leaves about one token in
``k`` out of the next-token loss, chosen by hashing the ``context_width`` ids
ending at each token, so a repeated passage always loses the same tokens.

>>> from goldfish_prep import goldfish_mask
>>> goldfish_mask([1, 2, 3], k=4, context_width=13).tolist()
[False, False, False]
"""

from goldfish_prep.config import GOLDFISH_SPEC_VERSION, STRATEGIES, MaskConfig
from goldfish_prep.errors import ConfigError, GoldfishError, InputError, OutputError, TokenizerError
from goldfish_prep.mask import goldfish_mask, mask_documents

__version__ = "0.1.0"

__all__ = [
    "GOLDFISH_SPEC_VERSION",
    "STRATEGIES",
    "ConfigError",
    "GoldfishError",
    "InputError",
    "MaskConfig",
    "OutputError",
    "TokenizerError",
    "__version__",
    "goldfish_mask",
    "mask_documents",
]
