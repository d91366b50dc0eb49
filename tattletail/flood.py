"""Flood control: past a rule's threshold in one invocation, alerts are held back and collapsed
into one summary alert per destination, so a `terraform apply` that trips a broad rule sends a
handful of messages instead of thousands. Nothing is dropped silently: every held alert is
counted in its rule's summary, and archive destinations still receive every alert."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tattletail.alerts import Alert

TOP = 5


@dataclass
class _Held:
    first: Alert
    count: int = 0
    earliest: str | None = None
    latest: str | None = None
    principals: Counter[str] = field(default_factory=Counter)
    event_names: Counter[str] = field(default_factory=Counter)

    def add(self, alert: Alert) -> None:
        self.count += 1
        record = alert.record
        event_time = record.get("eventTime")
        if isinstance(event_time, str):
            self.earliest = min(self.earliest or event_time, event_time)
            self.latest = max(self.latest or event_time, event_time)
        identity = record.get("userIdentity")
        principal = identity.get("arn") if isinstance(identity, dict) else None
        self.principals[str(principal or "unknown")] += 1
        self.event_names[str(record.get("eventName") or "unknown")] += 1


class FloodControl:
    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self._seen: Counter[str] = Counter()
        self._held: dict[str, _Held] = {}

    def admit(self, alert: Alert) -> bool:
        """True for a rule's first `threshold` matches; later ones are held and counted."""
        self._seen[alert.rule_name] += 1
        if self._seen[alert.rule_name] <= self.threshold:
            return True
        held = self._held.get(alert.rule_name)
        if held is None:
            held = self._held[alert.rule_name] = _Held(first=alert)
        held.add(alert)
        return False

    @property
    def held(self) -> int:
        return sum(held.count for held in self._held.values())

    def summaries(self, archives: dict[str, list[str]]) -> list[Alert]:
        """One summary alert per flooded rule, addressed to that rule's destinations.
        `archives` maps a rule name to where its full alert list was written."""
        alerts = []
        for rule_name, held in self._held.items():
            where = archives.get(rule_name) or []
            summary: dict[str, Any] = {
                "rule": rule_name,
                "matches": self._seen[rule_name],
                "sent": self.threshold,
                "held_back": held.count,
                "first_event_time": held.earliest,
                "last_event_time": held.latest,
                "top_principals": held.principals.most_common(TOP),
                "top_event_names": held.event_names.most_common(TOP),
                "full_list": where
                or "not archived: add an `s3` destination to the rule to keep every alert",
            }
            first = held.first
            alerts.append(
                Alert(
                    rule_name=f"{rule_name} (flood summary)",
                    description=(
                        f"{held.count} more matches of '{rule_name}' in this invocation were "
                        f"collapsed into this summary after the first {self.threshold}."
                    ),
                    record={
                        "eventID": f"flood-summary:{first.event_id}",
                        "eventTime": held.latest,
                        "eventName": "TattletailFloodSummary",
                    },
                    match=summary,
                    source=first.source,
                    destinations=first.destinations,
                    severity=first.severity,
                    flood_summary=summary,
                )
            )
        return alerts
