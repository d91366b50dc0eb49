"""`ses`: SendEmail with a subject naming the alert and a plain-text body."""

from __future__ import annotations

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


def render(alert: Alert) -> dict[str, str]:
    """Subject and text body of the email for one alert."""
    subject = " ".join(f"Tattletail alert: {alert.rule_name}".split())
    parts = [f"Alert: {alert.rule_name}", "", alert.description, ""]
    annotation = alert.pretty_match()
    if annotation is not None:
        parts += ["match:", annotation, ""]
    parts += ["event:", alert.pretty_record(), ""]
    if alert.source:
        parts += [f"source: {alert.source}", ""]
    return {"subject": subject, "body": "\n".join(parts)}


@dataclass(frozen=True)
class SesDestination(Destination):
    type_name: ClassVar[str] = "ses"
    to_emails: tuple[str, ...]
    from_email: str

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
