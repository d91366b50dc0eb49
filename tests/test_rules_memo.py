"""Memoised libjq outcomes: records with the same values at the fields a rule reads share one
libjq call, and still get exactly libjq's answer each."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tattletail.rules import RuleSet, RuleSource
from tests.engine_support import libjq_verdicts


def libjq_results(program: str, records: list[dict[str, Any]]) -> list[tuple[bool, Any]]:
    texts = [orjson.dumps(record).decode() for record in records]
    return [
        (verdict.matched, verdict.annotation if verdict.matched else None)
        for verdict in libjq_verdicts(program, texts)
    ]


def engine_results(program: str, records: list[dict[str, Any]]) -> list[tuple[bool, Any]]:
    evaluation = RuleSet([RuleSource("rule", program)]).evaluate(records)
    by_record = {id(m.record): m.annotation for m in evaluation.matches}
    return [(id(r) in by_record, by_record.get(id(r))) for r in records]


@pytest.mark.parametrize(
    ("program", "records"),
    [
        # Floats send the fast path to libjq; each select() match is its own record.
        ("select(.a > 1)", [{"a": 1.5, "x": 1}, {"a": 1.5, "x": 2}, {"a": 0.5, "x": 3}]),
        # -0.0 and 0.0 are equal numbers but print differently: never one memo entry.
        ('"v=\\(.a)"', [{"a": -0.0}, {"a": 0.0}, {"a": -0.0}]),
        # true and 1 are equal in Python, not in jq.
        ('select(.a == 1) | "one"', [{"a": True}, {"a": 1}, {"a": 1.0}]),
        # Dropped from an eventName's candidates after its first no-output, never for a
        # non-string eventName (which errors in jq) or a missing one.
        (
            'select(.eventName | test("^Get") | not)',
            [
                {"eventName": "GetX"},
                {"eventName": 5},
                {"eventName": "PutX"},
                {"eventName": "GetX"},
                {},
                {"eventName": 5},
                {"eventName": "PutX"},
            ],
        ),
        # A runtime error is memoised as that error, and counted per record.
        ('.a | test("x")', [{"a": 1.5}, {"a": 1.5}, {"a": "x"}]),
    ],
)
def test_memoised_outcomes_equal_libjq_record_by_record(
    program: str, records: list[dict[str, Any]]
) -> None:
    assert engine_results(program, records) == libjq_results(program, records)


def test_repeated_errors_are_each_counted() -> None:
    records = [{"a": 1.5, "eventID": str(n)} for n in range(5)]
    evaluation = RuleSet([RuleSource("rule", '.a | test("x")')]).evaluate(records)
    assert evaluation.error_counts == {0: 5}
