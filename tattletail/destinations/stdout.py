"""`stdout`: print each alert as one JSON line (local runs, dry runs, benchmarks)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from tattletail.alerts import Alert
from tattletail.destinations.base import DeliveryContext, Destination
from tattletail.json_output import dumps


def render(alert: Alert) -> bytes:
    """The SNS message's keys plus `source`, as one line."""
    return dumps({**alert.message(), "source": alert.source}) + b"\n"


@dataclass(frozen=True)
class StdoutDestination(Destination):
    type_name: ClassVar[str] = "stdout"

    @classmethod
    def from_config(cls, dest_id: str, settings: Mapping[str, Any]) -> Self:
        return cls(id=dest_id)

    async def send(self, alert: Alert, context: DeliveryContext) -> None:
        sys.stdout.buffer.write(render(alert))
