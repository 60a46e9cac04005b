"""The text the tokenizer conformance tests encode with two engines, built from the machine.

At least 10,000 documents, deterministic: Debian copyright files and common
licences cut at paragraph boundaries, the running interpreter's standard
library sources cut at line boundaries, and generated Unicode aimed at the
places where regex dialects and BPE implementations part ways (CJK, emoji
sequences, combining marks, RTL text with direction marks, digit runs of 1 to
12 digits in several scripts, whitespace runs of every kind, CRLF and lone CR,
control characters, contractions with odd case such as ``'ſ``, special-token
text, private-use and unassigned code points). Nothing is downloaded.
"""

from __future__ import annotations

import glob
import random
import sysconfig
from pathlib import Path

#: documents are cut to about this many characters, so the corpus stays a few MB
CHUNK = 350
GENERATED = 3000
MIN_DOCUMENTS = 10_000

_WHITESPACE = [
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    "\r",
    "\x0b",
    "\x0c",
    "\x85",
    "\u00a0",
    "\u2003",
    "\u3000",
    "\u2028",
    "\u200b",
    " \n ",
    "\n\n\n",
]
_DIGITS = ["0123456789", "٠١٢٣٤٥٦٧٨٩", "０１２３４５６７８９", "०१२३४५६७८९", "¹²³", "ⅠⅡⅢⅣ", "〇一二三"]
_SPECIAL = ["<|endoftext|>", "<|begin_of_text|>", "<|end_of_text|>", "<s>", "</s>", "<｜begin▁of▁sentence｜>", "<|im_start|>", "[INST]"]
_CONTRACTIONS = ["'s", "'S", "'ſ", "'t", "'T", "'re", "'RE", "'ve", "'m", "'ll", "'LL", "'d", "’s", "''s", "'ss", "'st"]
_WORDS = [
    "hello",
    "Grüße",
    "naïve",
    "Ελληνικά",
    "Русский",
    "中文文本",
    "日本語のテキスト",
    "한국어",
    "مرحبا",
    "שלום",
    "हिन्दी",
    "ไทย",
    "ǅemal",
    "ﬁne",
    "straße",
]


def build_corpus() -> list[str]:
    """The conformance corpus (deterministic for a given machine)."""
    documents = _licence_documents() + _python_documents() + generated_unicode(GENERATED)
    if len(documents) < MIN_DOCUMENTS:
        raise RuntimeError(f"only {len(documents)} documents could be built on this machine")
    return documents


def _chunks(text: str, separator: str) -> list[str]:
    pieces, current = [], ""
    for part in text.split(separator):
        current = f"{current}{separator}{part}" if current else part
        if len(current) >= CHUNK:
            pieces.append(current)
            current = ""
    if current:
        pieces.append(current)
    return pieces


def _licence_documents() -> list[str]:
    paths = sorted(glob.glob("/usr/share/doc/*/copyright")) + sorted(glob.glob("/usr/share/common-licenses/*"))
    documents: list[str] = []
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        documents += _chunks(text, "\n\n")[:6]
    return documents


def _python_documents(limit: int = 6000) -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    documents: list[str] = []
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        documents += _chunks(text, "\n")[:3]
        if len(documents) >= limit:
            break
    return documents[:limit]


def _random_char(rng: random.Random) -> str:
    while True:
        code = rng.choice(
            [rng.randrange(0x110000), rng.randrange(0x3400, 0xA000), rng.randrange(0x1F300, 0x1FB00), rng.randrange(0x80, 0x800)]
        )
        if not 0xD800 <= code < 0xE000:
            return chr(code)


def _fragment(rng: random.Random) -> str:
    kind = rng.randrange(12)
    if kind == 0:
        return "".join(chr(rng.randrange(0x4E00, 0x9FFF)) for _ in range(rng.randint(1, 12)))
    if kind == 1:  # emoji: plain, skin tones, ZWJ families, flags, keycaps, variation selectors
        return rng.choice(["🐟", "👍🏽", "👨\u200d👩\u200d👧", "🇫🇷", "1\ufe0f\u20e3", "❤\ufe0f", "🏳\ufe0f\u200d🌈", "🫠"]) * rng.randint(
            1, 3
        )
    if kind == 2:  # stacked combining marks on Latin, Devanagari, Hebrew points
        return rng.choice("aeiouAZn") + "".join(chr(rng.randrange(0x300, 0x370)) for _ in range(rng.randint(1, 5)))
    if kind == 3:  # RTL with direction marks and isolates
        return rng.choice(["مرحبا بالعالم", "שָׁלוֹם", "\u200fعربي\u200e", "\u2067ابجد\u2069", "فارسی ۱۲۳"])
    if kind == 4:  # digit runs of 1 to 12 digits
        digits = rng.choice(_DIGITS)
        return "".join(rng.choice(digits) for _ in range(rng.randint(1, 12)))
    if kind == 5:
        return "".join(rng.choice(_WHITESPACE) for _ in range(rng.randint(1, 6)))
    if kind == 6:  # control characters
        return "".join(chr(rng.choice([*range(0x20), 0x7F, *range(0x80, 0xA0)])) for _ in range(rng.randint(1, 4)))
    if kind == 7:
        return rng.choice(_CONTRACTIONS)
    if kind == 8:
        return rng.choice(_SPECIAL)
    if kind == 9:
        return "".join(_random_char(rng) for _ in range(rng.randint(1, 6)))
    if kind == 10:  # private use, noncharacters, tags, astral planes
        return chr(rng.choice([0xE000, 0xF8FF, 0xFFFE, 0xFFFF, 0xE0041, 0x10FFFD, 0x2EBF0, 0x31350, 0xF0000]))
    return rng.choice(_WORDS) + rng.choice(["", " ", ".", ",", "!?", "...", "—", "(", ")"])


def generated_unicode(count: int, seed: int = 12) -> list[str]:
    """``count`` documents of mixed adversarial Unicode, 1 to 40 fragments each."""
    rng = random.Random(seed)
    return ["".join(_fragment(rng) for _ in range(rng.randint(1, 40))) for _ in range(count)]


#: how each code point is set in ``code_point_documents``: after and before letters, digits,
#: spaces, tabs, newlines and an apostrophe, doubled, so that whichever class of the split regex
#: an engine puts it in (letter, number, whitespace, other), the pieces around it differ from the
#: reference's when its class does
CODE_POINT_CONTEXTS = ("{c}'E", "x{c}y", "1{c}2", " {c}\n", "{c} ", "\t{c}", "'{c}", "{c}{c}a")


def code_point_documents(contexts: tuple[str, ...] = CODE_POINT_CONTEXTS, per_document: int = 256) -> list[str]:
    """Every code point but the surrogates, once in each context, ``per_document`` code points a document.

    Why: engines that run the split regex with their own Unicode tables (a hand-written
    pre-tokenizer, PCRE2, a newer Unicode version) differ only on the code points whose
    class differs, and random text meets most of those rarely (the 11,147 documents and
    300 Hypothesis batches met none of the 4,657 where one candidate engine disagreed).
    A newline ends each context, so a difference stays inside its document.
    """
    characters = [chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    return [
        "".join(context.format(c=c) + "\n" for c in characters[start : start + per_document])
        for context in contexts
        for start in range(0, len(characters), per_document)
    ]
