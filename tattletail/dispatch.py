"""Delivery policy, written once: every alert to each of its destinations concurrently, each
destination behind its own semaphore, every failure contained and counted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from tattletail import logs
from tattletail.alerts import Alert
from tattletail.destinations import DeliveryContext, DeliveryError, Destination
from tattletail.summary import RunSummary


class Dispatcher:
    def __init__(
        self,
        destinations: Mapping[str, Destination],
        context: DeliveryContext,
        summary: RunSummary,
        concurrency: int,
        send_timeout: float,
    ) -> None:
        self._destinations = destinations
        self._context = context
        self._summary = summary
        self._send_timeout = send_timeout
        self._semaphores = {dest_id: asyncio.Semaphore(concurrency) for dest_id in destinations}

    async def deliver(self, alert: Alert) -> None:
        """Send to every destination of the alert's rule; never raises."""
        await asyncio.gather(*(self._send(dest_id, alert) for dest_id in alert.destinations))

    async def _send(self, dest_id: str, alert: Alert) -> None:
        destination = self._destinations[dest_id]
        try:
            async with self._semaphores[dest_id]:
                await asyncio.wait_for(destination.send(alert, self._context), self._send_timeout)
        except Exception as exc:  # one destination's failure must not stop the others
            self._summary.alerts_failed += 1
            self._summary.failed_by_destination[dest_id] += 1
            logs.log(
                logging.ERROR,
                "alert_delivery_failed",
                destination=dest_id,
                destination_type=destination.type_name,
                rule=alert.rule_name,
                event_id=alert.event_id,
                error=_describe(exc, self._send_timeout),
            )
            return
        self._summary.alerts_sent += 1
        self._summary.sent_by_destination[dest_id] += 1


def _describe(exc: BaseException, timeout: float) -> str:
    """A failure's message, safe to log: DeliveryError and AWS errors carry no secrets."""
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, DeliveryError):
        return str(exc)
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError | BotoCoreError):
        return str(exc)
    # Anything else may embed request details (URLs): keep only its kind.
    return f"unexpected {type(exc).__name__}"
