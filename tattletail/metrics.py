"""CloudWatch metrics without API calls: Embedded Metric Format (EMF) lines on stdout.

Lambda ships stdout to CloudWatch Logs, which extracts every EMF document into metrics. The
format is a small documented JSON shape, so it is written here directly rather than through
aws-lambda-powertools: one dependency fewer in the image, and the counters already live in one
RunSummary.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import IO, Any

import orjson

from tattletail.summary import RunSummary

NAMESPACE = "Tattletail"
# CloudWatch accepts at most 100 metrics per EMF document.
_MAX_METRICS = 100


def _document(
    dimensions: Mapping[str, str], values: Mapping[str, tuple[float, str]], timestamp_ms: int
) -> dict[str, Any]:
    return {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [sorted(dimensions)],
                    "Metrics": [{"Name": name, "Unit": unit} for name, (_, unit) in values.items()],
                }
            ],
        },
        **dimensions,
        **{name: value for name, (value, _) in values.items()},
    }


def documents(
    summary: RunSummary, function_name: str, timestamp_ms: int | None = None
) -> list[dict[str, Any]]:
    """The EMF documents for one run: totals, then one document per rule, destination and
    skip/failure reason (each its own dimension value)."""
    now = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    base = {"FunctionName": function_name}
    totals: dict[str, tuple[float, str]] = {
        "Objects": (summary.objects, "Count"),
        "ObjectsSkipped": (summary.objects_skipped, "Count"),
        "ObjectsFailed": (summary.objects_failed, "Count"),
        "Records": (summary.records, "Count"),
        "Matches": (summary.matches, "Count"),
        "RuleErrors": (summary.rule_errors, "Count"),
        "RulesQuarantined": (summary.rules_quarantined, "Count"),
        "RecordsInvalid": (summary.records_invalid, "Count"),
        "RecordsFailed": (summary.records_failed, "Count"),
        "AlertsSent": (summary.alerts_sent, "Count"),
        "AlertsFailed": (summary.alerts_failed, "Count"),
        "AlertsRetried": (summary.alerts_retried, "Count"),
        "AlertsDeadLettered": (summary.alerts_dead_lettered, "Count"),
        "AlertsHeld": (summary.alerts_held, "Count"),
        "AlertsDeduplicated": (summary.alerts_deduplicated, "Count"),
        "DedupeErrors": (summary.dedupe_errors, "Count"),
        "ConfigErrors": (summary.config_errors, "Count"),
        "EventsUnrecognised": (summary.events_unrecognised, "Count"),
        "EvaluationSeconds": (round(summary.evaluation_seconds, 6), "Seconds"),
        "StatefulAlerts": (summary.stateful_alerts, "Count"),
        "StateHeld": (summary.state_held, "Count"),
        "StateRequests": (sum(summary.state_calls.values()), "Count"),
        "StateConflicts": (summary.state_conflicts, "Count"),
    }
    if summary.file_lag_seconds is not None:
        totals["FileLagSeconds"] = (round(summary.file_lag_seconds, 3), "Seconds")
    docs = [_document(base, totals, now)]
    per_dimension: list[tuple[str, str, Mapping[str, int]]] = [
        ("Rule", "Matches", summary.matches_by_rule),
        ("Rule", "RuleErrors", summary.rule_errors_by_rule),
        ("Rule", "StatefulAlerts", summary.stateful_alerts_by_rule),
        ("Reason", "ObjectsSkipped", summary.skipped_by_reason),
        ("Reason", "ObjectsFailed", summary.failures_by_reason),
        ("Destination", "AlertsSent", summary.sent_by_destination),
        ("Destination", "AlertsFailed", summary.failed_by_destination),
        ("Destination", "AlertsDeadLettered", summary.dead_lettered_by_destination),
    ]
    grouped: dict[tuple[str, str], dict[str, tuple[float, str]]] = {}
    for dimension, metric, counts in per_dimension:
        for value, count in counts.items():
            grouped.setdefault((dimension, value), {})[metric] = (count, "Count")
    for (dimension, value), values in grouped.items():
        items = list(values.items())
        for start in range(0, len(items), _MAX_METRICS):
            docs.append(
                _document(
                    {**base, dimension: value}, dict(items[start : start + _MAX_METRICS]), now
                )
            )
    return docs


def emit(summary: RunSummary, function_name: str, stream: IO[bytes] | None = None) -> None:
    out = stream or sys.stdout.buffer
    for document in documents(summary, function_name):
        out.write(orjson.dumps(document) + b"\n")
    out.flush()
