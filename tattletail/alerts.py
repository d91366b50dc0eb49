"""The alert stage: what a rule match becomes, in the one shape every destination renders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class Alert:
    """One rule's match on one record.

    `match` is the rule's first jq output, or None when that output was the record itself
    (a plain `select(...)`), so the record is never carried twice.
    """

    rule_name: str
    description: str
    record: dict[str, Any]
    match: Any
    source: str
    destinations: tuple[str, ...]

    @property
    def event_id(self) -> str:
        event_id = self.record.get("eventID")
        return event_id if isinstance(event_id, str) else ""

    def message(self) -> dict[str, Any]:
        """The original's SNS payload keys, which every JSON destination starts from."""
        return {
            "name": self.rule_name,
            "description": self.description,
            "record": self.record,
            "match": self.match,
        }

    def pretty_record(self) -> str:
        return orjson.dumps(self.record, option=orjson.OPT_INDENT_2).decode()

    def pretty_match(self) -> str | None:
        """The annotation as indented JSON, or None when there is none to show."""
        if self.match is None:
            return None
        return orjson.dumps(self.match, option=orjson.OPT_INDENT_2).decode()
