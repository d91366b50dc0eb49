"""Destinations, one module per config `type`, found through DESTINATION_TYPES."""

from __future__ import annotations

from tattletail.destinations.base import (
    DeliveryContext,
    DeliveryError,
    Destination,
    DestinationConfigError,
)
from tattletail.destinations.ses import SesDestination
from tattletail.destinations.slack_webhook import SlackWebhookDestination
from tattletail.destinations.sns import SnsDestination
from tattletail.destinations.stdout import StdoutDestination

DESTINATION_TYPES: dict[str, type[Destination]] = {
    kind.type_name: kind
    for kind in (SnsDestination, SesDestination, SlackWebhookDestination, StdoutDestination)
}

__all__ = [
    "DESTINATION_TYPES",
    "DeliveryContext",
    "DeliveryError",
    "Destination",
    "DestinationConfigError",
]
