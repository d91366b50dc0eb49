"""What the differential fuzz tests share: their scale, their seed, and what libjq's regex errors
look like (libjq's answers themselves: tests/engine_support.py).

The fuzz tests (tests/test_native_regex_fuzz.py, tests/test_native_fuzz.py) run a fixed, seeded
amount in CI. Two environment variables make a longer run:

- ``TATTLETAIL_FUZZ_SCALE``: a multiplier of every fuzz test's amount of work (default 1);
  ``TATTLETAIL_FUZZ_SCALE=100`` runs a hundred times as many programs and patterns.
- ``TATTLETAIL_FUZZ_SEED``: the seed (default: the fixed CI seed); ``random`` picks a new one,
  printed in the test's failure message so that a run can be repeated.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

CI_SEED = 20260110


def fuzz_scale() -> int:
    return max(1, int(os.environ.get("TATTLETAIL_FUZZ_SCALE", "1")))


@cache
def fuzz_seed() -> int:
    seed = os.environ.get("TATTLETAIL_FUZZ_SEED", "")
    if seed == "random":
        return random.SystemRandom().randrange(2**32)
    return int(seed) if seed else CI_SEED


class JqError:
    """libjq raised an error (its message kept for the reader of a failure)."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message

    def __repr__(self) -> str:
        return f"JqError({self.message!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JqError)

    def __hash__(self) -> int:
        return 0


# --- regex patterns and strings aimed at them (tests/test_native_regex_fuzz.py)

Sampler = Callable[[random.Random], str]

# Characters worth having in patterns and strings: ASCII letters Oniguruma folds into
# multi-character sequences or from non-ASCII letters (s, t, f, i, k), digits, punctuation,
# and the non-ASCII characters whose classification or folding differs between engines.
ASCII_LETTERS = "sStTfFiIkKlLaAzZ"
DIGITS = "0179"
PUNCT = " -_/:@,=!%&'\"~;#<>"
NON_ASCII = "éßẞſ\u212aİıﬀﬁﬂﬃﬅﬆＡｓ٣３😀\u00a0\u2028\u0301Ωω"
SPECIAL_SPACES = "\t\n\r\x0b\x0c\x1c\x85"
UNIVERSE = ASCII_LETTERS + DIGITS + PUNCT + NON_ASCII + SPECIAL_SPACES + ".^$*+?()[]{}|\\"
# Multi-character pieces Oniguruma may match as one case-folded character.
PIECES = ["ss", "SS", "sS", "st", "ST", "ff", "fi", "fl", "ffi", "ffl", "FFI", "Ss", "sſ"]
CONFUSABLES = {
    "s": ["ſ", "ß", "ss"],
    "S": ["ẞ", "ſ"],
    "k": ["\u212a"],
    "K": ["\u212a"],
    "i": ["İ", "ı"],
    "I": ["İ", "ı"],
    "a": ["Ａ", "ａ"],
    "1": ["١", "１"],
    " ": ["\u00a0", "\u2028", "\t"],
}
ESCAPABLE = ".^$*+?()[]{}|\\/-_ #~'\";:,=!@%&"
SHORTHANDS = "dDwWsS"
# Escapes outside the native subset: only there to check that they are refused.
FOREIGN_ESCAPES = [
    "\\h",
    "\\H",
    "\\z",
    "\\Z",
    "\\G",
    "\\x41",
    "\\u0041",
    "\\1",
    "\\p{L}",
    "\\v",
    "\\e",
    "\\0",
    "\\K",
    "\\R",
    "\\X",
    "\\N",
    "\\O",
    "\\y",
]
SIGMA_SHAPES = [
    ("(?:.|\\n)*", ["", "ab", "\n\n", "a\nb", "x" * 30]),
    ("(?:.|\\n)", ["a", "\n", "😀"]),
    ("(?:0000|000|00|0):", ["0:", "00:", "000:", "0000:", "00000:", "0"]),
    (
        "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])\\.",
        ["255.", "25.", "2.", "256.", "09."],
    ),
    ("[0-9a-fA-F]{1,4}:", ["a:", "ffff:", "fffff:", ":", "0a0A:"]),
    ("(?:ab|a)c", ["ac", "abc", "abac"]),
    ("(?:[fF][fF]|[fF]):", ["ff:", "F:", "fff:"]),
]
FLAGS = ["", "", "", "i", "i", "g", "x", "gi", "ix", "xi", "gx", "s", "n", "l", "ig"]


def _member_sampler(pattern_piece: str, icase: bool) -> Sampler:
    """Characters of the universe that Python (in Unicode mode) finds in a class: a bias
    towards strings that match, not a definition."""
    try:
        compiled = re.compile(pattern_piece, re.IGNORECASE if icase else 0)
    except re.error:
        return lambda rng: rng.choice(UNIVERSE)
    members = [c for c in UNIVERSE if compiled.fullmatch(c)]
    members += [p for p in PIECES if icase and rng_free_match(compiled, p)]

    def sample(rng: random.Random) -> str:
        if members and rng.random() < 0.9:
            return rng.choice(members)
        return rng.choice(UNIVERSE + "".join(PIECES))

    return sample


def rng_free_match(compiled: re.Pattern[str], text: str) -> bool:
    return compiled.fullmatch(text) is not None


@dataclass
class _Piece:
    text: str
    sample: Sampler
    quantifiable: bool = True


class PatternGenerator:
    def __init__(self, rng: random.Random, icase: bool) -> None:
        self.rng = rng
        self.icase = icase

    def pattern(self) -> tuple[str, Sampler]:
        rng = self.rng
        piece = self.alternation(depth=0)
        text, sample = piece.text, piece.sample
        if rng.random() < 0.3:
            text = "^" + text
        if rng.random() < 0.3:
            text = text + "$"
        if rng.random() < 0.08:
            # What comes first decides where Oniguruma's search starts (see native's
            # _head_skips_start_positions).
            head = rng.choice(["\\b", "\\B", "$", "^", "\\A", "(?:)", "a{0}", ""])
            text = head + rng.choice([".*", ".+", ".{2,}", ".*?", "(.*)", "(?:.)*"]) + text
        if rng.random() < 0.04:
            text = "(?i)" + text
        return text, sample

    def alternation(self, depth: int) -> _Piece:
        rng = self.rng
        branches = [self.sequence(depth) for _ in range(rng.choice([1, 1, 1, 2, 2, 3]))]
        if rng.random() < 0.05:
            branches.append(_Piece("", lambda r: ""))
        text = "|".join(b.text for b in branches)
        return _Piece(text, lambda r: r.choice(branches).sample(r))

    def sequence(self, depth: int) -> _Piece:
        rng = self.rng
        parts = [self.quantified(depth) for _ in range(rng.choice([1, 1, 2, 2, 3, 4]))]
        return _Piece("".join(p.text for p in parts), lambda r: "".join(p.sample(r) for p in parts))

    def quantified(self, depth: int) -> _Piece:
        rng = self.rng
        atom = self.atom(depth)
        roll = rng.random()
        if roll < 0.55 or (not atom.quantifiable and rng.random() < 0.8):
            return atom
        low, high = 0, 3
        if roll < 0.65:
            q = "*"
        elif roll < 0.75:
            q, low = "+", 1
        elif roll < 0.85:
            q, high = "?", 1
        else:
            low = rng.choice([0, 1, 2, 3, 3, 3, 3, 3, 3, 999, 1000])
            high = low + rng.choice([0, 1, 2])
            q = rng.choice(
                [
                    f"{{{low}}}",
                    f"{{{low},}}",
                    f"{{{low},{high}}}",
                    f"{{,{high}}}",
                    f"{{{high},{low}}}",
                ]
            )
            if q == f"{{{low}}}":
                high = low
            elif q.startswith("{,"):
                low = 0
        suffix = ""
        extra = rng.random()
        if extra < 0.25:
            suffix = "?"
        elif extra < 0.28:
            suffix = "+"
        elif extra < 0.30:
            suffix = rng.choice(["*", "{2}", "??"])

        def sample(r: random.Random) -> str:
            count = r.randint(low, high + (1 if r.random() < 0.1 else 0))
            if count > 10:  # a long run of one sample: nested long runs stay affordable
                return atom.sample(r)[:5] * count
            return "".join(atom.sample(r) for _ in range(count))

        return _Piece(atom.text + q + suffix, sample)

    def atom(self, depth: int) -> _Piece:  # noqa: C901 - one branch per kind of atom
        rng = self.rng
        roll = rng.random()
        if roll < 0.30:
            c = (
                rng.choice(ASCII_LETTERS + DIGITS + PUNCT + NON_ASCII)
                if rng.random() < 0.9
                else "\\"
            )
            if c in ESCAPABLE and c not in " -_/:@,=!%&'\"~;#<>":
                c = "\\" + c
            literal = c[-1]

            def sample_literal(r: random.Random) -> str:
                if self.icase and r.random() < 0.4:
                    return r.choice([literal.swapcase(), *CONFUSABLES.get(literal, [literal])])
                return literal

            return _Piece(c, sample_literal)
        if roll < 0.38:
            c = rng.choice(ESCAPABLE)
            return _Piece("\\" + c, lambda r: c)
        if roll < 0.41:
            code = rng.choice("ntr")
            char = {"n": "\n", "t": "\t", "r": "\r"}[code]
            return _Piece("\\" + code, lambda r: char)
        if roll < 0.53:
            letter = rng.choice(SHORTHANDS)
            return _Piece("\\" + letter, _member_sampler("\\" + letter, self.icase))
        if roll < 0.58:
            return _Piece(".", _member_sampler(".", self.icase))
        if roll < 0.66:
            anchor = rng.choice(["^", "$", "\\A", "\\b", "\\B", "\\b", "\\B"])
            return _Piece(anchor, lambda r: r.choice(["", "", " ", "\n"]), quantifiable=False)
        if roll < 0.67:
            foreign = rng.choice(FOREIGN_ESCAPES)
            return _Piece(foreign, lambda r: r.choice(UNIVERSE))
        if roll < 0.71:
            # Shapes the Sigma converter writes (wildcards, CIDR ranges), whose backtracking
            # bound relies on alternatives that cannot begin alike or that a next character ends.
            text, words = rng.choice(SIGMA_SHAPES)
            return _Piece(text, lambda r: r.choice(words))
        if roll < 0.85:
            return self.char_class()
        if depth >= 2:
            return _Piece("a", lambda r: "a")
        inner = self.alternation(depth + 1)
        opener = rng.choice(["(", "(?:", "(?:", "(", "(?i)", "(?i:", "(?=", "(?<n>"][:8])
        if opener == "(?i)":
            return _Piece("(?i)", lambda r: "", quantifiable=False)
        return _Piece(opener + inner.text + ")", inner.sample)

    def char_class(self) -> _Piece:
        rng = self.rng
        items = []
        for _ in range(rng.choice([1, 1, 2, 2, 3, 4])):
            roll = rng.random()
            if roll < 0.35:
                items.append(rng.choice(ASCII_LETTERS + DIGITS + PUNCT + NON_ASCII + ".^$|()*+?{}"))
            elif roll < 0.6:
                low, high = sorted(rng.sample("09azAZafFZ_`sSkK", 2))
                if rng.random() < 0.05:
                    low, high = high, low
                items.append(f"{low}-{high}")
            elif roll < 0.85:
                items.append("\\" + rng.choice(SHORTHANDS))
            elif roll < 0.95:
                items.append("\\" + rng.choice(".-]\\^ntr[$|"))
            else:
                items.append(rng.choice(["[:alpha:]", "a&&b", "\\h", "[a]", "\\p{L}", "\\b"]))
        if rng.random() < 0.1:
            items.insert(0, "-")
        if rng.random() < 0.1:
            items.append("-")
        negate = "^" if rng.random() < 0.25 else ""
        text = "[" + negate + "".join(items) + "]"
        return _Piece(text, _member_sampler(text, self.icase))


def mutate(rng: random.Random, text: str) -> str:
    roll = rng.random()
    chars = list(text)
    position = rng.randint(0, len(chars))
    if roll < 0.2:
        chars.insert(position, rng.choice(UNIVERSE))
    elif roll < 0.35:
        chars.insert(position, rng.choice(PIECES))
    elif roll < 0.5 and chars:
        del chars[min(position, len(chars) - 1)]
    elif roll < 0.65 and chars:
        i = min(position, len(chars) - 1)
        chars[i] = rng.choice(CONFUSABLES.get(chars[i], [chars[i].swapcase()]))
    elif roll < 0.75:
        return text.swapcase() if rng.random() < 0.5 else text.upper()
    elif roll < 0.85:
        return text + "\n" if rng.random() < 0.7 else "\n" + text
    elif roll < 0.9:
        return text * rng.choice([2, 3, 20])
    else:
        return text.replace("ss", rng.choice(["ß", "ẞ", "SS"])).replace("st", "ﬆ")
    return "".join(chars)


LONGEST = 120


def strings_for(rng: random.Random, sample: Sampler, count: int) -> list[str]:
    samples = {"", sample(rng)[:LONGEST]}
    while len(samples) < count:
        base = sample(rng) if rng.random() < 0.6 else rng.choice(sorted(samples))
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            base = mutate(rng, base)
        samples.add(base[:LONGEST])
    return sorted(samples)
