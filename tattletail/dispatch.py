"""Delivery policy, written once for every destination type.

Every alert goes to each of its rule's destinations concurrently. Per destination: a semaphore
bounds sends in flight and a token bucket spaces them (defaults from the service's documented
limits). A transient failure is retried with exponential backoff and full jitter, within a
time budget that never runs past the Lambda's deadline; a 429's Retry-After is honoured and
slows every send to that destination. A permanent failure is not retried. A rule that floods is
collapsed into one summary per destination. An alert that still fails goes, whole, to the
config's dead-letter destination; without one it is counted, and the invocation fails after
everything else was delivered so that Lambda's retry takes over. With a dedupe table, a
DynamoDB claim makes each (rule, event, destination) send happen once across retries.

A dedupe table that refuses (a wrong key schema, no such table, access denied) or does not
answer is an ERROR (`dedupe_failed`, naming the table, the key it must have and what to check)
counted in `dedupe_errors` (metric DedupeErrors), never a quiet warning. The alert is still
sent: an alert held back until someone fixes the table is an alert missed, and a duplicate is
the smaller harm for a security alert (see docs/destinations.md, "Deduplication").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tattletail import dedupe, logs
from tattletail.alerts import Alert
from tattletail.dedupe import DedupeTable
from tattletail.destinations import DeliveryContext, DeliveryError, Destination
from tattletail.flood import FloodControl
from tattletail.ratelimit import TokenBucket
from tattletail.redaction import redactor
from tattletail.retry import Backoff, classify
from tattletail.summary import RunSummary

# Time kept back from the Lambda's deadline for dead letters, summaries and the final log line.
DEADLINE_RESERVE = 5.0


@dataclass(frozen=True)
class DeliveryPolicy:
    concurrency: int
    send_timeout: float
    retries: int
    retry_budget: float
    backoff: Backoff
    flood_threshold: int


class DeliveryIncomplete(RuntimeError):
    """Some alerts could not be delivered and there is no dead-letter destination."""


class Dispatcher:
    def __init__(
        self,
        destinations: Mapping[str, Destination],
        context: DeliveryContext,
        summary: RunSummary,
        policy: DeliveryPolicy,
        *,
        dead_letter: str | None = None,
        dedupe: DedupeTable | None = None,
        deadline: float | None = None,
        buckets: dict[str, TokenBucket] | None = None,
    ) -> None:
        self._destinations = destinations
        self._context = context
        self._summary = summary
        self._policy = policy
        self._dead_letter = destinations[dead_letter] if dead_letter else None
        self._dedupe = dedupe
        self._deadline = deadline
        self._flood = FloodControl(policy.flood_threshold)
        self._semaphores = {d: asyncio.Semaphore(policy.concurrency) for d in destinations}
        # Buckets outlive one invocation (passed in) so a warm container keeps its pacing.
        self._buckets = buckets if buckets is not None else {}
        for dest_id, destination in destinations.items():
            rate = destination.rate()
            if rate is not None and dest_id not in self._buckets:
                self._buckets[dest_id] = TokenBucket(*rate)
        self.undelivered = 0

    async def deliver_all(self, alerts: Sequence[Alert]) -> list[bool]:
        """Deliver a batch of alerts concurrently; never raises. For each alert, whether it
        was delivered (see deliver)."""
        return list(await asyncio.gather(*(self.deliver(alert) for alert in alerts)))

    async def deliver(self, alert: Alert) -> bool:
        """Send to every destination of the alert's rule; never raises. False when some
        destination neither got it nor its dead-letter copy (the invocation then fails, see
        finish); an alert held back by flood control counts as delivered (its summary is)."""
        admitted = self._flood.admit(alert)
        sends = []
        for dest_id in alert.destinations:
            destination = self._destinations[dest_id]
            if admitted or destination.archive:
                sends.append(self._send(destination, alert))
            else:
                self._summary.alerts_held += 1
        return all(await asyncio.gather(*sends))

    async def finish(self) -> None:
        """After the last alert: flush archives, send flood summaries, then report what was not
        delivered (DeliveryIncomplete when no dead-letter destination kept it)."""
        archives: dict[str, list[str]] = {}
        for destination in self._destinations.values():
            if destination.archive:
                try:
                    for rule_name, location in await destination.flush(self._context):
                        archives.setdefault(rule_name, []).append(location)
                except Exception as exc:
                    self._summary.alerts_failed += 1
                    self._summary.failed_by_destination[destination.id] += 1
                    self.undelivered += 1
                    logs.log(
                        logging.ERROR,
                        "archive_flush_failed",
                        destination=destination.id,
                        error=self._describe(exc),
                    )
        summaries = self._flood.summaries(archives)
        await asyncio.gather(
            *(
                self._send(self._destinations[dest_id], alert)
                for alert in summaries
                for dest_id in alert.destinations
                if not self._destinations[dest_id].archive
            )
        )
        self._summary.flood_summaries += len(summaries)
        if self.undelivered:
            raise DeliveryIncomplete(
                f"{self.undelivered} alert deliveries failed after retries and no dead_letter "
                "destination is configured"
            )

    def _remaining(self) -> float:
        if self._deadline is None:
            return float("inf")
        return self._deadline - time.monotonic()

    async def _acquire(self, bucket: TokenBucket) -> None:
        """Wait for the destination's next send slot, but not past the deadline: a long queue
        behind a slow rate (Slack's one a second) or a 429's pause would otherwise run until
        Lambda kills the invocation, and every alert still waiting would be lost instead of
        dead-lettered."""
        limit = self._remaining() - DEADLINE_RESERVE
        if limit == float("inf"):
            await bucket.acquire()
            return
        try:
            # Already inside the reserve (a short Lambda timeout): a slot free right now is
            # still taken (acquire completes in its first step), none is waited for.
            await asyncio.wait_for(bucket.acquire(), max(limit, 0.001))
        except TimeoutError:
            raise DeliveryError(
                "rate limit: no send slot before the invocation's deadline"
            ) from None

    async def _send(self, destination: Destination, alert: Alert) -> bool:
        alert_id = alert.alert_id(destination.id)
        deduplicated = (
            self._dedupe is not None and alert.flood_summary is None and not destination.archive
        )
        if deduplicated:
            assert self._dedupe is not None
            dynamodb = await self._context.aws.client("dynamodb")
            try:
                claimed = await self._dedupe.claim(dynamodb, alert_id)
            except (ClientError, BotoCoreError) as exc:
                # Sent anyway: at least once rather than not at all (see the module's doc).
                claimed = True
                deduplicated = False
                self._dedupe_failed(
                    "claim", exc, destination, alert_id, "sent without deduplication"
                )
            if not claimed:
                self._summary.alerts_deduplicated += 1
                return True
        error = await self._send_with_retries(destination, alert)
        if error is None:
            self._summary.alerts_sent += 1
            self._summary.sent_by_destination[destination.id] += 1
            if deduplicated:
                await self._settle(destination, alert_id, sent=True)
            return True
        self._summary.alerts_failed += 1
        self._summary.failed_by_destination[destination.id] += 1
        logs.log(
            logging.ERROR,
            "alert_delivery_failed",
            destination=destination.id,
            destination_type=destination.type_name,
            rule=alert.rule_name,
            event_id=alert.event_id,
            alert_id=alert_id,
            error=error,
        )
        if deduplicated:
            await self._settle(destination, alert_id, sent=False)
        return await self._to_dead_letter(destination, alert, alert_id, error)

    def _describe(self, exc: BaseException, timeout: float | None = None) -> str:
        """describe(exc), with every secret the delivery context has handed out cut out in any
        encoding: this text goes to log lines and dead-letter documents."""
        return redactor(frozenset(self._context.secrets.revealed())).redact(describe(exc, timeout))

    async def _settle(self, destination: Destination, alert_id: str, sent: bool) -> None:
        assert self._dedupe is not None
        dynamodb = await self._context.aws.client("dynamodb")
        try:
            if sent:
                await self._dedupe.mark_sent(dynamodb, alert_id)
            else:
                await self._dedupe.release(dynamodb, alert_id)
        except (ClientError, BotoCoreError) as exc:
            seconds = f"{self._dedupe.claim_seconds:g} s"
            if sent:
                consequence = (
                    f"sent, but a retry after its claim expires ({seconds}) sends it again"
                )
            else:
                consequence = f"not sent, and a retry within {seconds} skips it as claimed"
            self._dedupe_failed(
                "mark_sent" if sent else "release", exc, destination, alert_id, consequence
            )

    def _dedupe_failed(
        self,
        operation: str,
        exc: BaseException,
        destination: Destination,
        alert_id: str,
        consequence: str,
    ) -> None:
        assert self._dedupe is not None
        self._summary.dedupe_errors += 1
        logs.log(
            logging.ERROR,
            "dedupe_failed",
            table=self._dedupe.table,
            key=dedupe.KEY,
            ttl_attribute=dedupe.TTL_ATTRIBUTE,
            operation=operation,
            error_code=dedupe.error_code(exc),
            error=self._describe(exc),
            check=dedupe.hint(exc),
            destination=destination.id,
            alert_id=alert_id,
            consequence=consequence,
        )

    async def _send_with_retries(self, destination: Destination, alert: Alert) -> str | None:
        """None when delivered, else the last error (safe to log)."""
        policy = self._policy
        started = time.monotonic()
        bucket = self._buckets.get(destination.id)
        attempt = 0
        while True:
            try:
                async with self._semaphores[destination.id]:
                    if bucket is not None:
                        await self._acquire(bucket)
                    await asyncio.wait_for(
                        destination.send(alert, self._context), policy.send_timeout
                    )
                return None
            except Exception as exc:  # contained: one destination never stops the others
                verdict = classify(exc)
                message = self._describe(exc, policy.send_timeout)
            if not verdict.retryable or attempt >= policy.retries:
                return message
            wait = policy.backoff.delay(attempt)
            if verdict.retry_after is not None:
                wait = verdict.retry_after
                if bucket is not None:
                    bucket.pause(verdict.retry_after)
            spent = time.monotonic() - started
            budget = min(policy.retry_budget - spent, self._remaining() - DEADLINE_RESERVE)
            if wait + policy.send_timeout > budget:
                return f"{message} (gave up: retry budget exhausted)"
            attempt += 1
            self._summary.alerts_retried += 1
            logs.log(
                logging.WARNING,
                "alert_delivery_retry",
                destination=destination.id,
                rule=alert.rule_name,
                event_id=alert.event_id,
                attempt=attempt,
                wait_seconds=round(wait, 3),
                error=message,
            )
            await asyncio.sleep(wait)

    async def _to_dead_letter(
        self, destination: Destination, alert: Alert, alert_id: str, error: str
    ) -> bool:
        """True when the dead-letter destination kept the alert."""
        if self._dead_letter is None or self._dead_letter is destination:
            self.undelivered += 1
            return False
        document: dict[str, Any] = {
            "alert_id": alert_id,
            "failed_destination": destination.id,
            "failed_destination_type": destination.type_name,
            "error": error,
            "source": alert.source,
            "alert": {**alert.message(), "severity": alert.severity},
        }
        try:
            await self._dead_letter.send_dead_letter(document, self._context)
        except Exception as exc:
            self.undelivered += 1
            logs.log(
                logging.ERROR,
                "dead_letter_failed",
                destination=self._dead_letter.id,
                error=self._describe(exc),
                alert_id=alert_id,
            )
            return False
        self._summary.alerts_dead_lettered += 1
        self._summary.dead_lettered_by_destination[destination.id] += 1
        return True


def describe(exc: BaseException, timeout: float | None = None) -> str:
    """A failure's message, safe to log: DeliveryError and AWS errors carry no secrets."""
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s" if timeout else "timed out"
    if isinstance(exc, DeliveryError | ClientError | BotoCoreError):
        return str(exc)
    # Anything else may embed request details (URLs): keep only its kind.
    return f"unexpected {type(exc).__name__}"
