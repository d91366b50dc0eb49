"""Sigma correlation rules as rules with memory (tattletail.sigma.memory): for each construct,
the alerts the converted rules give over a timeline, with the answer worked out from the Sigma
correlation specification (and docs/sigma.md where it leaves a choice); what is refused, with
the construct named; and the same text from the same rules."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tattletail.sigma.cli import convert
from tests.sigma_support import (
    ARN,
    OTHER_ARN,
    T0,
    convert_documents,
    converted_config,
    iso,
    memory_alerts,
    record,
    sent_alerts,
)


def base(name: str, event: str, **meta: Any) -> dict[str, Any]:
    return {
        "title": meta.pop("title", f"{event} called"),
        "name": name,
        "logsource": meta.pop("logsource", {"product": "aws", "service": "cloudtrail"}),
        "detection": {"selection": {"eventName": event}, "condition": "selection"},
        **meta,
    }


def correlation(kind: str, rules: list[str], **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": kind, "rules": rules, "timespan": fields.pop("timespan", "10m")}
    for key in ("group-by", "condition", "generate", "aliases"):
        if key.replace("-", "_") in fields:
            body[key] = fields.pop(key.replace("-", "_"))
    return {"title": fields.pop("title", "Correlated"), "correlation": body, **fields}


def documents(*docs: dict[str, Any]) -> str:
    return "---\n".join(yaml.safe_dump(doc, sort_keys=False) for doc in docs)


ALPHA = base("alpha", "Alpha")
BETA = base("beta", "Beta")


def alerts(tmp_path: Path, text: str, records: list[dict[str, Any]], rule: str = "Correlated"):
    return memory_alerts(converted_config(text, tmp_path), rule, records)


# -- event_count -------------------------------------------------------------------------------


def test_event_count_gte_alerts_once_on_the_match_that_reaches_the_count(tmp_path: Path) -> None:
    text = documents(ALPHA, correlation("event_count", ["alpha"], condition={"gte": 3}))
    assert alerts(tmp_path, text, [record(n, n, "Alpha") for n in range(2)]) == []
    got = alerts(tmp_path, text, [record(n, n, "Alpha") for n in range(5)])
    assert [(a.event_id, a.aggregate.info["count"]) for a in got] == [("e2", 3)]


@pytest.mark.parametrize(
    ("condition", "needed"),
    [({"gt": 3}, 4), ({"gte": 3}, 3), ({"gt": 2.5}, 3), ({"gte": 2.5}, 3), ({"gt": 0}, 1)],
)
def test_gt_means_one_more_than_gte(
    tmp_path: Path, condition: dict[str, float], needed: int
) -> None:
    # "gt: The count must be greater than the given value": counts are whole numbers.
    text = documents(ALPHA, correlation("event_count", ["alpha"], condition=condition))
    short = [record(n, n, "Alpha") for n in range(needed - 1)]
    assert alerts(tmp_path, text, short) == []
    got = alerts(tmp_path, text, [record(n, n, "Alpha") for n in range(needed + 2)])
    assert [(a.event_id, a.aggregate.info["count"]) for a in got] == [(f"e{needed - 1}", needed)]


def test_windows_tumble_at_the_epoch(tmp_path: Path) -> None:
    text = documents(ALPHA, correlation("event_count", ["alpha"], condition={"gte": 2}))
    # One second apart, across 10-minute boundary: two windows of one each.
    assert alerts(tmp_path, text, [record(0, 599, "Alpha"), record(1, 600, "Alpha")]) == []
    got = alerts(tmp_path, text, [record(0, 598, "Alpha"), record(1, 599, "Alpha")])
    assert [a.aggregate.info["window_start"] for a in got] == [iso(T0)]


def test_event_count_over_several_rules_counts_a_match_of_any(tmp_path: Path) -> None:
    text = documents(
        ALPHA, BETA, correlation("event_count", ["alpha", "beta"], condition={"gte": 2})
    )
    got = alerts(
        tmp_path, text, [record(0, 0, "Alpha"), record(1, 5, "Gamma"), record(2, 9, "BETA")]
    )
    assert [a.event_id for a in got] == ["e2"]  # Sigma strings match case-insensitively


def test_group_by_several_fields_counts_each_combination(tmp_path: Path) -> None:
    text = documents(
        ALPHA,
        correlation(
            "event_count",
            ["alpha"],
            group_by=["userIdentity.arn", "sourceIPAddress"],
            condition={"gte": 2},
        ),
    )
    records = [
        record(0, 0, "Alpha"),
        record(1, 1, "Alpha", sourceIPAddress="198.51.100.9"),
        record(2, 2, "Alpha", userIdentity={"arn": OTHER_ARN}),
    ]
    assert alerts(tmp_path, text, records) == []
    got = alerts(tmp_path, text, [*records, record(3, 3, "Alpha")])
    assert [(a.event_id, a.aggregate.info["group"]) for a in got] == [("e3", [ARN, "192.0.2.1"])]


def test_a_record_without_a_group_by_field_is_in_no_group(tmp_path: Path) -> None:
    # As `stats count by x` in the SIEMs Sigma targets: no value, no group.
    text = documents(
        ALPHA,
        correlation("event_count", ["alpha"], group_by="userIdentity.arn", condition={"gte": 2}),
    )
    service = {"type": "AWSService", "invokedBy": "ec2.amazonaws.com"}
    records = [record(n, n, "Alpha", userIdentity=service) for n in range(5)]
    assert alerts(tmp_path, text, records) == []
    got = alerts(tmp_path, text, [*records, record(5, 5, "Alpha"), record(6, 6, "Alpha")])
    assert [(a.event_id, a.aggregate.info["group"]) for a in got] == [("e6", ARN)]


# -- value_count -----------------------------------------------------------------------------


def test_value_count_counts_distinct_values_per_group(tmp_path: Path) -> None:
    text = documents(
        ALPHA,
        correlation(
            "value_count",
            ["alpha"],
            group_by="userIdentity.arn",
            condition={"gte": 3, "field": "requestParameters.bucketName"},
        ),
    )

    def bucket(n: int, at: int, name: str | None, arn: str = ARN) -> dict[str, Any]:
        parameters = None if name is None else {"bucketName": name}
        return record(n, at, "Alpha", requestParameters=parameters, userIdentity={"arn": arn})

    records = [bucket(0, 0, "x"), bucket(1, 1, "x"), bucket(2, 2, "y"), bucket(3, 3, None)]
    records.append(bucket(4, 4, "z", OTHER_ARN))
    assert alerts(tmp_path, text, records) == []
    got = alerts(
        tmp_path, text, [*records, bucket(5, 5, "y"), bucket(6, 6, "Z"), bucket(7, 7, "w")]
    )
    assert [(a.event_id, a.aggregate.info["count"], a.aggregate.info["values"]) for a in got] == [
        ("e6", 3, ["x", "y", "Z"])
    ]


# -- temporal, temporal_ordered ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["temporal", "temporal_ordered"])
def test_temporal_ordered_needs_the_order_and_temporal_does_not(tmp_path: Path, kind: str) -> None:
    text = documents(ALPHA, BETA, correlation(kind, ["alpha", "beta"], timespan="5m"))
    in_order = [record(0, 0, "Alpha"), record(1, 60, "Beta")]
    reversed_ = [record(0, 0, "Beta"), record(1, 60, "Alpha")]
    same_second = [record(0, 30, "Beta"), record(1, 30, "Alpha")]
    assert [a.event_id for a in alerts(tmp_path, text, in_order)] == ["e1"]
    assert len(alerts(tmp_path, text, reversed_)) == (1 if kind == "temporal" else 0)
    # CloudTrail's times are to the second: the same second is in order.
    assert len(alerts(tmp_path, text, same_second)) == 1


def test_temporal_holds_within_the_timespan_only(tmp_path: Path) -> None:
    text = documents(ALPHA, BETA, correlation("temporal", ["alpha", "beta"], timespan="5m"))
    assert len(alerts(tmp_path, text, [record(0, 0, "Alpha"), record(1, 300, "Beta")])) == 1
    assert alerts(tmp_path, text, [record(0, 0, "Alpha"), record(1, 301, "Beta")]) == []


def test_temporal_groups_by_the_group_by_fields(tmp_path: Path) -> None:
    text = documents(
        ALPHA,
        BETA,
        correlation("temporal_ordered", ["alpha", "beta"], group_by=["userIdentity.arn"]),
    )
    other = {"arn": OTHER_ARN}
    assert (
        alerts(tmp_path, text, [record(0, 0, "Alpha"), record(1, 9, "Beta", userIdentity=other)])
        == []
    )
    # Neither has the field: each is a group of its own, not one group "null".
    service = {"type": "AWSService"}
    apart = [
        record(0, 0, "Alpha", userIdentity=service),
        record(1, 9, "Beta", userIdentity=service),
    ]
    assert alerts(tmp_path, text, apart) == []
    got = alerts(
        tmp_path,
        text,
        [record(0, 0, "Alpha", userIdentity=other), record(1, 9, "Beta", userIdentity=other)],
    )
    assert [a.aggregate.info["group"] for a in got] == [OTHER_ARN]


def test_an_extended_condition_that_ands_every_rule_is_a_sequence(tmp_path: Path) -> None:
    doc = correlation("temporal", ["alpha", "beta"], timespan="5m")
    doc["correlation"]["condition"] = "alpha and beta"
    text = documents(ALPHA, BETA, doc)
    assert len(alerts(tmp_path, text, [record(0, 0, "Beta"), record(1, 60, "Alpha")])) == 1


def test_aliases_naming_one_field_for_every_rule_group_by_it(tmp_path: Path) -> None:
    doc = correlation("temporal", ["alpha", "beta"], group_by=["who"])
    doc["correlation"]["aliases"] = {
        "who": {"alpha": "userIdentity.arn", "beta": "userIdentity.arn"}
    }
    text = documents(ALPHA, BETA, doc)
    got = alerts(tmp_path, text, [record(0, 0, "Alpha"), record(1, 9, "Beta")])
    assert [a.aggregate.info["group"] for a in got] == [ARN]


# -- generate ------------------------------------------------------------------------------------


@pytest.mark.parametrize("generate", [False, True])
def test_generate_says_whether_the_rules_alert_on_their_own(tmp_path: Path, generate: bool) -> None:
    sequence = correlation("temporal", ["alpha", "beta"], generate=generate, title="Pair")
    count = correlation(
        "event_count", ["alpha"], condition={"gte": 2}, generate=generate, title="Many"
    )
    loaded = converted_config(documents(ALPHA, BETA, sequence), tmp_path)
    records = [record(0, 0, "Alpha"), record(1, 9, "Beta")]
    names = sorted(alert.rule_name for alert in sent_alerts(loaded, records))
    assert names == (["Alpha called", "Beta called", "Pair"] if generate else ["Pair"])
    # A counted rule is folded into the threshold: its own [[rule]] only with generate: true.
    conversions = convert_documents(documents(ALPHA, count), tmp_path, "count.yml")
    assert [len(c.tables) for c in conversions] == [1 if generate else 0, 1]
    if not generate:
        assert conversions[0].role == "no rule of its own (generate: false): part of 'Many'"
    loaded = converted_config(documents(ALPHA, count), tmp_path)
    names = sorted(
        alert.rule_name
        for alert in sent_alerts(loaded, [record(0, 0, "Alpha"), record(1, 9, "Alpha")])
    )
    assert names == (["Alpha called", "Alpha called", "Many"] if generate else ["Many"])


# -- refused ---------------------------------------------------------------------------------------


def refusal(tmp_path: Path, *docs: dict[str, Any]) -> str | None:
    conversions = convert_documents(documents(*docs), tmp_path)
    return conversions[-1].unsupported


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        (
            {"lt": 5},
            "`lt: 5` (fewer than 5 events in a window): known only once the window has closed",
        ),
        ({"lte": 5}, "`lte: 5` (at most 5 events"),
        ({"eq": 5}, "`eq: 5` (exactly 5 events"),
        ({"neq": 5}, "`neq: 5` (any number but 5 events"),
        ({"gte": 0}, "every group meets it, even one with no event"),
        ({"gt": -1}, "every group meets it"),
        ({"gt": 1000}, "counts up to 1000"),
    ],
)
def test_counts_other_than_at_least_n_are_refused(
    tmp_path: Path, condition: dict[str, int], message: str
) -> None:
    found = refusal(tmp_path, ALPHA, correlation("event_count", ["alpha"], condition=condition))
    assert found is not None and found.startswith("correlation: condition `") and message in found


def test_correlations_with_no_rule_with_memory_equivalent_are_refused(tmp_path: Path) -> None:
    gamma = base("gamma", "Gamma")
    some = correlation("temporal", ["alpha", "beta", "gamma"], condition={"gte": 2})
    assert "`gte: 2` over 3 rules: any 2 of them; a sequence needs every step" in str(
        refusal(tmp_path, ALPHA, BETA, gamma, some)
    )
    either = correlation("temporal", ["alpha", "beta"])
    either["correlation"]["condition"] = "alpha or beta"
    assert "condition `alpha or beta`: a sequence needs every step" in str(
        refusal(tmp_path, ALPHA, BETA, either)
    )
    inner = correlation("event_count", ["alpha"], condition={"gte": 2}, name="inner")
    outer = correlation("temporal", ["inner", "beta"])
    assert "a correlation of the correlation rule 'Correlated'" in str(
        refusal(tmp_path, ALPHA, BETA, inner, outer)
    )
    aliased = correlation("temporal", ["alpha", "beta"], group_by=["ip"])
    aliased["correlation"]["aliases"] = {"ip": {"alpha": "sourceIPAddress", "beta": "userAgent"}}
    assert "alias `ip` names different fields in different rules" in str(
        refusal(tmp_path, ALPHA, BETA, aliased)
    )
    long = correlation("event_count", ["alpha"], condition={"gte": 2}, timespan="2w")
    assert "timespan 2w: windows are at most 7 days" in str(refusal(tmp_path, ALPHA, long))
    summed = correlation("value_sum", ["alpha"], condition={"gte": 2, "field": "bytes"})
    assert "correlation type value_sum (a statistic of a field's values)" in str(
        refusal(tmp_path, ALPHA, summed)
    )
    twice = correlation("temporal_ordered", ["alpha", "alpha"])
    assert "naming a rule twice" in str(refusal(tmp_path, ALPHA, twice))
    one = correlation("temporal", ["alpha"])
    assert "temporal of 1 rules: a sequence has 2 to 10" in str(refusal(tmp_path, ALPHA, one))
    missing = correlation("event_count", ["nowhere"], condition={"gte": 2})
    assert "nowhere" in str(refusal(tmp_path, ALPHA, missing))
    windows = base("win", "Alpha", logsource={"product": "windows", "service": "security"})
    on_windows = correlation("event_count", ["win"], condition={"gte": 2})
    assert "its rule 'Alpha called' is unsupported: logsource is not AWS" in str(
        refusal(tmp_path, windows, on_windows)
    )


# -- output ----------------------------------------------------------------------------------------


MIXED = documents(
    ALPHA,
    BETA,
    correlation("temporal_ordered", ["alpha", "beta"], group_by=["userIdentity.arn"], title="Then"),
    correlation("value_count", ["alpha", "beta"], condition={"gt": 4, "field": "eventName"}),
)


def test_converting_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(MIXED)
    outputs = []
    for n in range(2):
        target = tmp_path / f"out{n}.toml"
        assert convert([str(tmp_path / "rules.yml")], str(target)) == 0
        outputs.append(target.read_bytes())
    assert outputs[0] == outputs[1]
    rules = tomllib.loads(outputs[0].decode())["rule"]
    assert [(r["name"], r.get("alert", True)) for r in rules] == [
        ("Alpha called", False),
        ("Beta called", False),
        ("Then", True),
        ("Correlated", True),
    ]
    assert rules[2]["sequence"] == {
        "steps": ["Alpha called", "Beta called"],
        "within": "10m",
        "group_by": 'first((.userIdentity.arn? | values), {"ungrouped": .eventID})',
    }
    assert rules[3]["distinct"] == {"field": ".eventName", "count": 5, "window": "10m"}


def test_a_conversion_into_a_directory_keeps_each_rules_tests(tmp_path: Path) -> None:
    source = tmp_path / "pair.yml"
    source.write_text(MIXED)
    out = tmp_path / "out"
    assert convert([str(source)], f"{out}/") == 0
    written = (out / "pair.toml").read_text()
    test = '\n[[rule.test]]\nname = "kept"\nexpect = false\nevent = { eventName = "Alpha" }\n'
    # A test under the first step and one under the last rule; a tag and `enabled` by hand.
    first_end = written.index("\n# Sigma rule", written.index("\n[[rule]]\n"))
    edited = written[:first_end] + "\n" + test.strip("\n") + "\n" + written[first_end:] + test
    then = edited.index('name = "Then"')
    severity = edited.index("\n", edited.index("severity = ", then)) + 1
    edited = edited[:severity] + "# too noisy here\nenabled = false\n" + edited[severity:]
    (out / "pair.toml").write_text(edited)
    assert convert([str(source)], f"{out}/") == 0
    assert (out / "pair.toml").read_text() == edited
