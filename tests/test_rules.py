"""The matching contract, checked against libjq (the `jq` package) on every real record.

The expected result of each rule on each record is computed here, directly with `jq`, from the
contract: only the first output counts; no output, `null`, `false` or a runtime error is no match
(an error is counted); any other first output is a match with that annotation, except that an
output equal to the record gives no annotation. RuleSet must agree on every record, whichever
path (native or libjq) it takes.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import jq
import pytest

from tattletail import config
from tattletail.records import decode_records
from tattletail.rules import ERROR_SAMPLES_PER_RULE, Evaluation, RuleSet, RuleSource
from tests.support import SEED_LOG, real_records

ERROR = "error"
NO_MATCH = "no match"


@dataclass(frozen=True)
class Case:
    id: str
    program: str
    # What must be seen on the real data for the case to mean anything: annotation kinds
    # ("string", "number", "zero", "true", "object", "array", "record"), "errors", "no match".
    shows: tuple[str, ...]


CASES = [
    Case(
        "readme-create-user-string",
        'select(.eventName == "CreateUser") | "username: \\(.responseElements.user.userName)"',
        ("string", "no match"),
    ),
    Case("readme-create-access-key-select", 'select(.eventName == "CreateAccessKey")', ("record",)),
    Case(
        "readme-modifications-test-not",
        'select(.eventName|test("^(List|Get|Describe|AssumeRole|Decrypt|CreateLog|ConsoleLogin)")'
        "|not)",
        ("record", "no match"),
    ),
    Case(
        "number-including-zero",
        "select(.readOnly == false) | (.requestParameters | length)",
        ("number", "zero"),
    ),
    Case("true-and-false", ".readOnly == false", ("true", "no match")),
    Case(
        "object",
        'select(.userIdentity.type == "AWSService") | {who: .userIdentity.invokedBy, '
        "ip: .sourceIPAddress}",
        ("object",),
    ),
    Case("array", "select(.resources != null) | [.resources[].ARN]", ("array",)),
    Case("record-via-select", "select(.errorCode != null)", ("record", "no match")),
    Case("record-via-identity", ".", ("record",)),
    Case(
        "changed-record-is-an-annotation",
        'select(.eventName == "CreateUser") | del(.eventID)',
        ("object",),
    ),
    Case("null-is-no-match", ".requestParameters.bucketName", ("string", "no match")),
    Case(
        "empty-is-no-match",
        'if .eventName == "CreateUser" then "created" else empty end',
        ("string", "no match"),
    ),
    Case("only-first-output-counts", '.readOnly, "second"', ("true", "no match")),
    Case(
        "error-after-first-output-is-never-reached",
        'select(.eventName=="CreateUser") | ("first", error("late"))',
        ("string", "no match"),
    ),
    Case("error-before-output-on-every-record", ".eventName | test(1)", ("errors",)),
    Case("error-on-some-records", ".requestParameters.userName.bar", ("errors", "no match")),
    Case("error-or-array", ".requestParameters | keys", ("errors", "array")),
]

# Features of the native fast path (serialising, regexes, iteration, alternatives, arithmetic),
# checked on records of every eventName and on odd records.
FEATURE_CASES = [
    Case("error-length-of-boolean", ".readOnly | length", ("errors",)),
    Case("tostring-of-object-or-null", ".requestParameters | tostring", ("string",)),
    Case(
        "interpolation-of-object-and-float",
        '"\\(.eventName): \\(.requestParameters.StartTimeRange // .userIdentity.type)"',
        ("string",),
    ),
    Case(
        "regex-flag-and-downcase",
        'select(.eventName | test("^(create|delete)"; "i")) | .eventName | ascii_downcase',
        ("string", "no match"),
    ),
    Case(
        "in-list",
        'select(IN(.eventName; "CreateUser", "StopLogging", "PutBucketPolicy"))',
        ("record", "no match"),
    ),
    Case(
        "any-over-optional-iteration",
        'any(.resources[]?; .type == "AWS::S3::Bucket")',
        ("true", "no match"),
    ),
    Case("alternative-and-addition", '(.errorCode // "ok") + "/" + .eventSource', ("string",)),
    Case("first-of-optional-iteration", ".resources[]?.ARN", ("string", "no match")),
    Case(
        "number-negative-or-float",
        ".responseElements.securityGroupRuleSet.items[0].fromPort"
        " // .requestParameters.StartTimeRange.FromTime",
        ("number", "no match"),
    ),
]

# Shapes where a prefilter or the eventName index could wrongly skip a record: each must still
# give libjq's answer on records of every eventName.
PREFILTER_TRAPS = [
    Case("comma-after-select", '(select(.eventName == "CreateUser") | "u"), "always"', ("string",)),
    Case(
        "alternative-after-select",
        'select(.eventName == "CreateUser") // "fallback"',
        ("string", "record"),
    ),
    Case("array-of-select-is-truthy", '[select(.eventName == "CreateUser")]', ("array",)),
    Case("isempty-of-select", 'isempty(select(.eventName == "CreateUser"))', ("true", "no match")),
    Case("comparison-without-select", '.eventName == "CreateUser"', ("true", "no match")),
    Case("negated-select", 'select(.eventName != "CreateUser")', ("record", "no match")),
    Case("not-select", 'select((.eventName == "CreateUser") | not)', ("record", "no match")),
    Case(
        "or-select",
        'select(.eventName == "CreateUser" or .readOnly == false)',
        ("record", "no match"),
    ),
    Case(
        "or-then-error",
        '(.eventName == "CreateUser") or (.readOnly | length > 0)',
        ("true", "errors"),
    ),
    Case(
        "and-then-error",
        'select(.eventName == "CreateUser" and (.readOnly | length) > 0)',
        ("errors", "no match"),
    ),
    Case(
        "if-else-error",
        'if .eventName == "CreateUser" then "yes" else error("no") end',
        ("string", "errors"),
    ),
    Case(
        "quoted-and-bracket-keys",
        'select(."eventName" == "CreateUser" and .["eventSource"] == "iam.amazonaws.com")',
        ("record", "no match"),
    ),
    Case(
        "unicode-escape-in-literal",
        'select(.eventName == "Create\\u0055ser")',
        ("record", "no match"),
    ),
    Case(
        "in-with-generator",
        'select(.eventName == ("CreateUser", "StopLogging"))',
        ("record", "no match"),
    ),
    Case("optional-select", 'select(.eventName == "CreateUser")?', ("record", "no match")),
    Case(
        "two-paths",
        'select(.eventSource == "s3.amazonaws.com") | .requestParameters.bucketName',
        ("string", "no match"),
    ),
    Case(
        "select-then-length", 'select(.eventName == "CreateUser") | length', ("number", "no match")
    ),
    Case("select-on-non-string-event-name", "select(.eventName == 7)", ("record", "no match")),
    Case(
        "assignment",
        'select(.eventName == "CreateUser") | .eventName |= ascii_downcase',
        ("object", "no match"),
    ),
]

VARIED_CASES = CASES + FEATURE_CASES + PREFILTER_TRAPS


def canonical(value: Any) -> Any:
    """A JSON value in a form where `true` != 1 and 1 == 1.0, as in jq."""
    if isinstance(value, bool):
        return ("boolean", value)
    if isinstance(value, int | float):
        return ("number", float(value))
    if isinstance(value, dict):
        return ("object", tuple(sorted((k, canonical(v)) for k, v in value.items())))
    if isinstance(value, list):
        return ("array", tuple(canonical(v) for v in value))
    return (type(value).__name__, value)


def kind_of(annotation: Any) -> str:
    if annotation is None:
        return "record"
    if annotation is True:
        return "true"
    if isinstance(annotation, int | float):
        return "zero" if annotation == 0 else "number"
    return {str: "string", dict: "object", list: "array"}[type(annotation)]


def expected(program: Any, record: dict[str, Any], text: str) -> Any:
    """The contract, computed with libjq directly: ERROR, NO_MATCH or ("match", annotation)."""
    outputs = iter(program.input_text(text))
    try:
        first = next(outputs)
    except StopIteration:
        return NO_MATCH
    except ValueError:
        return ERROR
    if first is None or first is False:
        return NO_MATCH
    if isinstance(first, dict) and first == record:
        return ("match", None)
    return ("match", canonical(first))


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    found = real_records()
    assert len(found) > 3000
    return found


@pytest.fixture(scope="module")
def texts(records: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(record) for record in records]


@pytest.fixture(scope="module")
def evaluation(records: list[dict[str, Any]]) -> Evaluation:
    """Every case as one rule set, evaluated once over every real record."""
    rules = RuleSet([RuleSource(case.id, case.program) for case in CASES])
    return rules.evaluate(records)


# Records real logs rarely hold: non-ASCII text, floats, -0.0, odd types, keys
# missing, control characters. Each is written the way orjson and json both serialise it.
ODD_RECORDS: list[dict[str, Any]] = [
    {
        "eventID": "odd-unicode",
        "eventName": "CréateUser",
        "eventSource": "iam.amazonaws.com",
        "userIdentity": {"type": "IAMUser", "userName": "Ünïcødé 😀"},
        "requestParameters": {"userName": "josé"},
        "readOnly": False,
        "userAgent": "٣.١٤ ǅ",
    },
    {
        "eventID": "odd-numbers",
        "eventName": "CreateUser",
        "eventSource": "iam.amazonaws.com",
        "requestParameters": {
            "ratio": 0.1,
            "negzero": -0.0,
            "huge": 1e300,
            "StartTimeRange": {"FromTime": 1.5e9, "ToTime": 1688990400.25},
        },
        "readOnly": True,
        "responseElements": {"user": {"userName": 42}},
    },
    {
        "eventID": "odd-types",
        "eventName": 7,
        "requestParameters": "a string",
        "readOnly": "false",
        "resources": {"ARN": "x"},
        "errorCode": None,
    },
    {"eventID": "odd-empty"},
    {
        "eventID": "odd-null-name",
        "eventName": None,
        "requestParameters": [1, 2, {"userName": "x"}],
        "errorCode": "AccessDenied",
        "resources": [],
    },
    {
        "eventID": "odd-controls",
        "eventName": "Create\u007fUser\n",
        "eventSource": "s3.amazonaws.com",
        "requestParameters": {"bucketName": '"q" \\ \u0000 \u2028 </script>'},
    },
    {"eventID": "odd-case", "eventName": "createuser", "eventSource": "IAM.amazonaws.com"},
    {
        "eventID": 12,
        "eventName": "CreateUser",
        "eventSource": "iam.amazonaws.com",
        "resources": [{"ARN": None, "type": "AWS::S3::Bucket"}, {"ARN": "arn:2"}],
    },
]


def check_against_libjq(
    case: Case,
    rule_index: int,
    records: list[dict[str, Any]],
    texts: list[str],
    evaluation: Evaluation,
) -> set[str]:
    """Assert RuleSet's results for one rule equal the contract computed with libjq; return
    what the records exercised (annotation kinds, "errors", "no match")."""
    program = jq.compile(case.program)
    want = [expected(program, record, text) for record, text in zip(records, texts, strict=True)]

    position = {id(record): n for n, record in enumerate(records)}
    got: list[Any] = [NO_MATCH] * len(records)
    for match in evaluation.matches:
        if match.rule_index == rule_index:
            n = position[id(match.record)]
            assert got[n] == NO_MATCH, f"two matches for record {n}"
            got[n] = ("match", None if match.annotation is None else canonical(match.annotation))
    for n, w in enumerate(want):
        if w == ERROR and got[n] == NO_MATCH:
            got[n] = ERROR  # an error is no match; which records errored is checked below

    mismatches = [
        (records[n].get("eventID"), w, g)
        for n, (w, g) in enumerate(zip(want, got, strict=True))
        if w != g
    ]
    assert not mismatches, mismatches[:5]

    errors = sum(1 for w in want if w == ERROR)
    assert evaluation.error_counts.get(rule_index, 0) == errors
    samples = [s for s in evaluation.error_samples if s.rule_index == rule_index]
    assert len(samples) == min(errors, ERROR_SAMPLES_PER_RULE)
    error_ids = {
        event_id if isinstance(event_id, str) else ""
        for event_id in (records[n].get("eventID") for n, w in enumerate(want) if w == ERROR)
    }
    for sample in samples:
        assert sample.event_id in error_ids
        assert sample.message

    seen = {kind_of(m.annotation) for m in evaluation.matches if m.rule_index == rule_index}
    if errors:
        seen.add("errors")
    if NO_MATCH in want:
        seen.add("no match")
    if "zero" in seen:
        seen.add("number")
    return seen


@pytest.mark.parametrize("index", range(len(CASES)), ids=[case.id for case in CASES])
def test_ruleset_agrees_with_libjq_on_every_real_record(
    index: int, records: list[dict[str, Any]], texts: list[str], evaluation: Evaluation
) -> None:
    case = CASES[index]
    seen = check_against_libjq(case, index, records, texts, evaluation)
    # The case exercises what it claims to on this data.
    assert set(case.shows) <= seen


@pytest.fixture(scope="module")
def varied_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One real record of each eventName, every CreateUser, and the odd records."""
    by_name: dict[Any, dict[str, Any]] = {}
    for record in records:
        by_name.setdefault(record.get("eventName"), record)
    create_users = [r for r in records if r.get("eventName") == "CreateUser"]
    chosen = {id(r): r for r in [*by_name.values(), *create_users]}
    assert len(chosen) > 250
    return [*chosen.values(), *ODD_RECORDS]


@pytest.mark.parametrize("case", VARIED_CASES, ids=[case.id for case in VARIED_CASES])
def test_ruleset_agrees_with_libjq_on_every_event_name_and_odd_records(
    case: Case, varied_records: list[dict[str, Any]]
) -> None:
    texts = [json.dumps(record) for record in varied_records]
    evaluation = RuleSet([RuleSource(case.id, case.program)]).evaluate(varied_records)

    seen = check_against_libjq(case, 0, varied_records, texts, evaluation)
    if case not in CASES:
        assert set(case.shows) <= seen


def test_a_rule_failing_on_every_record_does_not_stop_the_rules_after_it(
    records: list[dict[str, Any]], evaluation: Evaluation
) -> None:
    failing = next(n for n, case in enumerate(CASES) if case.id.startswith("error-before-output"))
    identity = next(n for n, case in enumerate(CASES) if case.id == "record-via-identity")

    assert evaluation.records == len(records)
    assert evaluation.error_counts[failing] == len(records)
    assert not [m for m in evaluation.matches if m.rule_index == failing]
    # `.` comes after the failing rule and still matches every record.
    assert sum(1 for m in evaluation.matches if m.rule_index == identity) == len(records)


def test_error_after_first_output_matches_with_the_first_output(evaluation: Evaluation) -> None:
    late = next(n for n, case in enumerate(CASES) if case.id.startswith("error-after-first"))
    annotations = [m.annotation for m in evaluation.matches if m.rule_index == late]

    assert annotations
    assert set(annotations) == {"first"}
    assert {m.record["eventName"] for m in evaluation.matches if m.rule_index == late} == {
        "CreateUser"
    }
    assert late not in evaluation.error_counts


def test_error_samples_name_the_failing_records_event_id() -> None:
    records = [
        {"eventID": "ok-1", "eventName": "A", "requestParameters": {"userName": {"bar": 1}}},
        {"eventID": "bad-1", "eventName": "B", "requestParameters": {"userName": "alice"}},
        {"eventID": "bad-2", "eventName": "C", "requestParameters": {"userName": 7}},
    ]
    evaluation = RuleSet([RuleSource("bar", ".requestParameters.userName.bar")]).evaluate(records)

    assert evaluation.error_counts == {0: 2}
    assert [s.event_id for s in evaluation.error_samples] == ["bad-1", "bad-2"]
    assert all("bar" in s.message for s in evaluation.error_samples)
    assert [m.record["eventID"] for m in evaluation.matches] == ["ok-1"]
    assert evaluation.matches[0].annotation == 1


def test_error_samples_are_capped_but_every_error_is_counted() -> None:
    records = [{"eventID": f"e{n}", "eventName": "X"} for n in range(ERROR_SAMPLES_PER_RULE * 3)]
    evaluation = RuleSet([RuleSource("bad", ".eventName | test(1)")]).evaluate(records)

    assert evaluation.rule_errors == len(records)
    assert len(evaluation.error_samples) == ERROR_SAMPLES_PER_RULE


def test_record_without_event_id_still_gets_an_error_sample() -> None:
    evaluation = RuleSet([RuleSource("bad", 'error("boom")')]).evaluate([{"eventName": "X"}])
    assert evaluation.error_counts == {0: 1}
    assert evaluation.error_samples[0].event_id == ""
    assert "boom" in evaluation.error_samples[0].message


def test_original_scenario_on_the_seed_log_gives_one_create_user_match() -> None:
    # The Go project's own test: its multi-line rule on testdata/1.json.
    loaded = config.parse(
        """
[[rule]]
name = "Create User"
jq_match = '''
select(.eventName == "CreateUser") |
"username: \\(.responseElements.user.userName)"
'''
description = "A new IAM user has been created"
"""
    )
    records = decode_records(SEED_LOG.read_bytes())
    rules = RuleSet([RuleSource(rule.name, rule.jq_match) for rule in loaded.rules])

    evaluation = rules.evaluate(records)

    assert evaluation.records == 3
    assert [(m.rule_index, m.annotation) for m in evaluation.matches] == [(0, "username: user1")]
    assert evaluation.matches[0].record is records[1]
    assert evaluation.rule_errors == 0


def test_matches_come_in_record_order_then_rule_order(records: list[dict[str, Any]]) -> None:
    sample = records[:200]
    rules = RuleSet([RuleSource("all", "."), RuleSource("write", "select(.readOnly == false)")])
    evaluation = rules.evaluate(sample)

    position = {id(record): n for n, record in enumerate(sample)}
    order = [(position[id(m.record)], m.rule_index) for m in evaluation.matches]
    assert order == sorted(order)
    assert Counter(rule for _, rule in order)[0] == len(sample)


def test_empty_batch_evaluates_to_nothing() -> None:
    evaluation = RuleSet([RuleSource("all", ".")]).evaluate([])
    assert (evaluation.records, evaluation.matches, evaluation.rule_errors) == (0, [], 0)


def test_select_output_of_a_record_with_a_big_integer_is_no_annotation_on_every_path() -> None:
    record = {"eventID": "big", "eventName": "CreateUser", "requestParameters": {"n": 2**60 + 1}}
    rules = RuleSet(
        [
            RuleSource("native", 'select(.eventName == "CreateUser")'),
            RuleSource("libjq", "select(.requestParameters.n > 0)"),
        ]
    )
    evaluation = rules.evaluate([record])

    assert [(m.rule_index, m.annotation) for m in evaluation.matches] == [(0, None), (1, None)]


def test_skipped_rules_stay_out_whichever_set_is_skipped_and_in_when_none_is() -> None:
    # Quarantined rules are skipped by every later evaluation: plans without them are kept,
    # and made again when the set changes.
    records = decode_records(SEED_LOG.read_bytes())
    rules = RuleSet(
        [
            RuleSource("a", 'select(.eventName == "CreateUser")'),
            RuleSource("b", 'select(.eventName == "CreateUser") | "b"'),
            RuleSource("c", 'select(.eventName != "")'),
        ]
    )

    def matched(skip: frozenset[int]) -> Counter[int]:
        return Counter(match.rule_index for match in rules.evaluate(records, skip).matches)

    everything = matched(frozenset())
    assert everything == {0: 1, 1: 1, 2: 3}
    for skip in ({0}, {0}, {1, 2}, set(), {2}, {0}):
        expected = Counter({rule: n for rule, n in everything.items() if rule not in skip})
        assert matched(frozenset(skip)) == expected, skip
