"""A HF ``Split`` regex (Oniguruma) rewritten for tiktoken (fancy-regex), or the reason it cannot be.

HF ``tokenizers`` runs pre-tokenizer regexes with Oniguruma; tiktoken runs
them with fancy-regex. The same pattern text does not always mean the same
thing in both, and a silent difference would change token ids:

- ``X{1,3}+`` is possessive in fancy-regex but a repeated interval,
  ``(?:X{1,3})+``, in Oniguruma (cl100k's ``\\p{N}{1,3}+`` splits 4-digit
  numbers differently: the known case); ``X{2}?`` is optional, not lazy;
- ``$`` matches before every ``\\n`` in Oniguruma, only at the end in fancy-regex;
- ``(?i:ss)`` matches ``ß`` in Oniguruma (full case folding), not in fancy-regex;
- ``\\h`` is a hex digit in Oniguruma, horizontal space elsewhere; classes may
  nest or use ``&&``/``--`` set operations differently;
- text no alternative matches is a piece of its own in HF (``Isolated``) and
  is dropped by tiktoken.

So this module does not pass patterns through: it parses a small, whitelisted
subset of Oniguruma syntax and writes the fancy-regex pattern that means the
same, refusing (``UnsupportedPattern``) anything outside the subset. Literals
are written as ``\\x{..}`` so no escaping rule can differ. Unmatched text is
kept by a last alternative that consumes characters where the pattern cannot
start. The subset is what byte-level BPE tokenizers use (GPT-2, Llama 3, Qwen,
DeepSeek, OLMo): alternation, groups, lookahead, classes of literals, ranges,
``\\p{..}`` general categories and ``\\s``, greedy/lazy/possessive quantifiers.

The character classes themselves (``\\p{L}``, ``\\p{N}``, ``\\s``, case
folding of ASCII letters) are compared code point by code point between the
two engines in ``tests/test_tokenizer_conformance.py``, and every construct
the translator accepts is compared piece by piece on random strings there.
"""

from __future__ import annotations

import dataclasses

#: the general categories accepted: exactly those whose membership the conformance tests compare
CATEGORIES = frozenset(["L", "Lu", "Ll", "Lt", "Lm", "Lo", "M", "Mn", "N", "Nd", "P", "S", "Z", "C"])
#: ASCII strings that a single character matches under Oniguruma's full case folding (ß = ss, ﬁ = fi...)
_MULTI_FOLDS = ("ss", "st", "ff", "fi", "fl")
_SIMPLE_ESCAPES = {"r": "\r", "n": "\n", "t": "\t", "f": "\f", "v": "\v", "a": "\a", "e": "\x1b"}
_META = set("\\^$.|?*+()[]{}")


class UnsupportedPattern(ValueError):
    """The pattern uses a construct whose meaning is not proven equal in both engines."""


@dataclasses.dataclass(frozen=True)
class Translated:
    """A fancy-regex pattern and whether it can match the empty string."""

    text: str
    nullable: bool


def translate_split_pattern(pattern: str) -> str:
    """The fancy-regex pattern whose ``find_iter`` yields HF ``Split(pattern, "isolated")``'s pieces.

    >>> translate_split_pattern(r"\\p{N}{1,3}+")
    '(?:(?:(?:\\\\p{N}){1,3})+)|(?:(?!(?:(?:(?:\\\\p{N}){1,3})+))(?s:.))+'
    """
    parsed = _Parser(pattern).parse()
    if parsed.nullable:
        raise UnsupportedPattern("it can match the empty string")
    # text where no alternative can start is one piece per run in HF: keep it as a piece here too
    return f"(?:{parsed.text})|(?:(?!(?:{parsed.text}))(?s:.))+"


def _literal(char: str) -> str:
    return f"\\x{{{ord(char):X}}}"


class _Parser:
    """Recursive descent over the whitelisted subset; emits fancy-regex as it goes."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.pos = 0

    def parse(self) -> Translated:
        result = self._alternation()
        if self.pos != len(self.pattern):
            self._refuse(f"unexpected {self.pattern[self.pos]!r}")
        return result

    def _refuse(self, why: str) -> None:
        raise UnsupportedPattern(f"{why} at offset {self.pos} of {self.pattern!r}")

    def _peek(self, text: str) -> bool:
        return self.pattern.startswith(text, self.pos)

    def _alternation(self) -> Translated:
        branches = [self._sequence()]
        while self._peek("|"):
            self.pos += 1
            branches.append(self._sequence())
        return Translated("|".join(b.text for b in branches), any(b.nullable for b in branches))

    def _sequence(self) -> Translated:
        items: list[Translated] = []
        while self.pos < len(self.pattern) and not self._peek("|") and not self._peek(")"):
            items.append(self._quantified(self._atom()))
        return Translated("".join(i.text for i in items), all(i.nullable for i in items))

    def _atom(self) -> Translated:
        char = self.pattern[self.pos]
        if char == "(":
            return self._group()
        if char == "[":
            return self._class()
        if char == "\\":
            return self._escape()
        if char == "$":
            self.pos += 1
            return Translated("(?m:$)", True)  # Oniguruma: end of line, not only of text
        if char in _META:
            self._refuse(f"unsupported {char!r}")
        self.pos += 1
        return Translated(_literal(char), False)

    def _group(self) -> Translated:
        if self._peek("(?i:"):
            return self._case_insensitive_group()
        opener = next((o for o in ("(?:", "(?=", "(?!") if self._peek(o)), None)
        if opener is None and self._peek("(?"):
            self._refuse("unsupported group kind")
        # a capturing group is written non-capturing: Split uses whole matches only
        emitted, lookaround = (opener, opener != "(?:") if opener is not None else ("(?:", False)
        self.pos += len(opener) if opener is not None else 1
        inner = self._alternation()
        if not self._peek(")"):
            self._refuse("unclosed group")
        self.pos += 1
        return Translated(f"{emitted}{inner.text})", True if lookaround else inner.nullable)

    def _escape(self) -> Translated:
        self.pos += 1
        if self.pos >= len(self.pattern):
            self._refuse("a trailing backslash")
        char = self.pattern[self.pos]
        self.pos += 1
        if char in "pP":
            return Translated(self._category(negated=char == "P"), False)
        if char in "sS":
            return Translated(f"\\{char}", False)
        if char in _SIMPLE_ESCAPES:
            return Translated(_literal(_SIMPLE_ESCAPES[char]), False)
        if char in "xu":
            return Translated(_literal(self._hex(char)), False)
        if char.isascii() and not char.isalnum():
            return Translated(_literal(char), False)
        self.pos -= 1
        self._refuse(f"unsupported escape \\{char}")
        raise AssertionError  # unreachable: _refuse raises

    def _category(self, negated: bool) -> str:
        end = self.pattern.find("}", self.pos)
        if not self._peek("{") or end < 0:
            self._refuse("\\p without {name}")
        name = self.pattern[self.pos + 1 : end]
        if name.startswith("^"):
            negated, name = not negated, name[1:]
        if name not in CATEGORIES:
            self._refuse(f"unsupported property \\p{{{name}}}")
        self.pos = end + 1
        return f"\\{'P' if negated else 'p'}{{{name}}}"

    def _hex(self, kind: str) -> str:
        if kind == "x" and self._peek("{"):
            end = self.pattern.find("}", self.pos)
            digits, self.pos = self.pattern[self.pos + 1 : end], end + 1
        else:
            width = 2 if kind == "x" else 4
            digits = self.pattern[self.pos : self.pos + width]
            self.pos += width
        try:
            code = int(digits, 16)
            return chr(code) if not 0xD800 <= code < 0xE000 else self._surrogate()
        except (ValueError, OverflowError):
            self._refuse(f"a malformed \\{kind} escape")
            raise AssertionError from None

    def _surrogate(self) -> str:
        self._refuse("a surrogate code point")
        raise AssertionError

    def _case_insensitive_group(self) -> Translated:
        """``(?i:...)`` whose alternatives are ASCII literals or one class of ASCII letters (``[sdmt]``).

        Oniguruma folds case fully (``ß`` matches ``ss``), fancy-regex simply;
        for single ASCII letters both give the same set (``s``: s, S, ſ), so a
        literal that one character could match by a multi-character fold is refused.
        """
        self.pos += len("(?i:")
        branches = [self._folded_branch()]
        while self._peek("|"):
            self.pos += 1
            branches.append(self._folded_branch())
        if not self._peek(")"):
            self._refuse("a case-insensitive group that is not a list of ASCII literals")
        self.pos += 1
        return Translated("(?i:" + "|".join(branches) + ")", False)

    def _folded_branch(self) -> str:
        if self._peek("["):
            end = self.pattern.find("]", self.pos)
            letters = self.pattern[self.pos + 1 : end] if end > 0 else ""
            if not letters or not all(c.isascii() and c.isalpha() for c in letters):
                self._refuse("a case-insensitive class other than a list of ASCII letters")
            self.pos = end + 1
            return "[" + "".join(map(_literal, letters)) + "]"
        literal = ""
        while self.pos < len(self.pattern) and not self._peek("|") and not self._peek(")"):
            char = self.pattern[self.pos]
            if char == "\\" and self.pos + 1 < len(self.pattern) and not self.pattern[self.pos + 1].isalnum():
                char, self.pos = self.pattern[self.pos + 1], self.pos + 1
            elif char in _META or not char.isascii() or not char.isprintable():
                self._refuse("a case-insensitive group that is not a list of ASCII literals")
            literal += char
            self.pos += 1
        if not literal or any(fold in literal.lower() for fold in _MULTI_FOLDS):
            self._refuse("a case-insensitive literal that is empty or that one character can match by full case folding")
        return "".join(map(_literal, literal))

    def _class(self) -> Translated:
        self.pos += 1
        negated = self._peek("^")
        self.pos += negated
        if self._peek("]"):
            self._refuse("an empty class or a leading ']'")
        parts: list[str] = []
        while not self._peek("]"):
            if self.pos >= len(self.pattern):
                self._refuse("an unclosed class")
            parts.append(self._class_item())
        self.pos += 1
        return Translated(f"[{'^' if negated else ''}{''.join(parts)}]", False)

    def _class_item(self) -> str:
        if self._peek("[") or self._peek("&&") or self._peek("--"):
            self._refuse("a nested class or a class operation")
        start, single = self._class_char()
        if not single or not self._peek("-") or self.pattern.startswith("-]", self.pos):
            return start
        self.pos += 1
        end, single = self._class_char()
        if not single or int(end[3:-1], 16) < int(start[3:-1], 16):
            self._refuse("a range whose ends are not single characters in order")
        return f"{start}-{end}"

    def _class_char(self) -> tuple[str, bool]:
        """One class member as fancy-regex text, and whether it is a single character (``\\x{..}``)."""
        if self._peek("\\"):
            escaped = self._escape().text
            return escaped, escaped.startswith("\\x")
        self.pos += 1
        return _literal(self.pattern[self.pos - 1]), True

    def _quantified(self, atom: Translated) -> Translated:
        if self.pos >= len(self.pattern):
            return atom
        char = self.pattern[self.pos]
        if char in "?*+":
            self.pos += 1
            suffix = self._suffix()  # lazy '?' and possessive '+' mean the same in both engines
            result = Translated(f"(?:{atom.text}){char}{suffix}", atom.nullable or char != "+")
        elif char == "{":
            result = self._interval(atom)
        else:
            return atom
        if self.pos < len(self.pattern) and self.pattern[self.pos] in "?*+{":
            self._refuse("stacked quantifiers")
        return result

    def _suffix(self) -> str:
        if self.pos < len(self.pattern) and self.pattern[self.pos] in "?+":
            self.pos += 1
            return self.pattern[self.pos - 1]
        return ""

    def _interval(self, atom: Translated) -> Translated:
        end = self.pattern.find("}", self.pos)
        body = self.pattern[self.pos + 1 : end] if end > 0 else ""
        low, comma, high = body.partition(",")
        if not low.isdigit() or (high and not high.isdigit()) or (high and int(high) < int(low)):
            self._refuse("an interval other than {n}, {n,} or {n,m}")
        self.pos = end + 1
        counted = f"(?:{atom.text}){{{body}}}"
        nullable = atom.nullable or int(low) == 0
        suffix = self._suffix()
        if suffix == "+":  # Oniguruma: the interval, repeated (not possessive)
            return Translated(f"(?:{counted})+", nullable)
        if suffix == "?" and not comma:  # Oniguruma: {n}? is optional, not lazy
            return Translated(f"(?:{counted})?", True)
        if suffix == "?":
            self._refuse("a lazy interval")
        return Translated(counted, nullable)
