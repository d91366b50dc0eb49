"""What the Sigma tests share: a Sigma rule from a detection, its jq, and its verdict on a
record, through libjq (the definition) and through the native evaluator (which must agree); and
for rules with memory, a converted config's alerts over a timeline and the reference model they
are checked against (windowed counts and chains, written from docs/stateful-rules.md)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jq
import orjson
import yaml
from sigma.collection import SigmaCollection

from tattletail import config
from tattletail.alerts import Alert
from tattletail.native import NO_OUTPUT, Fallback, compile_native
from tattletail.pipeline import rule_sources
from tattletail.rules import RuleSet
from tattletail.ruletests import timeline_alerts
from tattletail.sigma.backend import JqBackend
from tattletail.sigma.convert import Conversion, Converter
from tattletail.sigma.tables import render
from tattletail.state import StatePlan

UUID = "5f0b9a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"


def rule_yaml(detection: dict[str, Any], **meta: Any) -> str:
    """A Sigma rule for AWS CloudTrail with this detection (condition included)."""
    document = {
        "title": meta.pop("title", "Test rule"),
        "id": meta.pop("id", UUID),
        "status": "test",
        "logsource": meta.pop("logsource", {"product": "aws", "service": "cloudtrail"}),
        "detection": detection,
        "level": meta.pop("level", "medium"),
        **meta,
    }
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def jq_of(rule: dict[str, Any] | str) -> str:
    """The jq_match JqBackend writes for a rule (a detection, or a whole YAML document)."""
    text = rule if isinstance(rule, str) else rule_yaml(rule)
    (parsed,) = SigmaCollection.from_yaml(text).rules
    return JqBackend().jq_program(parsed)


@cache
def _libjq(program: str) -> Any:
    return jq.compile(program)


def libjq_matches(program: str, record: Any) -> bool:
    """The matching contract, from libjq alone; a converted rule never raises a jq error."""
    outputs = iter(_libjq(program).input_text(orjson.dumps(record).decode()))
    first = next(outputs, NO_OUTPUT)
    return not (first is NO_OUTPUT or first is None or first is False)


@cache
def _native(program: str) -> Any:
    return compile_native(program)


def native_matches(program: str, record: Any) -> bool | None:
    """The native evaluator's verdict, or None where it defers to libjq."""
    compiled = _native(program)
    if compiled is None or not compiled.evaluable:
        return None
    try:
        first = compiled.first_output(record)
    except Fallback:
        return None
    return not (first is NO_OUTPUT or first is None or first is False)


def verdict(program: str, record: Any, native_required: bool = True) -> bool:
    """libjq's verdict, after checking that the native evaluator gives the same (and, unless
    told otherwise, that it answers without libjq)."""
    expected = libjq_matches(program, record)
    native = native_matches(program, record)
    if native_required:
        assert native is not None, f"native deferred to libjq: {program} on {record}"
    assert native in (None, expected), f"native {native}, libjq {expected}: {program} {record}"
    return expected


# -- rules with memory: converted Sigma as a config, its alerts, and a reference model ----------

T0 = 1_700_000_400  # 2023-11-14T22:20:00Z, a multiple of 10 minutes
ARN = "arn:aws:iam::111122223333:user/alice"
OTHER_ARN = "arn:aws:iam::111122223333:user/bob"


def iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def record(n: int, at: int, name: str, **fields: Any) -> dict[str, Any]:
    """A CloudTrail record: eventID `e<n>`, at T0 + `at` seconds."""
    body: dict[str, Any] = {
        "eventID": f"e{n}",
        "eventTime": iso(T0 + at),
        "eventSource": "iam.amazonaws.com",
        "eventName": name,
        "userIdentity": {"type": "IAMUser", "arn": ARN},
        "sourceIPAddress": "192.0.2.1",
    }
    for key, value in fields.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


OUT = '\ndefault_destinations = ["out"]\n[[destination]]\nid = "out"\ntype = "stdout"\n'


def convert_documents(text: str, directory: Path, name: str = "rules.yml") -> list[Conversion]:
    """The Conversions of a Sigma file (one or more YAML documents) written into `directory`."""
    path = directory / name
    path.write_text(text)
    return Converter().convert_paths([path])


def converted_config(text: str, directory: Path) -> config.Config:
    """A config of what the Sigma documents convert to (every one must convert), routed."""
    conversions = convert_documents(text, directory)
    refused = [c.unsupported for c in conversions if not c.converted]
    assert not refused, refused
    rules = render([table for c in conversions for table in c.tables])
    return config.parse(OUT + rules, source="converted.toml")


def memory_alerts(
    loaded: config.Config, rule_name: str, records: list[dict[str, Any]]
) -> list[Alert]:
    """The rule's alerts over the records, as `tattletail scan` and `tattletail test` decide
    them (every rule, then the state stage in memory, in event-time order)."""
    plan = StatePlan.of(loaded)
    rule_set = RuleSet(rule_sources(loaded, plan))
    (rule,) = [r for r in loaded.rules if r.name == rule_name]
    return timeline_alerts(loaded, plan, rule_set, rule, records)


def sent_alerts(loaded: config.Config, records: list[dict[str, Any]]) -> list[Alert]:
    """Every alert of every rule (rules with memory or not) over the records."""
    found = []
    for rule in loaded.rules:
        if rule.enabled and (rule.alert or rule.stateful is not None):
            found.extend(memory_alerts(loaded, rule.name, records))
    return found


def field_value(record: Any, field: str) -> Any:
    """A dotted field's value as the record holds it; None when missing or not reachable
    (what a converted group-by or counted field reads)."""
    value = record
    for key in field.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def key_text(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def epoch_of(record: dict[str, Any]) -> int | None:
    """eventTime in seconds, when it is ISO 8601 with a time zone (else not counted)."""
    try:
        moment = datetime.fromisoformat(str(record.get("eventTime")).replace("Z", "+00:00"))
    except ValueError:
        return None
    return int(moment.timestamp()) if moment.tzinfo is not None else None


@dataclass(frozen=True)
class Expected:
    """An alert the reference model expects of a threshold or distinct rule."""

    event_id: str
    group: Any
    count: int
    window_start: int


def windowed_counts(
    records: Sequence[dict[str, Any]],
    matches: Callable[[dict[str, Any]], bool],
    count: int,
    window: int,
    group_fields: Sequence[str] = (),
    value_field: str | None = None,
) -> list[Expected]:
    """The reference model of a threshold (distinct, with `value_field`): the records that match
    and have every group field (and the value), in tumbling windows aligned to the epoch, walked
    in (eventTime, eventID) order; each group's window alerts once, on the record that brings
    its count (of records, or of distinct values) to `count`."""
    windows: dict[tuple[str, int], list[tuple[int, str, dict[str, Any]]]] = defaultdict(list)
    for record in records:
        seconds = epoch_of(record)
        if seconds is None or not matches(record):
            continue
        groups = [field_value(record, f) for f in group_fields]
        if any(g is None for g in groups):
            continue
        if value_field is not None and field_value(record, value_field) is None:
            continue
        group = groups[0] if len(groups) == 1 else (groups or None)
        windows[(key_text(group), seconds - seconds % window)].append(
            (seconds, str(record["eventID"]), record)
        )
    expected = []
    for (group_text, start), entries in windows.items():
        seen: set[Any] = set()
        for seconds, event_id, record in sorted(
            {(t, i): (t, i, r) for t, i, r in entries}.values(), key=lambda e: e[:2]
        ):
            seen.add(
                key_text(field_value(record, value_field)) if value_field else (seconds, event_id)
            )
            if len(seen) == count:
                expected.append(Expected(event_id, orjson.loads(group_text), count, start))
                break
    return sorted(expected, key=lambda e: (e.window_start, e.event_id))


def got_windows(alerts: Sequence[Alert]) -> list[Expected]:
    """The threshold or distinct alerts, in the reference model's terms."""
    got = []
    for alert in alerts:
        assert alert.aggregate is not None
        info = alert.aggregate.info
        start = epoch_of({"eventTime": info["window_start"]})
        assert start is not None
        got.append(Expected(alert.event_id, info["group"], info["count"], start))
    return sorted(got, key=lambda e: (e.window_start, e.event_id))


def chain_completions(
    records: Sequence[dict[str, Any]],
    steps: Sequence[Callable[[dict[str, Any]], bool]],
    within: int,
    ordered: bool,
    group_fields: Sequence[str] = (),
) -> dict[str, int]:
    """The reference model of a sequence: per group (records without a group field are in
    none), the earliest time at which some chain is complete: one distinct record per step,
    all within `within` of the first, in step order when `ordered` (equal times in order)."""
    by_group: dict[str, list[tuple[int, str, dict[str, Any]]]] = defaultdict(list)
    for record in records:
        seconds = epoch_of(record)
        groups = [field_value(record, f) for f in group_fields]
        if seconds is None or any(g is None for g in groups):
            continue
        group = groups[0] if len(groups) == 1 else (groups or None)
        by_group[key_text(group)].append((seconds, str(record["eventID"]), record))
    earliest = {}
    for group, entries in by_group.items():
        candidates = [[e for e in entries if step(e[2])] for step in steps]
        best = None
        for chain in itertools.product(*candidates):
            ids = [e[1] for e in chain]
            times = [e[0] for e in chain]
            if len(set(ids)) < len(ids) or max(times) - min(times) > within:
                continue
            if ordered and times != sorted(times):
                continue
            best = max(times) if best is None else min(best, max(times))
        if best is not None:
            earliest[group] = best
    return earliest
