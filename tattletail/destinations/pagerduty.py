"""`pagerduty`: trigger a PagerDuty alert through the Events API v2.

One event per alert, `event_action: trigger`, with `dedup_key` = the alert id: the same rule,
event and destination always give the same key, so a retried or re-delivered alert updates the
open PagerDuty alert instead of paging twice. PagerDuty answers 202 when it has accepted the
event; 429 and 5xx are retried (its documented retry advice), any other 4xx is permanent.

The routing key (the integration key) is a secret: it is never logged and may be an `env:`,
`ssm:` or `secretsmanager:` reference. `url` may point elsewhere (a proxy, a test stand-in);
it is a secret too (a proxy's URL may carry a token).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Self

from tattletail.alerts import Alert
from tattletail.destinations import http
from tattletail.destinations.base import (
    DeliveryContext,
    DeliveryError,
    Destination,
    DestinationConfigError,
    secret_setting,
)
from tattletail.destinations.budget import cut_text, fit_message, one_line
from tattletail.secret import Secret

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
# PagerDuty's Events API v2 limits: an event of at most 512 KB, a summary of 1,024 characters.
BODY_LIMIT = 512_000
SUMMARY_LIMIT = 1024
# PagerDuty knows four severities; Tattletail's five map onto them.
SEVERITIES = {
    "info": "info",
    "low": "warning",
    "medium": "warning",
    "high": "error",
    "critical": "critical",
}


def pagerduty_severity(severity: str) -> str:
    return SEVERITIES.get(severity, "warning")


def render(alert: Alert, destination_id: str, routing_key: str) -> bytes:
    """The Events API v2 request body (the routing key included: it goes in the body)."""
    record = alert.record
    payload: dict[str, Any] = {
        "summary": cut_text(one_line(alert.heading) or alert.rule_name, SUMMARY_LIMIT),
        "source": alert.source or "tattletail",
        "severity": pagerduty_severity(alert.severity),
    }
    event_time = record.get("eventTime")
    if isinstance(event_time, str) and _is_timestamp(event_time):
        payload["timestamp"] = event_time
    for field, key in (
        ("component", "eventSource"),
        ("class", "eventName"),
        ("group", "recipientAccountId"),
    ):
        if isinstance(record.get(key), str):
            payload[field] = cut_text(record[key], 255)
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": alert.alert_id(destination_id),
        "client": "Tattletail",
        "payload": payload,
    }
    if alert.runbook and alert.runbook.startswith(("https://", "http://")):
        body["links"] = [{"href": alert.runbook, "text": "Runbook"}]

    def wrap(message: dict[str, Any]) -> dict[str, Any]:
        return {**body, "payload": {**payload, "custom_details": message}}

    encoded, _ = fit_message(alert.message(), BODY_LIMIT, wrap)
    return encoded


def _is_timestamp(value: str) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class PagerDutyDestination(Destination):
    type_name: ClassVar[str] = "pagerduty"
    # PagerDuty: the Events API accepts 120 events a minute per integration (routing) key.
    default_rate: ClassVar[float | None] = 2.0
    default_burst: ClassVar[int] = 10
    routing_key: Secret
    # None: EVENTS_URL. Another URL (a proxy) is a secret like a webhook's: it may hold a token.
    url: Secret | None = None

    @classmethod
    def from_config(cls, dest_id: str, settings: Mapping[str, Any]) -> Self:
        problems: list[str] = []
        routing_key = secret_setting(settings, "routing_key", problems)
        url = secret_setting(settings, "url", problems, required=False)
        if url is not None and not url.is_reference and not _is_http_url(url.reveal()):
            problems.append("destination.url must be an http(s) URL")
        if problems or routing_key is None:
            raise DestinationConfigError(problems)
        return cls(id=dest_id, routing_key=routing_key, url=url)

    async def send(self, alert: Alert, context: DeliveryContext) -> None:
        routing_key = await context.reveal(self.routing_key)
        url = EVENTS_URL if self.url is None else await context.reveal(self.url)
        if not _is_http_url(url):
            where = self.url.reference if self.url is not None else EVENTS_URL
            raise DeliveryError(f"pagerduty: {where} is not an http(s) URL")
        body = render(alert, self.id, routing_key)
        try:
            await http.post(
                context,
                url,
                body,
                {"Content-Type": "application/json"},
                what="pagerduty",
                secrets=[routing_key],
            )
        except http.HttpStatusError as exc:
            if exc.refused_credentials:
                context.secrets.forget(self.routing_key)
                if self.url is not None:
                    context.secrets.forget(self.url)
            raise


def _is_http_url(value: str) -> bool:
    return value.startswith(("https://", "http://"))
