"""`tattletail backfill`: send a date range of log files to the deployed function's SQS queue.

The function does the work: each message is an S3 notification for one log file, the shape the
handler already reads, so the queue's event source mapping runs as many invocations in parallel
as it allows (`SqsMaximumConcurrency`), each with its partial batch failures and the queue's
dead-letter queue. This side only lists (`tattletail.listing`), sends (SendMessageBatch, ten
messages a call, several calls in flight) and records what was sent (`tattletail.checkpoint`).

A message may carry routing for the replay, next to the notification:
`"tattletail": {"backfill": RUN-ID, "destinations": [ID, ...]}` (see `tattletail.envelope`):
the function then sends the alerts of that file to those destinations only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

import orjson

from tattletail.checkpoint import Checkpoint
from tattletail.envelope import ROUTING_KEY
from tattletail.listing import Listed, ListingStats, TrailLister

# SendMessageBatch takes at most ten messages, of at most 256 KiB in all.
BATCH = 10
MAX_BATCH_BYTES = 250_000
SEND_ATTEMPTS = 6
_RETRYABLE = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "KMS.ThrottlingException",
    }
)


class BackfillError(Exception):
    """SQS refused to take the messages; what was sent before is in the checkpoint."""


class Interrupted(BackfillError):
    """Stopped on request (Ctrl-C) after the calls in flight were recorded."""


@dataclass
class BackfillStats:
    listing: ListingStats = field(default_factory=ListingStats)
    # Messages this run sent, and keys skipped because an earlier run had sent them.
    enqueued: int = 0
    already_enqueued: int = 0
    units_already_done: int = 0
    started: float = field(default_factory=time.monotonic)


def notification(bucket: str, items: Sequence[Listed], routing: dict[str, Any], now: str) -> str:
    """One message body: an S3 ObjectCreated notification for the files, as S3 writes them
    (keys URL-encoded; one record a file), plus the replay's routing."""
    records = [
        {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "eventTime": now,
            "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": "tattletail-backfill"},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "tattletail-backfill",
                "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                "object": {
                    "key": quote_plus(item.key, safe="/"),
                    "size": item.size,
                    "eTag": item.etag,
                },
            },
        }
        for item in items
    ]
    return orjson.dumps({"Records": records, ROUTING_KEY: routing}).decode()


def _messages(
    bucket: str, items: list[Listed], routing: dict[str, Any], now: str, per_message: int
) -> list[tuple[list[Listed], str]]:
    """The items as message bodies of up to `per_message` files each, none over SQS's size
    limit (a message of long keys is split)."""
    messages = []
    for start in range(0, len(items), per_message):
        chunk = items[start : start + per_message]
        body = notification(bucket, chunk, routing, now)
        if len(body.encode()) > MAX_BATCH_BYTES and len(chunk) > 1:
            half = len(chunk) // 2
            messages += _messages(bucket, chunk[:half], routing, now, half)
            messages += _messages(bucket, chunk[half:], routing, now, per_message)
        else:
            messages.append((chunk, body))
    return messages


def _batches(
    messages: list[tuple[list[Listed], str]],
) -> Iterator[tuple[list[Listed], list[str]]]:
    """Messages grouped for SendMessageBatch: at most ten, at most MAX_BATCH_BYTES in all."""
    items: list[Listed] = []
    bodies: list[str] = []
    size = 0
    for chunk, body in messages:
        length = len(body.encode())
        if bodies and (len(bodies) == BATCH or size + length > MAX_BATCH_BYTES):
            yield items, bodies
            items, bodies, size = [], [], 0
        items += chunk
        bodies.append(body)
        size += length
    if bodies:
        yield items, bodies


@dataclass
class _Batch:
    seq: int
    items: list[Listed]
    bodies: list[str]


class _Unit:
    """One unit's batches in flight: the checkpoint's `after` moves over a batch only once it
    and every batch before it were acknowledged."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._next_seq = 0
        self._first_pending = 0
        self._acked: dict[int, str] = {}
        self._listed = False

    def submit(self, items: list[Listed], bodies: list[str]) -> _Batch:
        batch = _Batch(self._next_seq, items, bodies)
        self._next_seq += 1
        return batch

    def ack(self, batch: _Batch) -> tuple[str | None, bool]:
        """The new `after` when it moved, and whether the unit is now done."""
        self._acked[batch.seq] = batch.items[-1].key
        after = None
        while self._first_pending in self._acked:
            after = self._acked.pop(self._first_pending)
            self._first_pending += 1
        return after, self.done

    def listed(self) -> bool:
        """Listing finished; whether the unit is now done (nothing in flight)."""
        self._listed = True
        return self.done

    @property
    def done(self) -> bool:
        return self._listed and self._first_pending == self._next_seq


async def enqueue(
    lister: TrailLister,
    sqs: Any,
    queue_url: str,
    checkpoint: Checkpoint,
    stats: BackfillStats,
    destinations: tuple[str, ...] | None = None,
    concurrency: int = 16,
    stop: asyncio.Event | None = None,
    files_per_message: int = 1,
) -> None:
    """List every unit of the range and send each selected file once, skipping what the
    checkpoint records. A message names `files_per_message` files (one, as S3 does, by
    default; more make far fewer SQS calls when files are small).

    On an error (SQS refuses, a listing fails) or when `stop` is set (Ctrl-C), nothing new is
    sent, the calls in flight finish and are recorded, and then the error (or Interrupted) is
    raised: the checkpoint then holds exactly what SQS accepted, and a rerun sends each key
    once. Only a killed process can leave the calls in flight unrecorded (sent again on resume).
    """
    stop = stop or asyncio.Event()
    errors: list[Exception] = []
    routing: dict[str, Any] = {"backfill": checkpoint.run_id}
    if destinations:
        routing["destinations"] = list(destinations)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    units = await lister.units()
    queue: asyncio.Queue[tuple[_Unit, _Batch] | None] = asyncio.Queue(maxsize=2 * concurrency)

    def failed(exc: Exception) -> None:
        errors.append(exc)
        stop.set()

    async def produce(name: str) -> None:
        state = checkpoint.unit(name)
        if state.done:
            stats.units_already_done += 1
            lister.stats.units_done += 1
            return
        unit = _Unit(name)
        items: list[Listed] = []

        async def submit() -> None:
            messages = _messages(lister.bucket, items, routing, now, files_per_message)
            for batch_items, bodies in _batches(messages):
                await queue.put((unit, unit.submit(batch_items, bodies)))

        async for page in lister.pages(name, start_after=state.after):
            if stop.is_set():
                return
            for item in page:
                if state.covers(item.key):
                    stats.already_enqueued += 1
                    continue
                items.append(item)
                if len(items) == BATCH * files_per_message:
                    await submit()
                    items = []
        if stop.is_set():
            return
        if items:
            await submit()
        if unit.listed():
            await checkpoint.record(name, 0, done=True)

    async def guarded_produce(name: str) -> None:
        if stop.is_set():
            return
        try:
            await produce(name)
        except Exception as exc:  # stop cleanly: the calls in flight still get recorded
            failed(exc)

    async def send() -> None:
        while (job := await queue.get()) is not None:
            if stop.is_set():
                continue  # drained without sending, so no producer stays blocked
            unit, batch = job
            try:
                await send_batch(sqs, queue_url, batch.bodies)
                stats.enqueued += len(batch.items)
                after, done = unit.ack(batch)
                sent = None if after is not None else [item.key for item in batch.items]
                await checkpoint.record(unit.name, len(batch.items), sent, after, done)
            except Exception as exc:
                failed(exc)

    async def produce_all() -> None:
        await asyncio.gather(*(guarded_produce(unit) for unit in units))
        for _ in range(concurrency):
            await queue.put(None)

    await asyncio.gather(produce_all(), *(send() for _ in range(concurrency)))
    if errors:
        raise errors[0]
    if stop.is_set():
        raise Interrupted("interrupted: the batches in flight were sent and recorded")


async def send_batch(sqs: Any, queue_url: str, bodies: list[str]) -> None:
    """SendMessageBatch, retrying the entries SQS failed on its side (and throttling) with
    backoff; BackfillError for an entry refused for itself or a queue that refuses all."""
    from botocore.exceptions import BotoCoreError, ClientError

    entries = [{"Id": str(n), "MessageBody": body} for n, body in enumerate(bodies)]
    for attempt in range(SEND_ATTEMPTS):
        try:
            response = await sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "Unknown"))
            if code not in _RETRYABLE:
                message = error.get("Message", "")
                raise BackfillError(f"SQS SendMessageBatch failed: {code}: {message}") from None
            failed_ids = {entry["Id"] for entry in entries}
        except BotoCoreError as exc:
            raise BackfillError(f"SQS SendMessageBatch failed: {exc}") from None
        else:
            failed = response.get("Failed") or []
            refused = [f for f in failed if f.get("SenderFault")]
            if refused:
                first = refused[0]
                raise BackfillError(
                    f"SQS refused a message: {first.get('Code')}: {first.get('Message', '')}"
                )
            if not failed:
                return
            failed_ids = {f["Id"] for f in failed}
        entries = [entry for entry in entries if entry["Id"] in failed_ids]
        await asyncio.sleep(min(0.2 * 2**attempt, 5.0))
    raise BackfillError(f"SQS kept failing {len(entries)} messages after {SEND_ATTEMPTS} attempts")


@dataclass(frozen=True)
class QueueDepth:
    waiting: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        return self.waiting + self.in_flight + self.delayed


async def queue_depth(sqs: Any, queue_url: str) -> QueueDepth:
    response = await sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )
    attributes = response.get("Attributes", {})
    return QueueDepth(
        int(attributes.get("ApproximateNumberOfMessages", 0)),
        int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
    )


async def wait_drained(
    sqs: Any,
    queue_url: str,
    on_poll: Callable[[QueueDepth], None],
    interval: float = 5.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    stop: asyncio.Event | None = None,
) -> bool:
    """Poll the queue until it is empty twice in a row (its counts are approximate); False
    when `stop` was set first (Ctrl-C: stop watching, the function carries on)."""
    empty = 0
    while empty < 2:
        if stop is not None and stop.is_set():
            return False
        depth = await queue_depth(sqs, queue_url)
        on_poll(depth)
        empty = empty + 1 if depth.total == 0 else 0
        if empty < 2:
            await sleep(interval)
    return True


def render_listing(stats: BackfillStats) -> str:
    listing = stats.listing
    seconds = max(time.monotonic() - stats.started, 1e-9)
    return (
        f"prefixes {listing.units_done:,}/{listing.units_total:,}  "
        f"listed {listing.keys_seen:,}  selected {listing.keys_selected:,}  "
        f"enqueued {stats.enqueued:,} ({stats.enqueued / seconds:,.0f}/s)"
        + (f"  already {stats.already_enqueued:,}" if stats.already_enqueued else "")
    )


def render_depth(depth: QueueDepth) -> str:
    return f"queue: {depth.waiting:,} waiting, {depth.in_flight:,} in flight" + (
        f", {depth.delayed:,} delayed" if depth.delayed else ""
    )
