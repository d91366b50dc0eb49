"""Destinations, one module per config `type`, found through DESTINATION_TYPES."""

from __future__ import annotations

from tattletail.destinations.base import (
    DeliveryContext,
    DeliveryError,
    Destination,
    DestinationConfigError,
)
from tattletail.destinations.eventbridge import EventBridgeDestination
from tattletail.destinations.pagerduty import PagerDutyDestination
from tattletail.destinations.s3 import S3Destination
from tattletail.destinations.ses import SesDestination
from tattletail.destinations.slack_webhook import SlackWebhookDestination
from tattletail.destinations.sns import SnsDestination
from tattletail.destinations.sqs import SqsDestination
from tattletail.destinations.stdout import StdoutDestination
from tattletail.destinations.webhook import WebhookDestination

DESTINATION_TYPES: dict[str, type[Destination]] = {
    kind.type_name: kind
    for kind in (
        SnsDestination,
        SesDestination,
        SlackWebhookDestination,
        StdoutDestination,
        WebhookDestination,
        PagerDutyDestination,
        SqsDestination,
        EventBridgeDestination,
        S3Destination,
    )
}

__all__ = [
    "DESTINATION_TYPES",
    "DeliveryContext",
    "DeliveryError",
    "Destination",
    "DestinationConfigError",
]
