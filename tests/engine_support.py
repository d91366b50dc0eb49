"""libjq's own answers, straight from the matching contract, and the engine's put in the same
shape: what the differential tests compare."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from functools import cache
from typing import Any

import jq
import orjson

from tattletail.rules import Match, RuleSource


@cache
def jq_program(source: str) -> Any:
    return jq.compile(source)


def as_binding(value: Any) -> Any:
    """How the jq binding reports a value: numbers through a double, integral ones as int, NaN
    as null, infinities as the largest double."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        if value != value:
            return None
        if math.isinf(value):
            return math.copysign(sys.float_info.max, value)
        return int(value) if value.is_integer() else value
    if isinstance(value, int):
        return value if abs(value) <= 2**53 else int(float(value))
    if isinstance(value, list):
        return [as_binding(v) for v in value]
    return {k: as_binding(v) for k, v in value.items()}


def typed(value: Any) -> Any:
    """A value with its Python types kept apart (True == 1 == 1.0 in Python), any size."""
    if isinstance(value, list):
        return ("list", tuple(typed(item) for item in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((key, typed(item)) for key, item in value.items())))
    return (type(value).__name__, repr(value))


# A rule's first output on one record, from libjq alone: none, a value (and whether it equals the
# record as jq compares them), or the error raised before it.
_VERDICT = """
try (
  . as $__tattletail_record
  | [first(({source}
  ))]
  | if . == [] then ["none"] else ["first", .[0], .[0] == $__tattletail_record] end
) catch ["error", .]
"""


@dataclass(frozen=True)
class Verdict:
    """libjq's answer for one rule and one record, and what the matching contract (see
    tattletail.rules) makes of it."""

    raised: bool
    has_output: bool
    output: Any = None
    is_record: bool = False  # the output equals the record, as jq compares them
    error: Any = None

    @property
    def matched(self) -> bool:
        return self.has_output and self.output is not None and self.output is not False

    @property
    def annotation(self) -> Any:
        return None if self.is_record else self.output


def libjq_verdicts(source: str, texts: list[str]) -> list[Verdict]:
    """libjq's verdict for one rule on each record text, in one libjq run."""
    program = jq_program(_VERDICT.replace("{source}", source))
    verdicts = []
    for row in program.input_text("\n".join(texts)).all():
        if row[0] == "error":
            verdicts.append(Verdict(raised=True, has_output=False, error=row[1]))
        elif row[0] == "none":
            verdicts.append(Verdict(raised=False, has_output=False))
        else:
            verdicts.append(Verdict(False, True, row[1], row[2]))
    assert len(verdicts) == len(texts)
    return verdicts


def libjq_truth(sources: list[RuleSource], records: list[dict[str, Any]]) -> tuple:
    """Matches and error counts computed with libjq alone, straight from the contract."""
    texts = [orjson.dumps(record).decode() for record in records]
    matches: list[tuple[int, int, Any]] = []
    errors: dict[int, int] = {}
    for rule_index, source in enumerate(sources):
        for position, verdict in enumerate(libjq_verdicts(source.jq_match, texts)):
            if verdict.raised:
                errors[rule_index] = errors.get(rule_index, 0) + 1
            elif verdict.matched:
                matches.append((position, rule_index, verdict.annotation))
    matches.sort()
    return matches, errors


def engine_result(matches: list[Match], records: list[dict[str, Any]]) -> list[tuple]:
    position = {id(record): n for n, record in enumerate(records)}
    return [(position[id(m.record)], m.rule_index, m.annotation) for m in matches]
