"""The state stage, between the rules and the alerts: a log file's matches of stateful rules
become items, each unit of state they touch is read, updated by the window logic and written
back atomically, and the alerts that decides are delivered, then settled.

Per log file (Lambda), in four steps, all asyncio I/O (the jq ran in the workers):

1. read every item the file's matches touch (DynamoDB: one BatchGetItem per 100 items);
2. per item: apply the batch and write it if it changed, conditional on the version read; on a
   conflict, read it again and re-apply (items are sets: re-applying is harmless);
3. deliver the alerts this invocation holds the claim on, all at once;
4. settle: a delivered alert leaves the outbox, an undelivered one is released for the next
   invocation (the dispatcher has failed the invocation, so Lambda retries it).

An alert these records decided that another invocation is still sending is waited for, up to
this invocation's deadline; past it the file fails (StatePending) and comes back. Any other
store error fails the file too (StateUnavailable): its other alerts were already delivered, and
a retry counts nothing twice.

Locally (`scan`, `test`) the items of every file are kept and applied once, at the end, each
unit's items in event-time order, and the alerts delivered in event-time order; a scan with more
than LOCAL_BUFFER such matches applies its oldest half each time it gets there, so its memory
stays bounded (a record older than what was applied by then is applied late: its window still
counts it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from tattletail import logs
from tattletail.alerts import Aggregate, Alert
from tattletail.config import Config, Rule
from tattletail.records import RecordJSON
from tattletail.rules import Match
from tattletail.state import windows
from tattletail.state.plan import Consumer, Item, Rejects, StateKey, StatePlan, items_of
from tattletail.state.store import (
    StateContended,
    StateError,
    StatePending,
    StateStore,
    StateUnavailable,
    Versioned,
)
from tattletail.summary import RunSummary

# Delivers a batch of alerts; for each, whether it was delivered (sent, dead-lettered, or held
# by flood control into a summary that was). None means all were.
StateSink = Callable[[Sequence[Alert]], Awaitable[Sequence[bool] | None]]

# Conditional writes tried on one item before the file fails (it comes back later).
WRITE_ATTEMPTS = 8
# Tries of the write that records alerts as sent, when the store fails.
SETTLE_ATTEMPTS = 3
# A claim on an alert is a lease: it lasts this long and its holder renews it every
# CLAIM_RENEW seconds while it sends, so an invocation that died holds it for CLAIM_SECONDS at
# most (and never past its Lambda deadline plus CLAIM_MARGIN, for clocks that differ).
CLAIM_SECONDS = 30.0
CLAIM_RENEW = 10.0
CLAIM_MARGIN = 5.0
# Time kept back from the deadline when waiting for another invocation's send.
WAIT_RESERVE = 5.0
# Items known to be finished (a window that fired and was sent), kept per container.
DONE_LIMIT = 50_000
# Locally, matches kept to be applied in event-time order; past it, the oldest half is applied.
LOCAL_BUFFER = 100_000

T = TypeVar("T")
Batch = dict[StateKey, tuple[Consumer, list[Item]]]


class StateStage:
    def __init__(
        self,
        config: Config,
        plan: StatePlan,
        store: StateStore,
        summary: RunSummary,
        *,
        retention: float,
        lateness: float,
        deadline: float | None = None,
        local: bool = False,
        done: set[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.plan = plan
        self.store = store
        self.summary = summary
        self._retention = retention
        self._lateness = int(lateness)
        self._deadline = deadline
        self._local = local
        self._done = done if done is not None else set()
        # Wall-clock time, for claims (which other hosts read); deadlines are monotonic.
        self._clock = clock
        self._rules: Mapping[str, Rule] = {rule.name: rule for rule in config.rules}
        self._nonce = uuid.uuid4().hex
        self._buffer: Batch = {}
        self._buffered = 0
        self._locks: dict[str, asyncio.Lock] = {}
        # The newest version of each item this run has read or written.
        self._known: dict[str, Versioned] = {}

    def feeds(self, match: Match) -> bool:
        return match.rule_index in self.plan.consumers

    async def process(self, source: str, matches: Sequence[Match], sink: StateSink) -> None:
        """One log file's matches (those that feed stateful rules). Raises StateError when the
        state could not be read or written: the caller fails the file."""
        rejects = Rejects()
        batch = items_of(self.plan, matches, source, rejects)
        for reason, count in rejects.by_reason.items():
            self.summary.state_rejected[reason] += count
        if self._local:
            for key, (consumer, items) in batch.items():
                self._buffer.setdefault(key, (consumer, []))[1].extend(items)
                self._buffered += len(items)
            if self._buffered > LOCAL_BUFFER:
                await self.flush(sink, keep=LOCAL_BUFFER // 2)
            return
        await self._apply(batch, sink)

    async def flush(self, sink: StateSink, keep: int = 0) -> None:
        """Locally: apply the items kept so far, in event-time order, but for the `keep`
        newest (a long scan applies its oldest half whenever LOCAL_BUFFER are kept)."""
        orders = sorted(item.order for _, items in self._buffer.values() for item in items)
        cut = orders[len(orders) - keep] if 0 < keep < len(orders) else None
        batch: Batch = {}
        kept: Batch = {}
        for key, (consumer, items) in self._buffer.items():
            for item in items:
                target = batch if cut is None or item.order < cut else kept
                target.setdefault(key, (consumer, []))[1].append(item)
        self._buffer = kept
        self._buffered = sum(len(items) for _, items in kept.values())
        if batch:
            await self._apply(batch, sink)

    # -- the four steps ---------------------------------------------------------------------

    async def _apply(self, batch: Batch, sink: StateSink) -> None:
        keys = [key for key in batch if key.pk not in self._done]
        if not keys:
            return
        read = await self.store.get_many([key.pk for key in keys], self.summary.state_calls)
        decided = await asyncio.gather(
            *(self._decide(key, *batch[key], read.get(key.pk, Versioned())) for key in keys),
            return_exceptions=True,
        )
        errors = [outcome for outcome in decided if isinstance(outcome, BaseException)]
        outcomes = {
            key: outcome
            for key, outcome in zip(keys, decided, strict=True)
            if isinstance(outcome, windows.Outcome)
        }
        await self._deliver_and_settle(
            [(key, entry) for key, outcome in outcomes.items() for entry in outcome.send], sink
        )
        waits = [
            self._wait(key, *batch[key], sink)
            for key, outcome in outcomes.items()
            if outcome.waiting
        ]
        errors += [e for e in await asyncio.gather(*waits, return_exceptions=True) if e]
        for error in errors:
            if not isinstance(error, StateError):
                raise error
        if errors:
            raise errors[0]

    async def _decide(
        self, key: StateKey, consumer: Consumer, items: list[Item], read: Versioned
    ) -> windows.Outcome:
        spec = consumer.spec
        claim = windows.Claim(self._nonce, self._claim_until(), self._clock())

        def change(state: dict[str, Any] | None) -> tuple[dict[str, Any] | None, windows.Outcome]:
            outcome = windows.apply(key, spec, state, items, claim, self._lateness)
            return outcome.state, outcome

        outcome, state = await self._update(key, change, read)
        self.summary.state_held += outcome.held
        self.summary.state_late += outcome.late
        if state is not None and windows.done(state):
            self._remember_done(key)
        return outcome

    async def _deliver_and_settle(
        self, entries: list[tuple[StateKey, dict[str, Any]]], sink: StateSink
    ) -> None:
        if not entries:
            return
        # In event-time order (a scan prints them so).
        entries.sort(key=lambda pair: (pair[1]["alert"]["time"], pair[1]["id"]))
        alerts: list[Alert] = []
        sendable: list[tuple[StateKey, dict[str, Any]]] = []
        delivered: dict[str, dict[str, bool]] = {}
        for key, entry in entries:
            alert = self._alert(entry)
            if alert is None:  # its rule left the config: nothing to send it as
                delivered.setdefault(key.pk, {})[entry["id"]] = True
                continue
            alerts.append(alert)
            sendable.append((key, entry))
        renewing = asyncio.create_task(self._renew({key for key, _ in sendable}))
        try:
            outcome = await sink(alerts) if alerts else []
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
        results = list(outcome) if outcome is not None else [True] * len(alerts)
        for (key, entry), ok in zip(sendable, results, strict=True):
            delivered.setdefault(key.pk, {})[entry["id"]] = ok
            if ok:
                self.summary.stateful_alerts += 1
                self.summary.stateful_alerts_by_rule[entry["alert"]["rule"]] += 1
        by_pk = {key.pk: key for key, _ in entries}
        settled = await asyncio.gather(
            *(self._settle(by_pk[pk], outcomes) for pk, outcomes in delivered.items()),
            return_exceptions=True,
        )
        for error in settled:
            if isinstance(error, StateError):
                # The alerts went out; only the record of it is missing. Once the claim
                # expires another invocation may send them again (never with a dedupe table).
                self.summary.state_errors += 1
                logs.log(logging.ERROR, "state_settle_failed", error=str(error))
            elif isinstance(error, BaseException):
                raise error

    async def _renew(self, keys: set[StateKey]) -> None:
        """While alerts are being sent (a slow destination, its retries): extend this
        invocation's claims on them, so no one else takes them over meanwhile."""

        def change(state: dict[str, Any] | None) -> tuple[dict[str, Any] | None, None]:
            return windows.renew(state, self._nonce, self._claim_until()) if state else None, None

        while True:
            await asyncio.sleep(CLAIM_RENEW)
            for key in keys:
                with contextlib.suppress(StateError):
                    await self._update(key, change, self._known.get(key.pk, Versioned()))

    async def _settle(self, key: StateKey, delivered: dict[str, bool]) -> None:
        def change(state: dict[str, Any] | None) -> tuple[dict[str, Any] | None, None]:
            if state is None:
                return None, None
            return windows.settle(state, delivered, self._nonce), None

        # The alerts are out: recording it is worth a few more tries than a decision is.
        for attempt in range(SETTLE_ATTEMPTS):
            try:
                known = self._known.get(key.pk, Versioned())
                _, state = await self._update(key, change, known)
                break
            except StateUnavailable:
                if attempt == SETTLE_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.05 * 2**attempt)
        if state is not None and windows.done(state):
            self._remember_done(key)

    async def _wait(
        self, key: StateKey, consumer: Consumer, items: list[Item], sink: StateSink
    ) -> None:
        """These records decided an alert another invocation holds the claim on: wait until
        it is sent, or its claim is released or expires (then send it here)."""
        delay = 0.25
        started = time.monotonic()
        while True:
            now = time.monotonic()
            limit = (
                self._deadline - WAIT_RESERVE
                if self._deadline is not None
                else started + 2 * CLAIM_SECONDS
            )
            if now + delay > limit:
                raise StatePending(
                    f"an alert of rule {key.rule!r} decided by this file is still being sent "
                    "by another invocation; the file will be retried"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            current = await self.store.get(key.pk, self.summary.state_calls)
            outcome = await self._decide(key, consumer, items, current)
            await self._deliver_and_settle([(key, entry) for entry in outcome.send], sink)
            if not outcome.waiting:
                return

    # -- atomic updates ---------------------------------------------------------------------

    async def _update(
        self,
        key: StateKey,
        change: Callable[[dict[str, Any] | None], tuple[dict[str, Any] | None, T]],
        read: Versioned,
    ) -> tuple[T, dict[str, Any] | None]:
        """Apply `change` to the item and write the result if it differs, conditional on the
        version it was applied to; on a conflict, read again and re-apply. Returns what
        `change` returned and the item's state after it."""
        lock = self._locks.setdefault(key.pk, asyncio.Lock())
        async with lock:
            current = read
            known = self._known.get(key.pk)
            if known is not None and known.version > current.version:
                current = known
            for attempt in range(WRITE_ATTEMPTS):
                new_state, result = change(current.state)
                if new_state is None:
                    self._known[key.pk] = current
                    return result, current.state
                expires_at = self._expires_at(key, new_state)
                calls = self.summary.state_calls
                if await self.store.put(key.pk, new_state, current.version, expires_at, calls):
                    self._known[key.pk] = Versioned(new_state, current.version + 1)
                    return result, new_state
                self.summary.state_conflicts += 1
                await asyncio.sleep(random.uniform(0, 0.02 * 2**attempt))
                current = await self.store.get(key.pk, self.summary.state_calls)
        raise StateContended(
            f"state of rule {key.rule!r} changed under {WRITE_ATTEMPTS} attempts to update it; "
            "the file will be retried"
        )

    def _expires_at(self, key: StateKey, state: dict[str, Any]) -> int:
        spec = self._rules[key.rule].stateful
        assert spec is not None
        end = windows.event_end(key, spec, state) + self._lateness
        return int(max(self._clock(), end) + self._retention)

    def _claim_until(self) -> float:
        lease = CLAIM_SECONDS
        if self._deadline is not None:
            lease = min(lease, self._deadline - time.monotonic() + CLAIM_MARGIN)
        return self._clock() + lease

    def _remember_done(self, key: StateKey) -> None:
        if key.kind not in ("threshold", "distinct"):
            return
        if len(self._done) >= DONE_LIMIT:
            self._done.clear()
        self._done.add(key.pk)

    # -- alerts -----------------------------------------------------------------------------

    def _alert(self, entry: dict[str, Any]) -> Alert | None:
        payload = entry["alert"]
        rule = self._rules.get(payload["rule"])
        if rule is None or rule.stateful is None or rule.stateful.kind != payload["kind"]:
            self.summary.state_errors += 1
            logs.log(
                logging.ERROR,
                "state_alert_orphaned",
                rule=payload["rule"],
                alert_id=entry["id"],
                detail="the rule that decided this alert is no longer in the config "
                "(renamed, removed or changed kind); the alert is dropped",
            )
            return None
        info = payload["info"]
        kind = payload["kind"]
        annotation = payload["annotation"]
        if kind == "dedup":
            match = annotation
        elif kind == "sequence":
            match = info
        else:
            match = {**info, "match": annotation}
        return Alert(
            rule_name=rule.name,
            description=rule.description,
            record=RecordJSON(payload["record"].encode(), payload["event_id"]),
            match=match,
            source=payload["source"],
            destinations=rule.destinations,
            severity=rule.severity,
            title=payload["title"],
            tags=rule.tags,
            runbook=rule.runbook,
            aggregate=Aggregate(kind, entry["id"], info),
        )
