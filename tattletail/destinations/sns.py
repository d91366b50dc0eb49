"""`sns`: Publish the alert as JSON to a topic (the original's keys: name, description, record,
match), which makes every other integration one SNS subscription away.

SNS refuses a message over 256 KiB (262,144 bytes of UTF-8) and a subject over 100 characters,
or one that is not a single line of ASCII. A larger alert has its record replaced by the marker
(budget.py); the subject is folded to ASCII and cut with a visible '...'.
"""

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
from tattletail.destinations.budget import ascii_line, fit_message

SUBJECT_LIMIT = 100
MESSAGE_LIMIT = 256 * 1024


def render(alert: Alert) -> dict[str, str]:
    """The Publish request's Message and Subject for one alert."""
    message, _ = fit_message(alert.message(), MESSAGE_LIMIT)
    subject = ascii_line(f"Tattletail: {alert.heading}", SUBJECT_LIMIT)
    return {"Message": message.decode(), "Subject": subject}


@dataclass(frozen=True)
class SnsDestination(Destination):
    type_name: ClassVar[str] = "sns"
    # SNS: Publish is limited per account and Region (30,000 a second in us-east-1, a few
    # hundred in the smallest Regions) and shared with every other publisher; 100 leaves room.
    default_rate: ClassVar[float | None] = 100.0
    default_burst: ClassVar[int] = 100
    sns_arn: str

    @classmethod
    def from_config(cls, dest_id: str, settings: Mapping[str, Any]) -> Self:
        problems: list[str] = []
        arn = required_string(settings, "sns_arn", problems)
        if arn and not arn.startswith("arn:"):
            problems.append("destination.sns_arn must be a full ARN beginning with `arn:`")
        if problems:
            raise DestinationConfigError(problems)
        return cls(id=dest_id, sns_arn=arn)

    async def send(self, alert: Alert, context: DeliveryContext) -> None:
        sns = await context.aws.client("sns")
        await sns.publish(TopicArn=self.sns_arn, **render(alert))
