"""The config fields of rules with memory: parsed into frozen objects, every mistake a precise
error naming the rule and the field; and what the workers are asked to evaluate for them."""

from __future__ import annotations

import pickle

import pytest

from tattletail import config
from tattletail.config import ConfigError, Dedup, Distinct, Duration, Sequence, Threshold
from tattletail.pipeline import rule_sources
from tattletail.rules import KeyFailure, Match, RuleSet
from tattletail.state.plan import Rejects, StatePlan, items_of

STEPS = """
[[rule]]
name = "A"
jq_match = 'select(.eventName == "A")'
alert = false

[[rule]]
name = "B"
jq_match = 'select(.eventName == "B") | "b"'
destinations = []
"""


def rule(body: str, extra: str = "") -> str:
    return f"""
[[rule]]
name = "R"
destinations = []
{body}
{extra}"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config.parse(text)
    return caught.value.problems


def test_each_field_becomes_a_frozen_typed_object() -> None:
    loaded = config.parse(
        STEPS
        + rule('jq_match = "."\nthreshold = { count = 50, window = "1h30m", group_by = ".a" }')
        + """
[[rule]]
name = "D"
jq_match = "."
distinct = { field = ".eventName", count = 3, window = "10m", group_by = [".a", ".b"] }
destinations = []

[[rule]]
name = "E"
jq_match = "."
dedup = { key = '"\\(.a)"', period = "1d" }
destinations = []

[[rule]]
name = "S"
sequence = { steps = ["A", "B", "A"], within = "90s", ordered = false }
destinations = []
"""
    )
    by_name = {r.name: r for r in loaded.rules}
    assert by_name["R"].stateful == Threshold(50, Duration(5400, "1h30m"), (".a",), False)
    assert by_name["D"].stateful == Distinct(
        ".eventName", 3, Duration(600, "10m"), (".a", ".b"), True
    )
    assert by_name["E"].stateful == Dedup('"\\(.a)"', Duration(86400, "1d"))
    assert by_name["S"].stateful == Sequence(("A", "B", "A"), Duration(90, "90s"), (), False, False)
    assert by_name["S"].jq_match == "" and by_name["A"].alert is False
    assert not any("'A'" in warning for warning in loaded.warnings())  # S names it
    with pytest.raises(AttributeError):
        by_name["R"].stateful.count = 1  # type: ignore[misc,union-attr]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            rule('jq_match = "."\nthreshold = { count = 5, windw = "1m" }'),
            "threshold: unknown key 'windw'",
        ),
        (rule('jq_match = "."\nthreshold = { count = 5 }'), "threshold: 'window' is required"),
        (
            rule('jq_match = "."\nthreshold = { count = 5, window = "10 minutes" }'),
            "is not a duration",
        ),
        (rule('jq_match = "."\nthreshold = { count = 5, window = "8d" }'), "must be from 1s to 7d"),
        (
            rule('jq_match = "."\nthreshold = { count = 0, window = "1m" }'),
            "'count' must be from 1 to 1000",
        ),
        (
            rule('jq_match = "."\nthreshold = { count = true, window = "1m" }'),
            "'count' must be a whole number",
        ),
        (
            rule('jq_match = "."\nthreshold = { count = 2, window = "1m", group_by = ".a |" }'),
            "threshold: group_by does not compile",
        ),
        (
            rule(
                'jq_match = "."\nthreshold = { count = 2, window = "1m", group_by = [".a", "("] }'
            ),
            "threshold: group_by #1 does not compile",
        ),
        (
            rule('jq_match = "."\ndistinct = { field = "[", count = 2, window = "1m" }'),
            "distinct: field does not compile",
        ),
        (
            rule('jq_match = "."\ndedup = { key = "", period = "1h" }'),
            "'key' must be a jq expression",
        ),
        (
            rule(
                'jq_match = "."\ndedup = { key = ".a", period = "1h" }',
                'threshold = { count = 1, window = "1m" }',
            ),
            "at most one of threshold, dedup",
        ),
        (rule('jq_match = "."\ndedup = ".a"'), "dedup: must be a table"),
        (
            rule('sequence = { steps = ["A", "Nope"], within = "5m" }'),
            "sequence step 'Nope': no rule has this name",
        ),
        (rule('sequence = { steps = ["A"], within = "5m" }'), "'steps' must name 2 to 10 rules"),
        (
            rule('sequence = { steps = ["A", "R"], within = "5m" }'),
            "a sequence cannot be its own step",
        ),
        (
            rule('jq_match = "."\nsequence = { steps = ["A", "B"], within = "5m" }'),
            "remove jq_match",
        ),
        (
            rule('sequence = { steps = ["A", "B"], within = "5m", ordered = "yes" }'),
            "'ordered' must be true or false",
        ),
        (
            rule('jq_match = "."\nalert = false\nthreshold = { count = 1, window = "1m" }'),
            "alert = false is for the step rules",
        ),
        (
            rule(
                'sequence = { steps = ["A", "B"], within = "5m" }',
                '[[rule.test]]\nname = "t"\nevent = { eventName = "A" }\nexpect = true',
            ),
            "a sequence rule's tests need `events`",
        ),
    ],
)
def test_a_mistake_is_an_error_naming_the_rule_and_the_field(text: str, expected: str) -> None:
    found = problems(STEPS + text)
    assert any(expected in problem and "'R'" in problem for problem in found), found


def test_steps_must_be_enabled_unique_rules_without_memory() -> None:
    found = problems(
        """
[[rule]]
name = "Off"
jq_match = "."
enabled = false

[[rule]]
name = "Twice"
jq_match = "."
[[rule]]
name = "Twice"
jq_match = "."

[[rule]]
name = "Counted"
jq_match = "."
dedup = { key = ".a", period = "1h" }

[[rule]]
name = "S"
sequence = { steps = ["Off", "Twice", "Counted"], within = "5m" }
"""
    )
    assert any("step 'Off': the rule is disabled" in p for p in found)
    assert any("step 'Twice': several rules have this name" in p for p in found)
    assert any("step 'Counted': a step must be a rule without threshold" in p for p in found)


def test_two_stateful_rules_cannot_share_a_name() -> None:
    twice = rule('jq_match = "."\nthreshold = { count = 2, window = "1m" }')
    found = problems(twice + twice)
    assert any("another rule has the same name" in p for p in found)


def test_a_step_nobody_uses_is_warned_about() -> None:
    warnings = config.parse(STEPS).warnings()
    assert any("'A': alert = false and no enabled sequence names it" in w for w in warnings)


# -- what the workers evaluate --------------------------------------------------------------

PLANNED = config.parse(
    STEPS
    + """
[[rule]]
name = "T"
jq_match = "."
threshold = { count = 2, window = "10m", group_by = [".g", ".h"] }
destinations = []

[[rule]]
name = "S"
title = '"seq \\(.g)"'
sequence = { steps = ["A", "B"], within = "5m", group_by = ".g" }
destinations = []
"""
)


def test_workers_get_each_rules_key_expressions_and_skip_sequences() -> None:
    plan = StatePlan.of(PLANNED)
    sources = {source.name: source for source in rule_sources(PLANNED, plan)}
    assert sources["T"].keys == (".g", ".h") and sources["T"].stateful
    assert sources["A"].keys == (".g", '"seq \\(.g)"') and sources["A"].stateful
    assert sources["B"].keys == (".g", '"seq \\(.g)"')
    assert not sources["S"].enabled  # a sequence's steps match for it
    assert {c.rule.name for c in plan.consumers[0]} == {"S"}


def test_matches_carry_key_values_and_event_times_across_processes() -> None:
    rules = RuleSet(rule_sources(PLANNED))
    records = [
        {"eventID": "1", "eventName": "A", "eventTime": "2024-01-01T00:00:00Z", "g": "x"},
        {"eventID": "2", "eventName": "B", "eventTime": "2024-01-01T00:00:09Z", "g": [1]},
        {"eventID": "3", "eventName": "A", "g": {"a": 1}, "h": "z"},  # no eventTime
    ]
    evaluation = rules.evaluate(records)
    crossed = [pickle.loads(pickle.dumps(match)) for match in evaluation.matches]
    a_first = next(m for m in crossed if m.rule_index == 0 and m.record["eventID"] == "1")
    assert a_first.keys == ("x", "seq x") and a_first.event_time == "2024-01-01T00:00:00Z"
    t_third = next(m for m in crossed if m.rule_index == 2 and m.record["eventID"] == "3")
    assert t_third.keys == ({"a": 1}, "z") and t_third.event_time is None

    rejects = Rejects()
    batch = items_of(StatePlan.of(PLANNED), crossed, "s3://b/k", rejects)
    assert rejects.by_reason == {"no_event_time": 2}
    assert sorted(key.group for key in batch if key.rule == "T") == ['["x",null]', "[[1],null]"]
    assert sorted(key.group for key in batch if key.rule == "S") == ['"x"', "[1]"]


def test_a_key_that_raises_is_counted_as_the_rules_error_and_leaves_the_match_out() -> None:
    loaded = config.parse(
        rule(
            'jq_match = "."',
            'threshold = { count = 2, window = "10m", group_by = ".a | ltrimstr(1) | error" }',
        )
    )
    rules = RuleSet(rule_sources(loaded))
    evaluation = rules.evaluate([{"eventID": "1", "eventTime": "2024-01-01T00:00:00Z", "a": "x"}])
    [match] = evaluation.matches
    assert isinstance(match.keys[0], KeyFailure)
    assert evaluation.error_counts == {0: 1}
    assert evaluation.error_samples[0].message.startswith("state key ")
    rejects = Rejects()
    assert items_of(StatePlan.of(loaded), [match], "s3://b/k", rejects) == {}
    assert rejects.by_reason == {"key_error": 1}
    assert isinstance(
        pickle.loads(pickle.dumps(Match(0, {}, None, keys=(KeyFailure("x"),)))).keys[0], KeyFailure
    )
