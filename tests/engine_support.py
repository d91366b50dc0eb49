"""libjq's own answers, straight from the matching contract, and the engine's put in the same
shape: what the differential tests compare."""

from __future__ import annotations

from typing import Any

import jq
import orjson

from tattletail.native import NO_OUTPUT
from tattletail.rules import Match, RuleSource, interpret


def libjq_truth(sources: list[RuleSource], records: list[dict[str, Any]]) -> tuple:
    """Matches and error counts computed with libjq alone, straight from the contract."""
    programs = [jq.compile(source.jq_match) for source in sources]
    matches: list[tuple[int, int, Any]] = []
    errors: dict[int, int] = {}
    for position, record in enumerate(records):
        text = orjson.dumps(record).decode()
        for rule_index, program in enumerate(programs):
            outputs = iter(program.input_text(text))
            try:
                first = next(outputs)
            except StopIteration:
                first = NO_OUTPUT
            except ValueError:
                errors[rule_index] = errors.get(rule_index, 0) + 1
                continue
            matched, annotation = interpret(first, record)
            if matched:
                matches.append((position, rule_index, annotation))
    return matches, errors


def engine_result(matches: list[Match], records: list[dict[str, Any]]) -> list[tuple]:
    position = {id(record): n for n, record in enumerate(records)}
    return [(position[id(m.record)], m.rule_index, m.annotation) for m in matches]


def typed(value: Any) -> Any:
    """A JSON value with bool and number kept apart (True == 1 in Python, not in jq)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
