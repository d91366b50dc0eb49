"""Every regex the native fast path accepts means what Oniguruma (jq's ``test``) means.

A seeded generator writes patterns from the grammar the native regex checker accepts, and a
little beyond it (so that its refusals are exercised too), with every flag combination; for each
pattern it writes strings aimed at it: samples of the pattern, then mutated -- case swapped,
characters that Oniguruma folds or classifies differently from Python spliced in (``ß`` and
``ss``, ``ﬆ`` and ``st``, the Kelvin sign, ``ſ``, ``İ``, ``ı``, full-width letters and digits,
Unicode spaces, newlines), ASCII and not. For each pattern the native side accepts,
``.s | test(pattern; flags)`` is evaluated natively and by libjq on every string: the native
side must give libjq's answer or defer (Fallback). A pattern that libjq rejects (a compile
error at run time) must not be evaluated natively at all.

The amount of work and the seed come from tests/fuzz_support.py (``TATTLETAIL_FUZZ_SCALE``,
``TATTLETAIL_FUZZ_SEED``).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

import pytest

from tattletail.native import Fallback, _pushes, _RegexParser, compile_native
from tests.engine_support import jq_program
from tests.fuzz_support import (
    FLAGS,
    JqError,
    PatternGenerator,
    fuzz_scale,
    fuzz_seed,
    strings_for,
)


@dataclass(frozen=True)
class Case:
    pattern: str
    flags: str
    strings: tuple[str, ...]

    def rule(self, ascii_escapes: bool) -> str:
        flags = f"; {json.dumps(self.flags)}" if self.flags or ascii_escapes else ""
        return f".s | test({json.dumps(self.pattern, ensure_ascii=ascii_escapes)}{flags})"


def generate_cases(seed: int, count: int) -> list[Case]:
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        flags = rng.choice(FLAGS)
        icase = "i" in flags
        pattern, sample = PatternGenerator(rng, icase).pattern()
        cases.append(Case(pattern, flags, tuple(strings_for(rng, sample, 12))))
    return cases


ORACLE = '[.[] | .[0] as $p | .[1] as $f | [.[2][] | try test($p; $f) catch "ERR"]]'


def libjq_answers(cases: list[Case]) -> list[list[Any]]:
    rows = jq_program(ORACLE).input_value([[c.pattern, c.flags, c.strings] for c in cases])
    return [[JqError("regex") if cell == "ERR" else cell for cell in row] for row in rows.first()]


def native_answer(program: Any, text: str) -> Any:
    try:
        return program.first_output({"s": text})
    except Fallback:
        return None


def differences(cases: list[Case]) -> tuple[list[str], int, int]:
    """(mismatches, patterns evaluated natively, answers given natively)."""
    problems: list[str] = []
    accepted = answered = 0
    for n, (case, expected) in enumerate(zip(cases, libjq_answers(cases), strict=True)):
        program = compile_native(case.rule(ascii_escapes=n % 2 == 0))
        if program is None or not program.evaluable:
            continue
        accepted += 1
        for text, want in zip(case.strings, expected, strict=True):
            got = native_answer(program, text)
            if got is None:
                continue
            answered += 1
            if got is not want:
                problems.append(
                    f"test({case.pattern!r}; {case.flags!r}) on {text!r}: "
                    f"native {got!r}, libjq {want!r}"
                )
    return problems, accepted, answered


def run(seed: int, count: int) -> tuple[list[str], int, int]:
    return differences(generate_cases(seed, count))


@pytest.mark.parametrize("part", range(2))
def test_native_regexes_equal_oniguruma_on_generated_patterns(part: int) -> None:
    count = 2000 * fuzz_scale()
    seed = fuzz_seed() + part
    problems, accepted, answered = run(seed, count)
    assert not problems, f"seed {seed}: {len(problems)} differences, e.g. {problems[:10]}"
    # The generator reaches the native subset: most of it is accepted and answered natively.
    assert accepted > count // 4
    assert answered > accepted * 5


# --- Oniguruma's backtracking limit

# Oniguruma fails a match attempt at its 10,000,000th backtrack ("retry-limit-in-match over",
# a jq error); the fast path answers only where its bound (native._pushes) on that count stays
# under a tenth of it.  The bound must never be below what Oniguruma really does: on patterns
# that backtrack exponentially, each on an input built to make it backtrack, at
# the longest input where the bound is still under the limit, libjq must not give up -- and, to
# show the input really does backtrack, it must give up on a longer one.  (Observed: the bound
# is 3 to 7 times Oniguruma's count where Oniguruma gives up.)
LIMIT = 10_000_000
BACKTRACKING = [
    # (pattern, flags, repeated unit, length where libjq must give up)
    ("^(?:a|a)*!", "", "a", 60),
    ("^(a|a)*?!", "", "a", 60),
    ("^(?:\\w|\\d)*$", "", "1", 60),
    ("^(?:a|a){0,60}!", "", "a", 60),
    ("^(a+)+!", "", "a", 60),
    ("^(?:s|S)*!", "i", "s", 60),
    ("^(?:[\\w]|a)*!", "i", "a", 60),
    ("^(?:a|a|a)*!", "", "a", 60),
    ("^((?:a|b)+)+!", "", "ab", 60),  # alternatives that cannot begin alike
    ("^((?:0|00):?)+!", "", "0", 80),
]


def longest_under_limit(tree: Any) -> int:
    low, high = 0, 1 << 20
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if _pushes(tree, middle) < LIMIT else (low, middle)
    return low


def backtracking_input(unit: str, length: int) -> str:
    # The pattern's last literal is in the input (else Oniguruma's search skips every
    # attempt), after a character that stops the repeat.
    return unit * (length - 2) + "=!"


@pytest.mark.parametrize(("pattern", "flags", "unit", "gives_up_at"), BACKTRACKING)
def test_backtracking_bound_is_never_below_onigurumas_count(
    pattern: str, flags: str, unit: str, gives_up_at: int
) -> None:
    tree = _RegexParser(pattern, "i" in flags).parse()
    length = longest_under_limit(tree)
    assert length < gives_up_at
    case = Case(
        pattern, flags, (backtracking_input(unit, length), backtracking_input(unit, gives_up_at))
    )
    ((under, over),) = libjq_answers([case])
    assert not isinstance(under, JqError), f"libjq gave up at {length}, the bound said it would not"
    assert isinstance(over, JqError)  # the input does make Oniguruma backtrack
    # The fast path leaves both to libjq, and answers, like libjq, where its budget allows.
    program = compile_native(case.rule(ascii_escapes=False))
    assert program is not None and program.evaluable
    assert native_answer(program, case.strings[0]) is None
    assert native_answer(program, case.strings[1]) is None
    low, high = 3, length  # native answers at low (checked below), not at high
    while high - low > 1:
        middle = (low + high) // 2
        answers = native_answer(program, backtracking_input(unit, middle)) is not None
        low, high = (middle, high) if answers else (low, middle)
    text = backtracking_input(unit, low)
    ((expected,),) = libjq_answers([Case(pattern, flags, (text,))])
    assert native_answer(program, text) is expected
