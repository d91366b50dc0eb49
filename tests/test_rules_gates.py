"""The index and the gates in front of each rule (rules.RuleSet, native "Gate") never change a
result: what libjq alone gives, record by record, is what the engine gives, whatever type the
indexed and gated fields hold and in whatever order records arrive."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tattletail.native import UNKEYED, compile_native
from tattletail.rules import RuleSet, RuleSource
from tests.engine_support import engine_result, libjq_truth, typed

# Each shape the index or a gate handles differently.
GATED_RULES = [
    # A memo gate on one field (its regex runs once per distinct userAgent).
    RuleSource("agent", 'select(.userAgent // "" | test("kali|parrot"; "i")) | "\\(.eventName)"'),
    # A key gate on a nested index path and a top-level one.
    RuleSource(
        "root",
        'select(.userIdentity.type == "Root" and .eventType != "AwsServiceEvent")'
        ' | "root called \\(.eventName)"',
    ),
    # A key gate on eventName, then a condition the index cannot see.
    RuleSource(
        "attach",
        'select(.eventName | test("^Attach(User|Role)Policy$"))'
        ' | select(.requestParameters.policyArn | endswith("/AdministratorAccess"))',
    ),
    # A key gate three objects deep.
    RuleSource(
        "instance",
        "select(.userIdentity.sessionContext.ec2RoleDelivery != null) | .sourceIPAddress",
    ),
    # A gate in front of a rest the fast path cannot evaluate (libjq runs past the gate).
    RuleSource(
        "policy",
        'select(.eventName | IN("PutUserPolicy", "CreatePolicy"))'
        " | select(.requestParameters.doc | fromjson? | keys | length > 0)",
    ),
    # Decided by indexed fields alone, with a null output for some keys.
    RuleSource("by-key", 'if .eventName == "PutUserPolicy" then .awsRegion else null end'),
    # No gate at all: the index only.
    RuleSource("plain", 'select(.eventSource == "iam.amazonaws.com")'),
]

_strings = st.sampled_from(["", "x", "Root", "IAMUser", "AttachUserPolicy", "PutUserPolicy"])
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 2), st.sampled_from([1.0, 0.5]), _strings
)
# Values of every JSON type, so an index or memo key never confuses two of them.
_values = st.one_of(
    _scalars, st.lists(_scalars, max_size=2), st.dictionaries(_strings, _scalars, max_size=2)
)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(strategy, _values)


_identity = st.one_of(
    _values,
    st.fixed_dictionaries(
        {"type": _maybe(st.sampled_from(["Root", "IAMUser", "AssumedRole"]))},
        optional={
            "sessionContext": _maybe(
                st.fixed_dictionaries({}, optional={"ec2RoleDelivery": _maybe(_strings)})
            )
        },
    ),
)
_records = st.fixed_dictionaries(
    {},
    optional={
        "eventName": _maybe(
            st.sampled_from(["AttachUserPolicy", "AttachRolePolicy", "PutUserPolicy", "Get"])
        ),
        "eventSource": _maybe(st.sampled_from(["iam.amazonaws.com", "s3.amazonaws.com"])),
        "eventType": _maybe(st.sampled_from(["AwsApiCall", "AwsServiceEvent"])),
        "awsRegion": _maybe(st.sampled_from(["us-east-1", "eu-west-1"])),
        "userAgent": _maybe(st.sampled_from(["aws-cli", "Kali Linux", "parrot/1", ""])),
        "userIdentity": _identity,
        "sourceIPAddress": _maybe(st.sampled_from(["1.2.3.4", "ec2.amazonaws.com"])),
        "requestParameters": _maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "policyArn": _maybe(
                        st.sampled_from(["arn:aws:iam::aws:policy/AdministratorAccess", "p"])
                    ),
                    "doc": _maybe(
                        st.sampled_from(['{"Effect": "Allow"}', '{"Effect": "Deny"}', "{", "[]"])
                    ),
                },
            )
        ),
    },
)

# One rule set for every example: its index and memos carry over from batch to batch, as they
# do in a worker, so a key or memo entry made by one record is tested on the records after it.
_SHARED = RuleSet(GATED_RULES)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_records, min_size=1, max_size=12))
def test_gated_rules_give_libjq_results_on_records_of_every_shape(
    records: list[dict[str, Any]],
) -> None:
    evaluation = _SHARED.evaluate(records)
    expected_matches, expected_errors = libjq_truth(GATED_RULES, records)
    got = [(p, r, typed(a)) for p, r, a in engine_result(evaluation.matches, records)]
    assert got == [(p, r, typed(a)) for p, r, a in expected_matches]
    assert evaluation.error_counts == expected_errors


def test_each_gate_shape_is_recognised() -> None:
    gates = {source.name: compile_native(source.jq_match) for source in GATED_RULES}
    assert gates["agent"].gate.reads == (("userAgent",),)
    assert gates["attach"].gate.reads == (("eventName",),)
    assert gates["instance"].gate.reads == (("userIdentity", "sessionContext", "ec2RoleDelivery"),)
    # The rest of "policy" is not evaluable natively; its gate still is.
    assert not gates["policy"].evaluable
    assert gates["policy"].gate.reads == (("eventName",),)
    assert gates["plain"].gate is None
    assert gates["by-key"].gate is None


def test_memo_value_is_unkeyed_unless_scalars_read_through_objects() -> None:
    gate = compile_native(GATED_RULES[3].jq_match).gate
    value = gate.memo_value
    assert value({"userIdentity": {"sessionContext": {"ec2RoleDelivery": "2.0"}}}) == "2.0"
    assert value({}) is None
    assert value({"userIdentity": None}) is None
    # jq raises an error on a string's field, and reads a number as itself: never keyed.
    assert value({"userIdentity": "x"}) is UNKEYED
    assert value({"userIdentity": {"sessionContext": {"ec2RoleDelivery": 2}}}) is UNKEYED
    # Booleans are keyed as themselves: they never equal a string or null.
    assert value({"userIdentity": {"sessionContext": {"ec2RoleDelivery": False}}}) is False


def candidate_names(rules: RuleSet, record: dict[str, Any]) -> list[str]:
    return [candidate.rule.name for candidate in rules._candidates_for(record)]


def test_a_key_gate_leaves_a_rule_out_of_the_keys_it_closes() -> None:
    rules = RuleSet(GATED_RULES)
    # Only the gate that reads an unindexed field (userAgent) is left to decide per record.
    assert candidate_names(rules, {"eventName": "Get"}) == ["agent"]
    attach = {"eventName": "AttachUserPolicy"}
    assert candidate_names(rules, attach) == ["agent", "attach"]
    root = {"eventName": "Get", "userIdentity": {"type": "Root"}, "eventType": "AwsApiCall"}
    assert candidate_names(rules, root) == ["agent", "root"]
    instance = {"eventName": "Get", "userIdentity": {"sessionContext": {"ec2RoleDelivery": "2"}}}
    assert candidate_names(rules, instance) == ["agent", "instance"]


def test_the_index_keeps_the_output_of_a_rule_decided_by_indexed_fields() -> None:
    by_key = next(rule for rule in GATED_RULES if rule.name == "by-key")
    select = RuleSource("select", 'select(.eventName | test("^Put"))')
    rules = RuleSet([by_key, select])
    records = [{"eventName": "PutUserPolicy", "awsRegion": "eu-west-1", "n": n} for n in range(3)]
    (first, known_output), (second, _) = [
        (candidate.rule.name, candidate.known) for candidate in rules._candidates_for(records[0])
    ]
    assert (first, known_output) == ("by-key", "eu-west-1")
    assert second == "select"
    evaluation = rules.evaluate(records)
    assert [(m.rule_index, m.annotation, m.record["n"]) for m in evaluation.matches] == [
        (0, "eu-west-1", 0), (1, None, 0), (0, "eu-west-1", 1), (1, None, 1),
        (0, "eu-west-1", 2), (1, None, 2),
    ]  # fmt: skip


def test_a_memo_gate_decides_once_per_value() -> None:
    rules = RuleSet(GATED_RULES[:1])
    records = [{"eventName": f"E{n}", "userAgent": "aws-cli/2"} for n in range(50)]
    records.append({"eventName": "E", "userAgent": "kali"})
    evaluation = rules.evaluate(records)
    assert [m.annotation for m in evaluation.matches] == ["E"]
    assert rules.rules[0].gate_memo == {"aws-cli/2": False, "kali": True}


def test_an_object_at_an_index_path_is_evaluated_not_indexed() -> None:
    rules = RuleSet([RuleSource("name", 'select(.eventName == "X")'), GATED_RULES[1]])
    records = [
        {"eventName": {"nested": 1}},
        {"eventName": "X"},
        {"eventName": "Get", "userIdentity": "a string", "eventType": "AwsApiCall"},
    ]
    evaluation = rules.evaluate(records)
    assert [m.rule_index for m in evaluation.matches] == [0]
    # jq cannot read .type of a string: the error is counted, not hidden by the index.
    assert evaluation.error_counts == {1: 1}


@pytest.mark.parametrize("validated", [False, True])
def test_validated_rules_compile_libjq_only_when_a_record_needs_it(validated: bool) -> None:
    rules = RuleSet([RuleSource("number", "select(.n == 1)")], validated=validated)
    program = rules.rules[0].first_output.__self__
    assert (program._libjq is None) is validated
    evaluation = rules.evaluate([{"n": 1}, {"n": 2}])
    assert len(evaluation.matches) == 1
    assert (program._libjq is None) is validated
    # A float compared with an integer literal is left to libjq by the fast path.
    evaluation = rules.evaluate([{"n": 1.0}, {"n": 1.5}])
    assert len(evaluation.matches) == 1
    assert program._libjq is not None


def test_a_worker_imports_no_event_loop() -> None:
    code = (
        "import sys, tattletail.worker_process; "
        "print(sorted(m for m in ('asyncio', 'aiohttp', 'botocore') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
