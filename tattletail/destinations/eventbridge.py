"""`eventbridge`: PutEvents of each alert to an event bus, for rules to route anywhere.

Each event has source `tattletail`, detail-type `Tattletail Alert` and the SNS message's keys
plus `alert_id` and `source` as its detail, within EventBridge's 256 KB an entry. PutEvents
answers 200 even when it refused the entry, so its FailedEntryCount is checked: a throttled or
internal failure is retried, anything else (a malformed detail, a bus that does not exist, no
permission) is permanent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from tattletail.alerts import Alert
from tattletail.destinations.base import (
    DeliveryContext,
    DeliveryError,
    Destination,
    DestinationConfigError,
)
from tattletail.destinations.budget import fit_message

SOURCE = "tattletail"
DETAIL_TYPE = "Tattletail Alert"
# EventBridge: an entry (source, detail-type, detail and resources, in UTF-8) under 256 KB.
ENTRY_LIMIT = 256 * 1024
DETAIL_LIMIT = ENTRY_LIMIT - 1 - len(SOURCE) - len(DETAIL_TYPE)
_TRANSIENT_CODES = frozenset(
    {"ThrottlingException", "InternalFailure", "InternalException", "ServiceUnavailable"}
)


def render(alert: Alert, destination_id: str, event_bus: str) -> dict[str, str]:
    """The PutEvents entry for one alert."""
    detail = {**alert.message(), "alert_id": alert.alert_id(destination_id), "source": alert.source}
    body, _ = fit_message(detail, DETAIL_LIMIT)
    return {
        "Source": SOURCE,
        "DetailType": DETAIL_TYPE,
        "Detail": body.decode(),
        "EventBusName": event_bus,
    }


@dataclass(frozen=True)
class EventBridgeDestination(Destination):
    type_name: ClassVar[str] = "eventbridge"
    # EventBridge: PutEvents is limited per account and Region (10,000 a second in us-east-1,
    # far fewer in smaller Regions) and shared with every other producer; 100 leaves room.
    default_rate: ClassVar[float | None] = 100.0
    default_burst: ClassVar[int] = 100
    event_bus: str = "default"

    @classmethod
    def from_config(cls, dest_id: str, settings: Mapping[str, Any]) -> Self:
        event_bus = settings.get("event_bus", "default")
        if (
            not isinstance(event_bus, str)
            or not event_bus.strip()
            or len(event_bus) > 1600
            or any(c.isspace() for c in event_bus)
        ):
            raise DestinationConfigError(
                ["destination.event_bus must be an event bus name or ARN (default: 'default')"]
            )
        return cls(id=dest_id, event_bus=event_bus)

    async def send(self, alert: Alert, context: DeliveryContext) -> None:
        events = await context.aws.client("events")
        answer = await events.put_events(Entries=[render(alert, self.id, self.event_bus)])
        if not answer.get("FailedEntryCount"):
            return
        [entry] = answer.get("Entries") or [{}]
        code = str(entry.get("ErrorCode") or "unknown")
        detail = " ".join(str(entry.get("ErrorMessage") or "").split())[:200]
        raise DeliveryError(
            f"eventbridge refused the event: {code}" + (f": {detail}" if detail else ""),
            retryable=code in _TRANSIENT_CODES,
        )
