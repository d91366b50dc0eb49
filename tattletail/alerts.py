"""The alert stage: what a rule match becomes, in the one shape every destination renders."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tattletail.json_output import dumps
from tattletail.records import RecordJSON, plain


@dataclass(frozen=True)
class Aggregate:
    """What a rule with memory counted for an alert (tattletail.state): its kind (threshold,
    distinct, dedup, sequence), the alert's id, the same in every invocation that decides or
    retries it, and what it counted (count, window, group, first and last eventIDs, ...)."""

    kind: str
    id: str
    info: Mapping[str, Any]


@dataclass(frozen=True)
class Alert:
    """One rule's match on one record.

    `match` is the rule's first jq output, or None when that output was the record itself
    (a plain `select(...)`), so the record is never carried twice.
    """

    rule_name: str
    description: str
    # A dict, or (from a rule worker) a RecordJSON decoded only when a field is read.
    record: Mapping[str, Any]
    match: Any
    source: str
    destinations: tuple[str, ...]
    severity: str = "medium"
    # The rule's `title` jq expression's output on this record, when the rule has one.
    title: str | None = None
    tags: tuple[str, ...] = ()
    runbook: str | None = None
    # Set on the one alert that stands for many held back by flood control.
    flood_summary: dict[str, Any] | None = None
    # Set on an alert of a rule with memory; shown under its kind in the message.
    aggregate: Aggregate | None = None

    @property
    def event_id(self) -> str:
        if isinstance(self.record, RecordJSON):
            return self.record.event_id
        event_id = self.record.get("eventID")
        return event_id if isinstance(event_id, str) else ""

    def alert_id(self, destination_id: str) -> str:
        """Deterministic across retries, re-deliveries and trigger paths: the same rule, event
        and destination always give the same id (the dedupe key, PagerDuty's dedup_key)."""
        event = self.aggregate.id if self.aggregate else self.event_id or self._record_digest()
        key = "\x1f".join((self.rule_name, event, destination_id))
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    def _record_digest(self) -> str:
        # Records without an eventID (rare: some Insights events) fall back to their content.
        return hashlib.sha256(dumps(plain(self.record), orjson.OPT_SORT_KEYS)).hexdigest()

    @property
    def heading(self) -> str:
        """What a destination shows as the alert's title: the rule's title, else its name."""
        return self.title or self.rule_name

    def message(self) -> dict[str, Any]:
        """The original's SNS payload keys (name, description, record, match), which every
        JSON destination starts from, plus the rule's metadata."""
        message: dict[str, Any] = {
            "name": self.rule_name,
            "description": self.description,
            "record": self.record,
            "match": self.match,
            "severity": self.severity,
        }
        if self.title is not None:
            message["title"] = self.title
        if self.tags:
            message["tags"] = list(self.tags)
        if self.runbook:
            message["runbook"] = self.runbook
        if self.flood_summary is not None:
            message["flood_summary"] = self.flood_summary
        if self.aggregate is not None:
            message[self.aggregate.kind] = dict(self.aggregate.info)
        return message

    def pretty_record(self) -> str:
        return dumps(plain(self.record), orjson.OPT_INDENT_2).decode()

    def pretty_match(self) -> str | None:
        """The annotation as indented JSON, or None when there is none to show."""
        if self.match is None:
            return None
        return dumps(self.match, orjson.OPT_INDENT_2).decode()
