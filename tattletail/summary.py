"""Counters of one run (one Lambda invocation or one CLI scan), logged as one summary line."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tattletail.daterange import parse_event_time


@dataclass
class RunSummary:
    objects: int = 0
    objects_failed: int = 0
    objects_skipped: int = 0
    records: int = 0
    matches: int = 0
    # Matches not alerted because a rule's `suppress` held them back (not in `matches`).
    suppressed: int = 0
    alerts_sent: int = 0
    alerts_failed: int = 0
    alerts_retried: int = 0
    alerts_held: int = 0
    alerts_deduplicated: int = 0
    alerts_dead_lettered: int = 0
    # Dedupe table calls that failed (the alert was still sent, or was not: see dispatch.py).
    dedupe_errors: int = 0
    flood_summaries: int = 0
    rule_errors: int = 0
    # Rules quarantined during this run (each is reported once, when it is quarantined).
    rules_quarantined: int = 0
    # Entries of log files that are not JSON objects (skipped); records that could not be read
    # or evaluated (each logged as record_failed with its eventID and why).
    records_invalid: int = 0
    records_failed: int = 0
    config_errors: int = 0
    events_unrecognised: int = 0
    # Rules with memory (tattletail.state): alerts they sent, matches a dedup held back,
    # matches too late for a sequence, and matches that could not be counted (no eventTime,
    # a group_by error, a distinct field without a value), by reason.
    stateful_alerts: int = 0
    state_held: int = 0
    state_late: int = 0
    state_conflicts: int = 0
    state_errors: int = 0
    stateful_alerts_by_rule: Counter[str] = field(default_factory=Counter)
    state_rejected: Counter[str] = field(default_factory=Counter)
    # Requests to the state store, by operation (DynamoDB: BatchGetItem, GetItem, PutItem).
    state_calls: Counter[str] = field(default_factory=Counter)
    failures_by_reason: Counter[str] = field(default_factory=Counter)
    skipped_by_reason: Counter[str] = field(default_factory=Counter)
    matches_by_rule: Counter[str] = field(default_factory=Counter)
    suppressed_by_rule: Counter[str] = field(default_factory=Counter)
    rule_errors_by_rule: Counter[str] = field(default_factory=Counter)
    sent_by_destination: Counter[str] = field(default_factory=Counter)
    failed_by_destination: Counter[str] = field(default_factory=Counter)
    dead_lettered_by_destination: Counter[str] = field(default_factory=Counter)
    failed_objects: list[str] = field(default_factory=list)
    # Worker seconds spent gunzipping, decoding and evaluating.
    evaluation_seconds: float = 0.0
    # Now minus the newest eventTime of the objects: how far behind CloudTrail alerts run.
    file_lag_seconds: float | None = None
    # CloudTrail events received inline (EventBridge), evaluated with no S3 read.
    events: int = 0
    events_failed: int = 0
    # Records left out by `scan --since/--until` (their eventTime is out of range).
    records_out_of_range: int = 0
    # SQS messages refused as they were (a malformed routing field).
    messages_rejected: int = 0
    # Per path ("s3", "eventbridge", "backfill", "local"), seconds from each delivered alert's
    # eventTime to its delivery.
    alert_latencies: dict[str, list[float]] = field(default_factory=dict)
    # The oldest and newest eventTime of the records read (ISO 8601 text, as CloudTrail writes).
    first_event_time: str | None = None
    last_event_time: str | None = None

    def record_latency(self, path: str, event_time: str | None, now: datetime) -> None:
        moment = parse_event_time(event_time) if event_time else None
        if moment is not None:
            self.alert_latencies.setdefault(path, []).append((now - moment).total_seconds())

    def latency_fields(self) -> dict[str, dict[str, float]]:
        """Per path: how many alerts, the median and the largest latency, in seconds."""
        return {
            path: {
                "alerts": len(values),
                "p50": round(statistics.median(values), 3),
                "max": round(max(values), 3),
            }
            for path, values in sorted(self.alert_latencies.items())
            if values
        }

    def add_event_times(self, oldest: str | None, newest: str | None) -> None:
        if oldest is not None and (self.first_event_time is None or oldest < self.first_event_time):
            self.first_event_time = oldest
        if newest is not None and (self.last_event_time is None or newest > self.last_event_time):
            self.last_event_time = newest

    def fields(self) -> dict[str, Any]:
        return {
            "objects": self.objects,
            "objects_failed": self.objects_failed,
            "objects_skipped": self.objects_skipped,
            "records": self.records,
            "matches": self.matches,
            "suppressed": self.suppressed,
            "alerts_sent": self.alerts_sent,
            "alerts_failed": self.alerts_failed,
            "alerts_retried": self.alerts_retried,
            "alerts_held": self.alerts_held,
            "alerts_deduplicated": self.alerts_deduplicated,
            "alerts_dead_lettered": self.alerts_dead_lettered,
            "dedupe_errors": self.dedupe_errors,
            "flood_summaries": self.flood_summaries,
            "rule_errors": self.rule_errors,
            "rules_quarantined": self.rules_quarantined,
            "records_invalid": self.records_invalid,
            "records_failed": self.records_failed,
            "config_errors": self.config_errors,
            "stateful_alerts": self.stateful_alerts,
            "state_held": self.state_held,
            "state_late": self.state_late,
            "state_conflicts": self.state_conflicts,
            "state_errors": self.state_errors,
            "stateful_alerts_by_rule": dict(self.stateful_alerts_by_rule),
            "state_rejected": dict(self.state_rejected),
            "state_calls": dict(self.state_calls),
            "failures_by_reason": dict(self.failures_by_reason),
            "skipped_by_reason": dict(self.skipped_by_reason),
            "matches_by_rule": dict(self.matches_by_rule),
            "suppressed_by_rule": dict(self.suppressed_by_rule),
            "rule_errors_by_rule": dict(self.rule_errors_by_rule),
            "sent_by_destination": dict(self.sent_by_destination),
            "failed_by_destination": dict(self.failed_by_destination),
            "dead_lettered_by_destination": dict(self.dead_lettered_by_destination),
            "evaluation_seconds": round(self.evaluation_seconds, 3),
            "file_lag_seconds": (
                None if self.file_lag_seconds is None else round(self.file_lag_seconds, 1)
            ),
            "events": self.events,
            "events_failed": self.events_failed,
            "records_out_of_range": self.records_out_of_range,
            "messages_rejected": self.messages_rejected,
            "alert_latency_seconds": self.latency_fields(),
            "first_event_time": self.first_event_time,
            "last_event_time": self.last_event_time,
        }
