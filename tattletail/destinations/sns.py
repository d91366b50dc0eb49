"""`sns`: Publish the alert as JSON to a topic (the original's keys: name, description, record,
match), which makes every other integration one SNS subscription away."""

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

SUBJECT_LIMIT = 100  # SNS rejects longer subjects


def render(alert: Alert) -> dict[str, str]:
    """The Publish request's Message and Subject for one alert."""
    subject = f"Tattletail: {alert.rule_name}"
    # SNS subjects must be ASCII-printable-ish single lines of at most 100 characters.
    subject = " ".join(subject.split())[:SUBJECT_LIMIT]
    return {"Message": orjson.dumps(alert.message()).decode(), "Subject": subject}


@dataclass(frozen=True)
class SnsDestination(Destination):
    type_name: ClassVar[str] = "sns"
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
