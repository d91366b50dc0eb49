"""The index's generated code: index keys, and plans that run a key's candidate rules."""

from __future__ import annotations

from typing import Any

import pytest

from tattletail.native import UNKEYED, compile_native
from tattletail.rule_index import (
    IDENTITY,
    NOT_AN_OBJECT,
    UNKNOWN,
    Candidate,
    index_key_function,
    plan_function,
    slow_key,
)

PATHS = (("eventName",), ("userIdentity", "type"), ("a", "b", "c"))


@pytest.mark.parametrize(
    ("record", "key"),
    [
        ({"eventName": "X", "userIdentity": {"type": "Root"}}, ("X", "Root", None)),
        ({}, (None, None, None)),
        ({"userIdentity": None, "a": {"b": None}}, (None, None, None)),
        # jq raises an error reading a field of a string: never the key of a missing field.
        ({"userIdentity": "x", "a": {"b": 5}}, (None, NOT_AN_OBJECT, NOT_AN_OBJECT)),
        ({"eventName": 1, "a": {"b": {"c": True}}}, (1, None, True)),
    ],
)
def test_index_key_reads_each_path_as_jq_does(record: dict[str, Any], key: tuple) -> None:
    assert index_key_function(PATHS)(record) == key
    assert slow_key(record, PATHS) == key


def test_an_object_or_array_at_a_path_needs_the_slow_key() -> None:
    record = {"eventName": {"x": 1}, "userIdentity": {"type": ["Root"]}}
    with pytest.raises(TypeError):
        hash(index_key_function(PATHS)(record))
    assert slow_key(record, PATHS) == (NOT_AN_OBJECT, NOT_AN_OBJECT, None)


class Recorder:
    """Stands in for the plan's helpers, recording what the plan asks of them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, Any]] = []

    def helpers(self) -> dict[str, Any]:
        return {
            "NO_OUTPUT": object(),
            "RuleRuntimeError": RuntimeError,
            "LazyText": lambda record, originals: "text",
            "record_match": lambda rule, record, text, output, result, now: self.calls.append(
                ("match", rule, output)
            ),
            "count_error": lambda rule, record, message, result: self.calls.append(
                ("error", rule, message)
            ),
        }


def candidate(rule: str, output: Any = None, **fields: Any) -> Candidate:
    def first_output(record: dict[str, Any], text: Any) -> Any:
        if isinstance(output, Exception):
            raise output
        return output

    defaults: dict[str, Any] = {
        "gate_value": None,
        "gate_memo": {},
        "gate_opens": lambda record: True,
        "gate_path": None,
        "known": UNKNOWN,
    }
    return Candidate(rule, first_output, **{**defaults, **fields})


def test_a_plan_runs_its_candidates_in_order_as_the_contract_says() -> None:
    recorder = Recorder()
    plan = plan_function(
        [
            candidate("a", "annotation"),
            candidate("b", None),  # null: no match
            candidate("c", RuntimeError("boom")),
            candidate("d", known="constant"),
            candidate("e", known=IDENTITY),
            candidate("f", False),
        ],
        recorder.helpers(),
    )
    record = {"eventName": "X"}
    plan(record, None, None, None)
    assert recorder.calls == [
        ("match", "a", "annotation"),
        ("error", "c", "boom"),
        ("match", "d", "constant"),
        ("match", "e", record),
    ]


def test_an_inline_gate_reads_the_value_memo_value_gives_and_remembers_decisions() -> None:
    gate = compile_native('select(.userIdentity.sessionContext.mfa == "true") | .eventName').gate
    decided: list[Any] = []
    memo: dict[Any, bool] = {}

    def opens(record: dict[str, Any]) -> bool:
        value = gate.memo_value(record)
        decided.append(value)
        opened = value == "true"
        if value is not UNKEYED:
            memo[value] = opened
        return opened

    recorder = Recorder()
    rule = candidate(
        "mfa",
        "matched",
        gate_value=gate.memo_value,
        gate_memo=memo,
        gate_opens=opens,
        gate_path=gate.reads[0],
    )
    plan = plan_function([rule], recorder.helpers())
    records = [
        {"userIdentity": {"sessionContext": {"mfa": "true"}}},
        {"userIdentity": {"sessionContext": {"mfa": "true"}}},
        {"userIdentity": {"sessionContext": {"mfa": "false"}}},
        {"userIdentity": {"sessionContext": {"mfa": False}}},
        {"userIdentity": {"sessionContext": {"mfa": False}}},
        {"userIdentity": "a string"},
        {"userIdentity": "a string"},
        {"userIdentity": {"sessionContext": {"mfa": 1}}},
    ]
    for record in records:
        plan(record, None, None, None)
    # Each value decided once; UNKEYED values (a string on the way, a number) every time.
    assert decided == ["true", "false", False, UNKEYED, UNKEYED, UNKEYED]
    assert memo == {"true": True, "false": False, False: False}
    assert recorder.calls == [("match", "mfa", "matched")] * 2
