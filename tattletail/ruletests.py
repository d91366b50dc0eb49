"""`tattletail test`: every rule's [[rule.test]] cases, run through the engine that alerts.

Each test's event goes through a RuleSet built from the config the way the workers build it
(eventName index, native fast path, libjq fallback, suppressions, title), in this process. A
test with `expect = true` passes when the rule matches the event and no suppression holds the
match back, and, when the test gives them, the annotation equals `match` and the title equals
`title`. A test with `expect = false` passes when the rule does not alert.

A test with `events` (a timeline, for rules with memory) runs every record of it through the
same rule set and then through the state stage, in memory, in event-time order, as `tattletail
scan` does; it passes when the rule's alerts are those listed in `alerts` (each entry checks
the fields it gives), or, with `expect` alone, when the rule alerts at all (or not).
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

from tattletail.alerts import Alert
from tattletail.config import NOT_GIVEN, Config, Rule, RuleTest, TimelineEntry
from tattletail.json_output import dumps
from tattletail.pipeline import rule_sources
from tattletail.rules import RuleSet
from tattletail.state import InMemoryStore, StatePlan, StateStage
from tattletail.summary import RunSummary
from tattletail.text import plural


class Status(StrEnum):
    PASS = "pass"
    FAIL = "FAIL"
    # The test could not run (its event file is missing or is not one JSON object).
    ERROR = "ERROR"
    # The rule is disabled: the engine does not evaluate it, so neither does its test.
    SKIP = "skip"


@dataclass(frozen=True)
class Outcome:
    """What the rule made of a test's event."""

    matched: bool
    suppressed: bool
    annotation: Any
    title: str | None
    # Runtime errors of jq_match, title or suppress on the event, as the run summary counts.
    errors: tuple[str, ...]

    @property
    def alerted(self) -> bool:
        return self.matched and not self.suppressed

    def describe(self) -> str:
        if not self.matched:
            got = "no match"
        elif self.suppressed:
            got = "a match held back by suppress"
        else:
            got = f"an alert, match {_json(self.annotation)}, title {_json(self.title)}"
        errors = "".join(f"; error: {error}" for error in self.errors)
        return got + errors


@dataclass(frozen=True)
class CaseResult:
    rule: Rule
    test: RuleTest
    status: Status
    outcome: Outcome | None
    # What differed from the expectation (or why the test could not run), one line each.
    details: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return self.status in (Status.FAIL, Status.ERROR)


class EventError(Exception):
    """A test's event cannot be used."""


def run_tests(
    config: Config, now: datetime | None = None, rules: Collection[int] | None = None
) -> list[CaseResult]:
    """Every test of every rule (or of the rules whose indexes are in `rules`), in config
    order. `now` decides which suppressions have expired (default: the current time, as in a
    real run)."""
    plan = StatePlan.of(config)
    sources = rule_sources(config, plan)
    rule_set = RuleSet(sources) if now is None else RuleSet(sources, now=lambda: now)
    results = []
    for rule in config.rules:
        if rules is not None and rule.index not in rules:
            continue
        for test in rule.tests:
            if not rule.enabled:
                results.append(CaseResult(rule, test, Status.SKIP, None, ("rule disabled",)))
                continue
            try:
                event = load_event(test) if not test.events else None
                timeline = timeline_records(test.events)
            except EventError as exc:
                results.append(CaseResult(rule, test, Status.ERROR, None, (str(exc),)))
                continue
            if event is None:
                alerts = timeline_alerts(config, plan, rule_set, rule, timeline)
                details = _timeline_differences(test, alerts)
                status = Status.FAIL if details else Status.PASS
                results.append(CaseResult(rule, test, status, None, details))
                continue
            outcome = _outcome(rule_set, rule.index, event)
            details = _differences(test, outcome)
            status = Status.FAIL if details else Status.PASS
            results.append(CaseResult(rule, test, status, outcome, details))
    return results


def load_event(test: RuleTest | TimelineEntry) -> dict[str, Any]:
    """The test's record, as orjson decodes it (the form the engine is given)."""
    if test.event is not None:
        return orjson.loads(orjson.dumps(dict(test.event)))
    assert test.event_file is not None
    try:
        event = orjson.loads(test.event_file.read_bytes())
    except OSError as exc:
        raise EventError(f"event_file {test.event_file}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise EventError(f"event_file {test.event_file}: not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise EventError(
            f"event_file {test.event_file}: must hold one CloudTrail record (a JSON object)"
        )
    return event


def timeline_records(entries: Sequence[TimelineEntry]) -> list[dict[str, Any]]:
    """A timeline's records: each entry's record, `repeat` times from `at` (else its own
    eventTime) every `every` seconds; copies get the eventID `<eventID>-<n>`."""
    records = []
    for number, entry in enumerate(entries):
        event = load_event(entry)
        start = entry.at
        if start is None:
            written = event.get("eventTime")
            try:
                start = datetime.fromisoformat(str(written).replace("Z", "+00:00"))
            except ValueError:
                start = None
            if start is None or start.tzinfo is None:
                raise EventError(
                    f"events #{number}: the record has no eventTime with a time zone: give `at`"
                )
        base_id = event.get("eventID") or f"event-{number}"
        for copy in range(entry.repeat):
            moment = start.astimezone(UTC) + timedelta(seconds=copy * entry.every)
            records.append(
                {
                    **event,
                    "eventTime": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "eventID": base_id if entry.repeat == 1 else f"{base_id}-{copy}",
                }
            )
    return records


def timeline_alerts(
    config: Config, plan: StatePlan, rule_set: RuleSet, rule: Rule, records: list[dict[str, Any]]
) -> list[Alert]:
    """The rule's alerts over a timeline: its own matches for a rule without memory, else
    what the state stage (in memory, event-time order) decides."""
    matches = rule_set.evaluate(records).matches
    if rule.stateful is None:
        return [
            Alert(rule.name, rule.description, m.record, m.annotation, "test", (), title=m.title)
            for m in sorted(matches, key=lambda m: str(m.record.get("eventTime")))
            if m.rule_index == rule.index and rule.alert
        ]
    alerts: list[Alert] = []

    async def collect(batch: Sequence[Alert]) -> None:
        alerts.extend(alert for alert in batch if alert.rule_name == rule.name)

    async def run() -> None:
        stage = StateStage(
            config, plan, InMemoryStore(), RunSummary(), retention=1, lateness=3600, local=True
        )
        feeding = [match for match in matches if stage.feeds(match)]
        await stage.process("test", feeding, collect)
        await stage.flush(collect)

    asyncio.run(run())
    return alerts


def alert_fields(alert: Alert) -> dict[str, Any]:
    """What an `alerts` entry of a test can check, for one alert."""
    fields: dict[str, Any] = {"event_id": alert.event_id, "title": alert.title}
    aggregate = alert.aggregate
    if aggregate is None:
        return {**fields, "match": alert.match}
    info: Mapping[str, Any] = aggregate.info
    if aggregate.kind == "dedup":
        match = alert.match
    elif aggregate.kind == "sequence":
        match = next((s["match"] for s in info["steps"] if s["event_id"] == alert.event_id), None)
    else:
        match = alert.match.get("match") if isinstance(alert.match, dict) else None
    fields["match"] = match
    names = {"held_before": "held"}
    for key in ("group", "count", "key", "values", "held_before", "first_event_id"):
        if key in info:
            fields[names.get(key, key)] = info[key]
    if "last_event_id" in info:
        fields["last_event_id"] = info["last_event_id"]
    return fields


def _timeline_differences(test: RuleTest, alerts: list[Alert]) -> tuple[str, ...]:
    got = [alert_fields(alert) for alert in alerts]
    if test.alerts is None:
        if test.expect and not alerts:
            return ("expected an alert, got none",)
        if not test.expect and alerts:
            return (f"expected no alert, got {len(alerts)}: {_json(got)}",)
        return ()
    if len(got) != len(test.alerts):
        return (f"expected {len(test.alerts)} alerts, got {len(got)}: {_json(got)}",)
    details = []
    for number, (expected, actual) in enumerate(zip(test.alerts, got, strict=True)):
        for key, value in expected.items():
            if _json(value) != _json(actual.get(key)):
                details.append(
                    f"alert #{number}: {key}: expected {_json(value)}, got {_json(actual.get(key))}"
                )
    return tuple(details)


def _outcome(rule_set: RuleSet, rule_index: int, event: dict[str, Any]) -> Outcome:
    evaluation = rule_set.evaluate([event])
    matches = [m for m in evaluation.matches if m.rule_index == rule_index]
    suppressed = evaluation.suppressed_counts.get(rule_index, 0) > 0
    errors = tuple(s.message for s in evaluation.error_samples if s.rule_index == rule_index)
    if matches:
        return Outcome(True, False, matches[0].annotation, matches[0].title, errors)
    # A suppressed match leaves the worker as a count only: no annotation to show.
    return Outcome(suppressed, suppressed, None, None, errors)


def _differences(test: RuleTest, outcome: Outcome) -> tuple[str, ...]:
    if not test.expect:
        if outcome.alerted:
            return (f"expected no alert, got {outcome.describe()}",)
        return ()
    if not outcome.alerted:
        return (f"expected an alert, got {outcome.describe()}",)
    details = []
    if test.match is not NOT_GIVEN and _json(test.match) != _json(outcome.annotation):
        details.append(f"match: expected {_json(test.match)}, got {_json(outcome.annotation)}")
    if test.title is not None and test.title != outcome.title:
        got = _json(outcome.title) if outcome.title is not None else "no title"
        errors = "".join(f" ({e})" for e in outcome.errors if e.startswith("title: "))
        details.append(f"title: expected {_json(test.title)}, got {got}{errors}")
    return tuple(details)


def _json(value: Any) -> str:
    return dumps(value, orjson.OPT_SORT_KEYS).decode()


def counts(results: Sequence[CaseResult]) -> dict[Status, int]:
    return {status: sum(1 for r in results if r.status is status) for status in Status}


def summary_line(results: Sequence[CaseResult]) -> str:
    n = counts(results)
    rules = len({r.rule.index for r in results})
    return (
        f"{plural(len(results), 'test')} of {plural(rules, 'rule')}: {n[Status.PASS]} passed, "
        f"{n[Status.FAIL]} failed, {plural(n[Status.ERROR], 'error')}, {n[Status.SKIP]} skipped"
    )


def format_failures(results: Sequence[CaseResult]) -> list[str]:
    """Each failed test: which, where, and what the rule produced against what was expected."""
    lines = []
    for result in results:
        if result.failed:
            lines.append(f"{result.status}: {result.rule.where}: test {result.test.name!r}")
            lines.extend(f"    {detail}" for detail in result.details)
    return lines


def format_table(results: Sequence[CaseResult]) -> str:
    """One row per test, then the details of every failure, then the summary line."""
    width = min(60, max((len(r.rule.name) for r in results), default=4))
    lines = [f"{'RESULT':<6}  {'RULE':<{width}}  TEST"]
    lines.extend(
        f"{result.status.value:<6}  {result.rule.name:<{width}}  {result.test.name}"
        for result in results
    )
    failures = format_failures(results)
    if failures:
        lines.extend(["", *failures])
    lines.extend(["", summary_line(results)])
    return "\n".join(lines)


def write_junit(results: Sequence[CaseResult], path: str | Path) -> None:
    """JUnit XML, which CI systems render: one suite per rule file, one case per test."""
    n = counts(results)
    root = ET.Element(
        "testsuites",
        name="tattletail rule tests",
        tests=str(len(results)),
        failures=str(n[Status.FAIL]),
        errors=str(n[Status.ERROR]),
        skipped=str(n[Status.SKIP]),
    )
    by_file: dict[str, list[CaseResult]] = {}
    for result in results:
        by_file.setdefault(result.rule.origin, []).append(result)
    for origin, cases in by_file.items():
        m = counts(cases)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=origin,
            tests=str(len(cases)),
            failures=str(m[Status.FAIL]),
            errors=str(m[Status.ERROR]),
            skipped=str(m[Status.SKIP]),
        )
        for result in cases:
            case = ET.SubElement(
                suite, "testcase", classname=result.rule.name, name=result.test.name, file=origin
            )
            message = "; ".join(result.details)
            if result.status is Status.FAIL:
                ET.SubElement(case, "failure", message=message).text = "\n".join(result.details)
            elif result.status is Status.ERROR:
                ET.SubElement(case, "error", message=message).text = message
            elif result.status is Status.SKIP:
                ET.SubElement(case, "skipped", message=message)
    tree = ET.ElementTree(root)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
