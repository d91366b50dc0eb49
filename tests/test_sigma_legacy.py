"""Sigma 1's rules with memory (tattletail.sigma.legacy): `| count() by x > N`, `count(field)`,
`near` and a `timeframe` beside `a and b`, each converted and run over a timeline, with the
answer worked out from the Sigma 1 specification; and what is refused, with the construct named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tattletail.sigma.convert import Conversion
from tests.sigma_support import (
    ARN,
    OTHER_ARN,
    T0,
    convert_documents,
    converted_config,
    iso,
    memory_alerts,
    record,
    rule_yaml,
)

T0_ISO = iso(T0)


def v1(condition: str, timeframe: str | None = "10m", **selections: Any) -> str:
    detection: dict[str, Any] = selections or {"selection": {"eventName": "Alpha"}}
    if timeframe is not None:
        detection["timeframe"] = timeframe
    detection["condition"] = condition
    return rule_yaml(detection, title="Old rule")


def alerts(tmp_path: Path, text: str, records: list[dict[str, Any]]) -> list[Any]:
    return memory_alerts(converted_config(text, tmp_path), "Old rule", records)


def converted(tmp_path: Path, text: str) -> Conversion:
    (conversion,) = convert_documents(text, tmp_path)
    return conversion


def test_count_greater_than_n_alerts_on_the_n_plus_first(tmp_path: Path) -> None:
    text = v1("selection | count() > 3")
    assert converted(tmp_path, text).memory == "threshold 4 in 10m"
    assert alerts(tmp_path, text, [record(n, n, "Alpha") for n in range(3)]) == []
    got = alerts(tmp_path, text, [record(n, n, "alpha") for n in range(9)])
    assert [(a.event_id, a.aggregate.info["count"]) for a in got] == [("e3", 4)]
    assert got[0].aggregate.info["window_start"] == T0_ISO


def test_count_at_least_n_and_by_several_fields(tmp_path: Path) -> None:
    text = v1("selection | count() by userIdentity.arn, sourceIPAddress >= 2")
    assert converted(tmp_path, text).memory == (
        "threshold 2 in 10m by userIdentity.arn, sourceIPAddress"
    )
    records = [record(0, 0, "Alpha"), record(1, 1, "Alpha", userIdentity={"arn": OTHER_ARN})]
    assert alerts(tmp_path, text, records) == []
    got = alerts(tmp_path, text, [*records, record(2, 2, "Alpha")])
    assert [(a.event_id, a.aggregate.info["group"]) for a in got] == [("e2", [ARN, "192.0.2.1"])]


def test_count_of_a_field_counts_its_distinct_values(tmp_path: Path) -> None:
    # "With field name it counts the distinct values in this field."
    text = v1("selection | count(eventName) by sourceIPAddress > 1", selection={"eventName": "A*"})
    assert converted(tmp_path, text).memory == "distinct eventName 2 in 10m by sourceIPAddress"
    same = [record(n, n, "Alpha") for n in range(4)]
    assert alerts(tmp_path, text, same) == []
    got = alerts(tmp_path, text, [*same, record(4, 4, "Apple")])
    assert [(a.event_id, a.aggregate.info["values"]) for a in got] == [("e4", ["Alpha", "Apple"])]


def test_near_is_any_order_within_the_timeframe(tmp_path: Path) -> None:
    text = v1(
        "first | near second and third",
        timeframe="5m",
        first={"eventName": "Alpha"},
        second={"eventName": "Beta"},
        third={"eventName": "Gamma"},
    )
    conversion = converted(tmp_path, text)
    assert conversion.memory == "sequence of 3 in 5m, any order"
    assert [t.name for t in conversion.tables] == [
        "Old rule (first)",
        "Old rule (second)",
        "Old rule (third)",
        "Old rule",
    ]
    assert [t.alert for t in conversion.tables] == [False, False, False, True]
    records = [record(0, 0, "Gamma"), record(1, 100, "Alpha"), record(2, 200, "Beta")]
    assert [a.event_id for a in alerts(tmp_path, text, records)] == ["e2"]
    late = [record(0, 0, "Gamma"), record(1, 100, "Alpha"), record(2, 301, "Beta")]
    assert alerts(tmp_path, text, late) == []


def test_a_timeframe_beside_a_and_b_correlates_them(tmp_path: Path) -> None:
    text = v1(
        "selection1 and selection2",
        timeframe="5m",
        selection1={"eventName": "Alpha"},
        selection2={"eventName": "Beta"},
    )
    conversion = converted(tmp_path, text)
    assert conversion.memory == "sequence of 2 in 5m, any order"
    assert "read as the events of `selection1` and `selection2` within 5m" in conversion.warnings[0]
    got = alerts(tmp_path, text, [record(0, 0, "Beta"), record(1, 240, "Alpha")])
    assert [a.event_id for a in got] == ["e1"]


def test_a_timeframe_beside_one_search_is_ignored_with_a_warning(tmp_path: Path) -> None:
    text = v1("selection or other", other={"eventName": "Beta"}, selection={"eventName": "Alpha"})
    conversion = converted(tmp_path, text)
    assert conversion.memory is None and conversion.converted
    assert conversion.warnings[0].startswith("`timeframe: 10m` is ignored")
    loaded = converted_config(text, tmp_path)
    assert loaded.rules[0].stateful is None
    got = memory_alerts(loaded, "Old rule", [record(0, 0, "Beta"), record(1, 1, "Gamma")])
    assert [a.event_id for a in got] == ["e0"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (v1("selection | count() < 5"), "condition `lt: 5` (fewer than 5 events in a window)"),
        (v1("selection | count() <= 5"), "condition `lte: 5` (at most 5"),
        (v1("selection | count() = 5"), "condition `eq: 5` (exactly 5"),
        (v1("selection | count() != 5"), "condition `neq: 5`"),
        (v1("selection | count() > 1000"), "counts up to 1000"),
        (v1("selection | count() >= 0"), "every group meets it"),
        (v1("selection | max(bytes) > 5"), "max() of a field's values: rules with memory count"),
        (v1("selection | sum(bytes) by x > 5"), "sum() of a field's values"),
        (v1("selection | median(bytes) > 5"), "Sigma 1 has no aggregation function median()"),
        (v1("selection | count() by > 5"), "not Sigma 1's `count([field]) [by field] > N`"),
        (v1("selection | count() > 5", timeframe=None), "without a `timeframe`: a count needs"),
        (v1("selection | count() > 5", timeframe="2w"), "windows are at most 7 days"),
        (v1("selection | count() > 5", timeframe="ten"), "Timespan 'ten' is invalid"),
        (
            v1("a | near b and not c", a={"eventName": "A"}, b={"eventName": "B"}, c={"x": 1}),
            "`and not`: that an event did not happen near another is known only once",
        ),
        (
            v1("a | near b", timeframe=None, a={"eventName": "A"}, b={"eventName": "B"}),
            "`near` (`a | near b`) without a `timeframe`: how near the events must be is not said",
        ),
        (v1("selection | near missing"), "the rule has no search `missing`"),
        (
            v1("selection and not filter", filter={"eventName": "B"}, selection={"x": 1}),
            "timeframe (10m) with the condition `selection and not filter` and no aggregation",
        ),
        (
            rule_yaml(
                {
                    "selection": {"eventName": "A"},
                    "timeframe": "5m",
                    "condition": ["selection | count() > 5", "selection"],
                }
            ),
            "`selection | count() > 5` among 2 conditions",
        ),
    ],
)
def test_sigma_1_constructs_without_an_equivalent_are_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    conversion = converted(tmp_path, text)
    assert conversion.unsupported is not None and message in conversion.unsupported


@pytest.mark.parametrize(("status", "enabled"), [("unsupported", True), ("deprecated", False)])
def test_sigmahqs_unsupported_status_means_it_needed_memory(
    tmp_path: Path, status: str, enabled: bool
) -> None:
    # SigmaHQ marks a rule `unsupported` because of its aggregation; converted into a rule with
    # memory it runs. A deprecated one stays disabled, its steps with it.
    text = v1("a | near b", a={"eventName": "A"}, b={"eventName": "B"}).replace(
        "status: test", f"status: {status}"
    )
    tables = converted(tmp_path, text).tables
    assert [t.enabled for t in tables] == [enabled] * 3
    converted_config(text, tmp_path)  # loads either way
    plain = rule_yaml({"selection": {"eventName": "A"}, "condition": "selection"}).replace(
        "status: test", f"status: {status}"
    )
    assert [t.enabled for t in converted(tmp_path, plain).tables] == [False]
