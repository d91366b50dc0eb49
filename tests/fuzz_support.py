"""What the differential fuzz tests share: their scale, their seed, and libjq as the oracle.

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
from functools import cache
from typing import Any

import jq

CI_SEED = 20260110


def fuzz_scale() -> int:
    return max(1, int(os.environ.get("TATTLETAIL_FUZZ_SCALE", "1")))


@cache
def fuzz_seed() -> int:
    seed = os.environ.get("TATTLETAIL_FUZZ_SEED", "")
    if seed == "random":
        return random.SystemRandom().randrange(2**32)
    return int(seed) if seed else CI_SEED


@cache
def jq_program(source: str) -> Any:
    return jq.compile(source)


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


# A rule's verdict on one record, from libjq alone and straight from the matching contract (see
# tattletail.rules): "none" (no output, null, false), "record" (a first output equal to the
# record, as jq compares), "output" (another first output: the annotation) or "error" (a runtime
# error before the first output: its message).
_VERDICT = """
try (
  . as $__tattletail_record
  | [first(({source}
  ))]
  | if . == [] or .[0] == null or .[0] == false then ["none"]
    elif .[0] == $__tattletail_record then ["record"]
    else ["output", .[0]]
    end
) catch ["error", .]
"""


def libjq_verdicts(source: str, texts: list[str]) -> list[tuple[Any, ...]]:
    """libjq's verdict (see _VERDICT) for one rule on each record text, in one libjq run."""
    program = jq_program(_VERDICT.replace("{source}", source))
    verdicts = [tuple(v) for v in program.input_text("\n".join(texts)).all()]
    assert len(verdicts) == len(texts)
    return verdicts
