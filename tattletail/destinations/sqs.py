"""`sqs`: SendMessage of the alert as JSON to a queue; may also be the config's `dead_letter`.

The message is the SNS message's keys plus `alert_id` and `source`, within SQS's 256 KiB (the
limit of every queue's default MaximumMessageSize until 2025, so it fits any queue); a larger
alert has its record replaced by the marker. A FIFO queue (`.fifo`) gets the alert id as its
deduplication id, so SQS itself drops a copy sent again within its 5-minute window.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from tattletail.alerts import Alert
from tattletail.destinations.base import (
    DeliveryContext,
    Destination,
    DestinationConfigError,
    required_string,
)
from tattletail.destinations.budget import fit_message

BODY_LIMIT = 256 * 1024
# SQS refuses these two characters; orjson writes them raw, JSON allows them escaped.
_REFUSED = {"\ufffe".encode(): b"\\ufffe", "\uffff".encode(): b"\\uffff"}
_GROUP_ID = re.compile(r"[^A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]")


def message(alert: Alert, destination_id: str) -> dict[str, Any]:
    return {**alert.message(), "alert_id": alert.alert_id(destination_id), "source": alert.source}


def encode(document: dict[str, Any], wrap: Any = None) -> str:
    """The message body: JSON within BODY_LIMIT, in the characters SQS accepts."""
    budget = BODY_LIMIT
    while True:
        if wrap is None:
            body, _ = fit_message(document, budget)
        else:
            body, _ = fit_message(document, budget, wrap)
        escapes = sum(body.count(raw) for raw in _REFUSED)
        if not escapes:
            return body.decode()
        # Each escape is 3 bytes longer than the character: fit again with that much less.
        if len(body) + 3 * escapes <= BODY_LIMIT:
            for raw, escaped in _REFUSED.items():
                body = body.replace(raw, escaped)
            return body.decode()
        budget -= 3 * escapes


def render(alert: Alert, destination_id: str) -> str:
    return encode(message(alert, destination_id))


def render_dead_letter(document: dict[str, Any]) -> str:
    """The dead-letter document, its alert's record cut only if the whole is over the limit."""
    alert = document.get("alert")
    if not isinstance(alert, dict):
        return encode(document)
    return encode(alert, lambda fitted: {**document, "alert": fitted})


@dataclass(frozen=True)
class SqsDestination(Destination):
    type_name: ClassVar[str] = "sqs"
    # SQS: standard queues take a nearly unlimited rate; a FIFO queue 300 sends a second per
    # action without batching. 300 fits both.
    default_rate: ClassVar[float | None] = 300.0
    default_burst: ClassVar[int] = 100
    can_dead_letter: ClassVar[bool] = True
    queue_url: str

    @classmethod
    def from_config(cls, dest_id: str, settings: Mapping[str, Any]) -> Self:
        problems: list[str] = []
        queue_url = required_string(settings, "queue_url", problems)
        if queue_url and not queue_url.startswith(("https://", "http://")):
            problems.append("destination.queue_url must be the queue's URL (https://sqs...)")
        if problems:
            raise DestinationConfigError(problems)
        return cls(id=dest_id, queue_url=queue_url)

    @property
    def fifo(self) -> bool:
        return self.queue_url.endswith(".fifo")

    async def send(self, alert: Alert, context: DeliveryContext) -> None:
        await self._send(context, render(alert, self.id), alert.rule_name, alert.alert_id(self.id))

    async def send_dead_letter(self, document: dict[str, Any], context: DeliveryContext) -> None:
        await self._send(
            context,
            render_dead_letter(document),
            "dead-letter",
            f"dead-letter-{document.get('alert_id', '')}",
        )

    async def _send(self, context: DeliveryContext, body: str, group: str, dedupe: str) -> None:
        sqs = await context.aws.client("sqs")
        extra: dict[str, str] = {}
        if self.fifo:
            extra = {
                "MessageGroupId": _GROUP_ID.sub("-", group)[:128] or "tattletail",
                "MessageDeduplicationId": dedupe[:128],
            }
        await sqs.send_message(QueueUrl=self.queue_url, MessageBody=body, **extra)
