"""Converted Sigma rules with memory against a reference model written from the semantics
documented in docs/stateful-rules.md (tumbling windows aligned to the epoch, records walked in
event-time order, one alert per group and window; sequences: the earliest complete chain):

- the shipped SigmaHQ aggregation rules, run by `tattletail scan` over every CloudTrail record of
  ../shared/data, alert exactly where a windowed count (a chain search) over the records their
  Sigma search matches says they must; the search is converted alone and run by libjq, so
  neither the memory conversion nor the state stage has a hand in the reference;
- the same for generated correlation rules and Sigma 1 aggregations, on generated timelines.
"""

from __future__ import annotations

import re
import tomllib
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tattletail.alerts import Alert
from tattletail.cli import main
from tests.sigma_support import (
    T0,
    Expected,
    chain_completions,
    converted_config,
    epoch_of,
    field_value,
    got_windows,
    iso,
    jq_of,
    key_text,
    libjq_matches,
    memory_alerts,
    windowed_counts,
)
from tests.support import REPO, SHARED_DATA, real_records

SHIPPED = REPO / "config" / "rules" / "sigma"
AGGREGATION = SHARED_DATA / "sigma" / "sigmahq-aggregation"
CLOUDTRAIL = SHARED_DATA / "cloudtrail"
# The only Sigma 1 forms the SigmaHQ aggregation rules use.
COUNT = re.compile(r"count\(\)(?: by (?P<group>\S+))? > (?P<n>\d+)")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds_of(timeframe: str) -> int:
    return int(timeframe[:-1]) * UNITS[timeframe[-1]]


def search_program(document: dict[str, Any], condition: str) -> str:
    """The jq of the rule's search alone: the rule with `condition` and no timeframe."""
    detection = {k: v for k, v in document["detection"].items() if k != "timeframe"}
    detection["condition"] = condition
    return jq_of(yaml.safe_dump({**document, "detection": detection}, sort_keys=False))


def shipped_memory_files() -> list[Path]:
    """The shipped rule files that hold a rule with memory."""
    found = []
    for path in sorted(SHIPPED.glob("*.toml")):
        rules = tomllib.loads(path.read_text())["rule"]
        if any({"threshold", "distinct", "sequence"} & set(rule) for rule in rules):
            found.append(path)
    return found


def test_shipped_rules_with_memory_alert_where_a_windowed_count_says_over_shared_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = shipped_memory_files()
    assert len(files) == 7
    top = tmp_path / "memory.toml"
    top.write_text(
        f"include = {orjson.dumps([str(p) for p in files]).decode()}\n"
        'default_destinations = ["out"]\n[[destination]]\nid = "out"\ntype = "stdout"\n'
    )
    code = main(["scan", "--dry-run", "--config", str(top), str(CLOUDTRAIL)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    by_rule: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in captured.out.splitlines():
        alert = orjson.loads(line)
        by_rule[alert["name"]].append(alert)

    records = real_records()
    checked = 0
    for path in files:
        source = AGGREGATION / re.search(r"# Source: (\S+\.yml)", path.read_text())[1]
        document = yaml.safe_load(source.read_text())
        detection = document["detection"]
        window = seconds_of(detection["timeframe"])
        condition = detection["condition"]
        title = document["title"]
        if "|" in condition:
            search, _, expression = (part.strip() for part in condition.partition("|"))
            found = COUNT.fullmatch(expression)
            assert found is not None, expression
            program = search_program(document, search)
            expected = windowed_counts(
                records,
                lambda record, program=program: libjq_matches(program, record),
                int(found["n"]) + 1,
                window,
                [found["group"]] if found["group"] else [],
            )
            got = [
                Expected(
                    a["record"]["eventID"],
                    a["threshold"]["group"],
                    a["threshold"]["count"],
                    epoch_of({"eventTime": a["threshold"]["window_start"]}) or 0,
                )
                for a in by_rule.pop(title, [])
            ]
            assert sorted(got, key=lambda e: (e.window_start, e.event_id)) == expected, title
            checked += len(expected)
        else:
            steps = [search_program(document, s) for s in condition.split(" and ")]
            earliest = chain_completions(
                records,
                [lambda record, p=p: libjq_matches(p, record) for p in steps],
                window,
                ordered=False,
            )
            alerts = by_rule.pop(title, [])
            first: dict[str, int] = {}
            for alert in alerts:
                info = alert["sequence"]
                last = epoch_of({"eventTime": info["last_event_time"]}) or 0
                group = key_text(info["group"])
                first[group] = min(first.get(group, last), last)
            assert first == earliest, title
    assert by_rule == {}  # no other rule alerted
    assert checked >= 10  # the reference is not empty: Terraform's and the red team's bursts


# -- generated rules and timelines -------------------------------------------------------------

EVENTS = ("Alpha", "Beta", "Gamma")
NAMES = ("Alpha", "ALPHA", "alpha", "Beta", "beta", "Gamma", "Other")
ARNS = ("arn:aws:iam::1:user/a", "arn:aws:iam::1:user/b", None, None)
ADDRESSES = ("192.0.2.1", "198.51.100.2")
BUCKETS = ("x", "y", "Y", None)
FIELDS = ("userIdentity.arn", "sourceIPAddress")
VALUE = "requestParameters.bucketName"


@st.composite
def timelines(draw: st.DrawFn) -> list[dict[str, Any]]:
    records = []
    for n in range(draw(st.integers(0, 30))):
        arn, bucket = draw(st.sampled_from(ARNS)), draw(st.sampled_from(BUCKETS))
        records.append(
            {
                "eventID": f"e{n:02d}",
                "eventTime": iso(T0 + draw(st.integers(0, 1200))),
                "eventSource": "iam.amazonaws.com",
                "eventName": draw(st.sampled_from(NAMES)),
                "userIdentity": {"type": "IAMUser"} | ({"arn": arn} if arn else {}),
                "sourceIPAddress": draw(st.sampled_from(ADDRESSES)),
                "requestParameters": {"bucketName": bucket} if bucket else None,
            }
        )
    return records


@st.composite
def memory_rules(draw: st.DrawFn) -> dict[str, Any]:
    """A Sigma correlation (or Sigma 1 rule) over rules matching eventName Alpha, Beta, Gamma,
    with what the reference model needs to know of it."""
    form = draw(
        st.sampled_from(
            ["event_count", "value_count", "temporal", "temporal_ordered", "count", "near"]
        )
    )
    window = draw(st.sampled_from([60, 300, 600, 900]))
    groups = draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=2))
    strict = draw(st.booleans())
    number = draw(st.integers(0 if strict else 1, 4))
    needed = number + 1 if strict else number
    if form in ("temporal", "temporal_ordered", "near"):
        steps = list(EVENTS[: draw(st.integers(2, 3))])
        groups = [] if form == "near" else groups
    else:
        steps = draw(st.lists(st.sampled_from(EVENTS), unique=True, min_size=1, max_size=2))
    value = draw(st.booleans()) if form == "count" else form == "value_count"
    rules = [
        {
            "title": f"{event} called",
            "name": event.lower(),
            "logsource": {"product": "aws", "service": "cloudtrail"},
            "detection": {"selection": {"eventName": event}, "condition": "selection"},
        }
        for event in steps
    ]
    if form in ("count", "near"):
        detection: dict[str, Any] = {f"s{n}": {"eventName": event} for n, event in enumerate(steps)}
        detection["timeframe"] = f"{window}s"
        if form == "near":
            detection["condition"] = "s0 | near " + " and ".join(
                f"s{n}" for n in range(1, len(steps))
            )
        else:
            field = VALUE if value else ""
            by = f" by {','.join(groups)}" if groups else ""
            search = " or ".join(f"s{n}" for n in range(len(steps)))
            detection["condition"] = (
                f"{search} | count({field}){by} {'>' if strict else '>='} {number}"
            )
        documents = [
            {
                "title": "Memory",
                "logsource": {"product": "aws", "service": "cloudtrail"},
                "detection": detection,
            }
        ]
    else:
        correlation: dict[str, Any] = {
            "type": form,
            "rules": [rule["name"] for rule in rules],
            "timespan": f"{window}s",
        }
        if groups:
            correlation["group-by"] = groups
        if form in ("event_count", "value_count"):
            correlation["condition"] = {"gt" if strict else "gte": number}
            if form == "value_count":
                correlation["condition"]["field"] = VALUE
        documents = [*rules, {"title": "Memory", "correlation": correlation}]
    kind = "sequence" if form in ("temporal", "temporal_ordered", "near") else "count"
    return {
        "text": "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in documents),
        "kind": kind,
        "steps": steps,
        "window": window,
        "groups": groups,
        "needed": needed,
        "value": VALUE if kind == "count" and value else None,
        "ordered": form == "temporal_ordered",
    }


def step_matches(event: str) -> Any:
    return lambda record: str(record["eventName"]).lower() == event.lower()


def check_sequence(
    rule: dict[str, Any], records: list[dict[str, Any]], alerts: list[Alert]
) -> None:
    steps = [step_matches(event) for event in rule["steps"]]
    expected = chain_completions(records, steps, rule["window"], rule["ordered"], rule["groups"])
    by_id = {record["eventID"]: record for record in records}
    first: dict[str, int] = {}
    for alert in alerts:
        assert alert.aggregate is not None
        info = alert.aggregate.info
        group = key_text(info["group"])
        chain = [by_id[step["event_id"]] for step in info["steps"]]
        times = [epoch_of(record) or 0 for record in chain]
        # Every chain alerted on is one: distinct records, each its step's, one group, in time.
        assert len({r["eventID"] for r in chain}) == len(chain)
        assert all(match(r) for match, r in zip(steps, chain, strict=True))
        groups = [[field_value(r, f) for f in rule["groups"]] for r in chain]
        assert all(key_text(g[0] if len(g) == 1 else (g or None)) == group for g in groups)
        assert max(times) - min(times) <= rule["window"]
        assert not rule["ordered"] or times == sorted(times)
        first[group] = min(first.get(group, max(times)), max(times))
    # The groups with a chain alert, first when their first chain is complete.
    assert first == expected


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(rule=memory_rules(), records=timelines())
def test_generated_rules_with_memory_alert_as_the_reference_model_says(
    tmp_path: Path, rule: dict[str, Any], records: list[dict[str, Any]]
) -> None:
    loaded = converted_config(rule["text"], tmp_path)
    alerts = memory_alerts(loaded, "Memory", records)
    if rule["kind"] == "sequence":
        check_sequence(rule, records, alerts)
        return
    matches = [step_matches(event) for event in rule["steps"]]
    expected = windowed_counts(
        records,
        lambda record: any(match(record) for match in matches),
        rule["needed"],
        rule["window"],
        rule["groups"],
        rule["value"],
    )
    assert got_windows(alerts) == expected
