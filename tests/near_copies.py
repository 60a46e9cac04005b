"""Near-copies of a text for the robust tests: the edits the robust normalisation removes."""

from __future__ import annotations

import random


def edit(text: str, rng: random.Random) -> str:
    """A near-copy: case, doubled spaces, re-wrapped lines, curly quotes, dashes, a ligature, NBSP."""
    words = text.split(" ")
    out = []
    for word in words:
        roll = rng.random()
        if roll < 0.1:
            word = word.upper()
        elif roll < 0.2:
            word = word.capitalize()
        out.append(word)
        out.append(rng.choice([" ", " ", " ", "  ", "\n", " \n  ", "\u00a0"]))
    copy = "".join(out[:-1])
    return copy.replace('"', "\u201c", 1).replace("'", "\u2019").replace("--", "\u2014").replace("fi", "\ufb01", 1)
