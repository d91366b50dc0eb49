"""`ses`: SendEmail with a subject naming the alert and a plain-text body.

SES (API v1) refuses a message over 10 MB after encoding, and a subject is one header line
(RFC 5322: at most 998 characters). The subject is one line of at most SUBJECT_LIMIT
characters; a body over BODY_LIMIT bytes (room for base64 and the headers) has its event
replaced by the marker (budget.py), then its annotation cut, each visibly marked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import orjson

from tattletail.alerts import Alert
from tattletail.destinations.base import (
    DeliveryContext,
    Destination,
    DestinationConfigError,
    required_string,
)
from tattletail.destinations.budget import cut_text, cut_utf8, one_line, record_marker
from tattletail.json_output import dumps

SUBJECT_LIMIT = 200
BODY_LIMIT = 5 * 1024 * 1024


def render(alert: Alert) -> dict[str, str]:
    """Subject and text body of the email for one alert."""
    subject = cut_text(one_line(f"Tattletail alert: {alert.heading}"), SUBJECT_LIMIT)
    event = alert.pretty_record()
    annotation = alert.pretty_match()
    body = _body(alert, "event:", event, annotation)
    if len(body.encode()) > BODY_LIMIT:
        size = len(dumps(alert.record))
        marker = dumps(record_marker(alert.record, size), orjson.OPT_INDENT_2)
        label = f"event (truncated: {size:,} bytes, too large for an email):"
        body = _body(alert, label, marker.decode(), annotation)
        over = len(body.encode()) - BODY_LIMIT
        if over > 0 and annotation is not None:
            annotation = cut_utf8(annotation, max(0, len(annotation.encode()) - over))
            body = _body(alert, label, marker.decode(), annotation)
        body = cut_utf8(body, BODY_LIMIT)
    return {"subject": subject, "body": body}


def _body(alert: Alert, event_label: str, event: str, annotation: str | None) -> str:
    parts = [f"Alert: {alert.rule_name}", ""]
    if alert.title:
        parts += [f"Title: {alert.title}", ""]
    parts += [alert.description, ""]
    if annotation is not None:
        parts += ["match:", annotation, ""]
    parts += [event_label, event, ""]
    if alert.source:
        parts += [f"source: {alert.source}", ""]
    parts += [f"severity: {alert.severity}"]
    if alert.tags:
        parts += [f"tags: {', '.join(alert.tags)}"]
    if alert.runbook:
        parts += [f"runbook: {alert.runbook}"]
    return "\n".join([*parts, ""])


@dataclass(frozen=True)
class SesDestination(Destination):
    type_name: ClassVar[str] = "ses"
    # SES: a sandboxed account sends 1 email a second, counted per recipient; production
    # quotas vary per account (raise `rate_limit` to yours, see `aws ses get-send-quota`).
    default_rate: ClassVar[float | None] = 1.0
    default_burst: ClassVar[int] = 1
    to_emails: tuple[str, ...]
    from_email: str

    def rate(self) -> tuple[float, int] | None:
        """SES counts recipients, not messages: the default rate is shared among them."""
        if self.rate_limit is not None or self.default_rate is None:
            return super().rate()
        burst = self.rate_burst if self.rate_burst is not None else self.default_burst
        return self.default_rate / max(1, len(self.to_emails)), max(1, burst)

    @classmethod
    def from_config(cls, dest_id: str, settings: Mapping[str, Any]) -> Self:
        problems: list[str] = []
        to_emails = settings.get("to_emails")
        if (
            not isinstance(to_emails, list)
            or not to_emails
            or not all(isinstance(e, str) and "@" in e for e in to_emails)
        ):
            problems.append("destination.to_emails must be set to a list of email addresses")
            to_emails = []
        from_email = required_string(settings, "from_email", problems)
        if from_email and "@" not in from_email:
            problems.append("destination.from_email must be an email address")
        if problems:
            raise DestinationConfigError(problems)
        return cls(id=dest_id, to_emails=tuple(to_emails), from_email=from_email)

    async def send(self, alert: Alert, context: DeliveryContext) -> None:
        ses = await context.aws.client("ses")
        email = render(alert)
        await ses.send_email(
            Source=self.from_email,
            Destination={"ToAddresses": list(self.to_emails)},
            Message={
                "Subject": {"Data": email["subject"], "Charset": "UTF-8"},
                "Body": {"Text": {"Data": email["body"], "Charset": "UTF-8"}},
            },
        )
