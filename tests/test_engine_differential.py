"""The engine (index, gates, prefilters, native fast path, libjq fallback) gives exactly libjq's
results: every rule of the README, the 50-rule bench pack and the bundled rule pack, on every
real record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tattletail import config, json_input
from tattletail.rules import RuleSet, RuleSource
from tests.engine_support import engine_result, libjq_truth, libjq_verdicts, typed
from tests.support import REPO, SHARED_DATA, real_records

RULE_FILES = [
    REPO / "config" / "tattletail.toml",
    REPO / "bench" / "rules-50.toml",
    REPO / "config" / "tattletail-pack.toml",
]


def rule_sources(path: Path) -> list[RuleSource]:
    # Through the config loader: the pack is split into files joined by `include`. A sequence
    # rule has no jq of its own (its steps' rules match for it). The converted Sigma rules
    # (config/rules/sigma/) have their own, batched, check: tests/test_sigma_rules.py.
    rules = config.load_file(path).rules
    return [
        RuleSource(rule.name, rule.jq_match)
        for rule in rules
        if rule.jq_match and Path(rule.origin).parent.name != "sigma"
    ]


def panther_events() -> list[dict[str, Any]]:
    path = SHARED_DATA / "detections" / "panther-cloudtrail-tests.jsonl"
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return [line["log"] for line in lines if line.get("is_cloudtrail_event")]


@pytest.mark.parametrize("rules_file", RULE_FILES, ids=lambda p: p.name)
def test_engine_equals_libjq_on_every_real_record(rules_file: Path) -> None:
    sources = rule_sources(rules_file)
    records = real_records() + panther_events()
    assert len(records) > 3000

    evaluation = RuleSet(sources).evaluate(records)
    expected_matches, expected_errors = libjq_truth(sources, records)

    got = [(p, r, typed(a)) for p, r, a in engine_result(evaluation.matches, records)]
    want = [(p, r, typed(a)) for p, r, a in expected_matches]
    assert got == want
    assert evaluation.error_counts == expected_errors
    # The data really exercises the rules: something matches, most rules are not trivial.
    assert len(want) > 0


def test_rule_by_rule_order_gives_the_same_results_as_record_by_record() -> None:
    sources = rule_sources(REPO / "bench" / "rules-50.toml")
    records = real_records()
    rules = RuleSet(sources)
    announced: list[int] = []
    by_rule = rules.evaluate_rule_by_rule(records, frozenset({3}), announced.append)
    by_record = rules.evaluate(records, frozenset({3}))
    assert engine_result(by_rule.matches, records) == engine_result(by_record.matches, records)
    assert by_rule.error_counts == by_record.error_counts
    assert announced == [n for n in range(len(sources)) if n != 3]


# Issue 10, defect 11: "an output equal to the record gives `match` null" is jq's equality, not
# Python's (True == 1, integers compared through a double).  (program, record, output is the
# record as jq compares them)
EQUAL_TO_THE_RECORD = [
    ('select(.eventName == "X") | .readOnly = 1', {"eventName": "X", "readOnly": True}, False),
    ('select(.eventName == "X") | .a = [true]', {"eventName": "X", "a": [1]}, False),
    ('select(.eventName == "X") | .a = {"b": 0}', {"eventName": "X", "a": {"b": False}}, False),
    (
        'select(.eventName == "X") | .n = 9007199254740992',
        {"eventName": "X", "n": 2**53 + 1},
        False,
    ),
    ('select(.eventName == "X") | .n = 5.00000000000000001', {"eventName": "X", "n": 5}, False),
    ('select(.eventName == "X") | .n = .n', {"eventName": "X", "n": 2**53 + 1}, True),
    ('select(.eventName == "X") | .n |= . + 0', {"eventName": "X", "n": 2**53 + 1}, True),
    ('select(.eventName == "X") | .n = 1', {"eventName": "X", "n": 1.0}, True),
    ('select(.eventName == "X") | .n = 0', {"eventName": "X", "n": -0.0}, True),
    ('select(.eventName == "X") | del(.none)', {"eventName": "X", "n": [1e300, -1]}, True),
    # natively: object construction, numbers as the binding would show them
    ("{eventName, n}", {"eventName": "X", "n": 2**53 + 1}, True),
    ("{eventName, f: true}", {"eventName": "X", "f": 1}, False),
    ("{eventName, f: 1}", {"eventName": "X", "f": True}, False),
]


@pytest.mark.parametrize(("program", "record", "is_the_record"), EQUAL_TO_THE_RECORD)
def test_an_output_is_the_record_as_jq_compares_them(
    program: str, record: dict[str, Any], is_the_record: bool
) -> None:
    (verdict,) = libjq_verdicts(program, [orjson.dumps(record).decode()])
    assert verdict.matched and verdict.is_record is is_the_record
    (match,) = RuleSet([RuleSource("rule", program)]).evaluate([record]).matches
    assert typed(match.annotation) == typed(verdict.annotation)
    assert (match.annotation is None) is is_the_record


# Found by tests/test_native_fuzz.py once libjq read each record's own text, as workers give it:
# numbers written otherwise than their value says, which jq prints and compares as written.
WRITTEN_NUMBERS = [
    ('"\\(.n)"', ['{"n": -0}', '{"n": 0}', '{"n": -0}']),
    ('[.n, 1] | join(",")', ['{"n": -0}', '{"n": 0}']),
    (".n | tojson", ['{"n": 1.0}', '{"n": 1.00}', '{"n": 1}', '{"n": 1.0}']),
    ("[.n, {m: .n}] | tojson", ['{"n": -0}', '{"n": 0}']),
    (".n == 1", ['{"n": 1.000000000000000000001}', '{"n": 1}', '{"n": 1.0}']),
    ("{n}", ['{"n": NaN}', '{"n": 1e400}', '{"n": 1.7976931348623157e308}', '{"n": -Infinity}']),
    (".n | length", ['{"n": NaN}', '{"n": -1e400}', '{"n": 1e400}']),
    ('select(.e == "x") | del(.none)', ['{"e": "x", "n": NaN}', '{"e": "x", "n": 1}']),
    ('select(.e == "x")', ['{"e": "x", "n": NaN}']),
    ('label $out | select(.e == "x")', ['{"e": "x", "n": NaN}']),  # libjq's, through the binding
]


@pytest.mark.parametrize(("program", "texts"), WRITTEN_NUMBERS)
def test_numbers_as_the_file_writes_them(program: str, texts: list[str]) -> None:
    records = [json_input.loads(text.encode()) for text in texts]
    evaluation = RuleSet([RuleSource("rule", program)]).evaluate(
        records, texts=[text.encode() for text in texts]
    )
    got = {id(match.record): typed(match.annotation) for match in evaluation.matches}
    for record, verdict in zip(records, libjq_verdicts(program, texts), strict=True):
        assert not verdict.raised
        want = typed(verdict.annotation) if verdict.matched else None
        assert got.get(id(record)) == want, (program, record)
