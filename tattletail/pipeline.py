"""The pipeline: objects -> records -> rules -> state -> alerts -> a sink (the dispatcher, or a
printer).

Fetching and delivery are asyncio; gunzip, decode and rule evaluation happen in the worker pool.
A bad object is logged, counted and skipped; the other objects carry on. Matches of rules with
memory go through the state stage (tattletail.state) after the object's other alerts were
delivered; when the state cannot be read or written the object fails, so it comes back.
CloudTrail events that EventBridge delivered inline skip the object stage: their records go to
the same worker pool, rules and state stage as one small log file.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

import orjson

from tattletail import logs
from tattletail.alerts import Alert
from tattletail.aws import AwsClients
from tattletail.config import Config
from tattletail.daterange import EventWindow
from tattletail.envelope import CloudTrailEvent
from tattletail.objects import ObjectError, ObjectRef, SkippedObject, fetch, skip_reason
from tattletail.records import RecordJSON
from tattletail.rules import Evaluation, Match, RuleSource
from tattletail.settings import Settings
from tattletail.state import StatePlan, StateStage
from tattletail.state.store import StateError
from tattletail.summary import RunSummary
from tattletail.trail_keys import parse_key
from tattletail.workers import DeadlineReached, WorkerCrashed, WorkerPool

# Takes every alert of one object at once: a printer writes them in one go, the dispatcher
# fans them out concurrently; no task per alert where none is needed. It may say, per alert,
# whether it was delivered (the state stage settles its alerts by it); None means all were.
AlertSink = Callable[[Sequence[Alert]], Awaitable[Sequence[bool] | None]]


def _lag_seconds(event_time: str | None) -> float | None:
    if event_time is None:
        return None
    try:
        newest = datetime.fromisoformat(event_time.replace("Z", "+00:00"))
    except ValueError:
        return None
    if newest.tzinfo is None:
        newest = newest.replace(tzinfo=UTC)
    return (datetime.now(UTC) - newest).total_seconds()


def _failure_reason(exc: Exception) -> str:
    if isinstance(exc, ObjectError | StateError):
        return exc.reason
    if isinstance(exc, WorkerCrashed):
        return "worker_crashed"
    if isinstance(exc, DeadlineReached):
        return "deadline"
    return f"internal_{type(exc).__name__}"


def _routed(sink: AlertSink, destinations: tuple[str, ...]) -> AlertSink:
    async def routed(alerts: Sequence[Alert]) -> Sequence[bool] | None:
        return await sink([replace(alert, destinations=destinations) for alert in alerts])

    return routed


def _event_id(match: Match) -> str | None:
    record = match.record
    if isinstance(record, RecordJSON):
        return record.event_id
    event_id = record.get("eventID")
    return event_id if isinstance(event_id, str) else None


def rule_sources(config: Config, plan: StatePlan | None = None) -> list[RuleSource]:
    """Every rule, disabled ones included, so that a match's rule_index is its config index.
    A sequence rule has no jq of its own (its steps' rules match for it): workers skip it."""
    plan = plan if plan is not None else StatePlan.of(config)
    return [
        RuleSource(
            rule.name,
            rule.jq_match,
            enabled=rule.enabled and bool(rule.jq_match),
            title=rule.title,
            suppressions=rule.suppressions,
            stateful=rule.index in plan.consumers,
            keys=plan.keys.get(rule.index, ()),
        )
        for rule in config.rules
    ]


class Pipeline:
    def __init__(
        self, config: Config, settings: Settings, pool: WorkerPool, aws: AwsClients
    ) -> None:
        self.config = config
        self.settings = settings
        self.pool = pool
        self.aws = aws

    async def run(
        self,
        refs: Sequence[ObjectRef],
        sink: AlertSink,
        summary: RunSummary,
        state: StateStage | None = None,
        deadline: float | None = None,
        window: EventWindow | None = None,
    ) -> list[ObjectRef]:
        """Process every object; return those that failed (skipped objects are not failures).
        `state` takes the matches of rules with memory (required when the config has some).
        With a window, only records whose eventTime is in it are evaluated.

        With a `deadline` (a time.monotonic() value: the Lambda's end), no object is started,
        and no evaluation goes on, later than TATTLETAIL_DEADLINE_MARGIN seconds before it:
        those objects fail with reason `deadline`, so that they come back, and the margin is
        left for delivering the alerts of every object already evaluated."""
        cutoff = self._cutoff(deadline)
        limit = asyncio.Semaphore(self.settings.object_concurrency)
        outcomes = await asyncio.gather(
            *(self._process(ref, sink, summary, limit, state, cutoff, window) for ref in refs)
        )
        return [ref for ref, ok in zip(refs, outcomes, strict=True) if not ok]

    async def _process(
        self,
        ref: ObjectRef,
        sink: AlertSink,
        summary: RunSummary,
        limit: asyncio.Semaphore,
        state: StateStage | None,
        cutoff: float | None,
        window: EventWindow | None,
    ) -> bool:
        with logs.context(object=ref.uri):
            started = time.perf_counter()
            try:
                reason = skip_reason(ref)
                if reason is not None:
                    raise SkippedObject(reason, f"{ref.uri}: not a log file ({reason}), skipped")
                self._check_routing(ref)
                async with limit:
                    if cutoff is not None and time.monotonic() >= cutoff:
                        raise DeadlineReached(
                            "not started: less than TATTLETAIL_DEADLINE_MARGIN "
                            f"({self.settings.deadline_margin:g} s) left before the "
                            "invocation's deadline"
                        )
                    evaluation = await self._evaluate(ref, cutoff, window)
            except SkippedObject as exc:
                summary.objects_skipped += 1
                summary.skipped_by_reason[exc.reason] += 1
                logs.log(logging.INFO, "object_skipped", reason=exc.reason, detail=str(exc))
                return True
            except Exception as exc:
                # Anything unforeseen fails this object only; the others carry on.
                self._failed(ref, _failure_reason(exc), str(exc), summary)
                return False
            lag = _lag_seconds(evaluation.newest_event_time)
            if lag is not None:
                summary.file_lag_seconds = max(lag, summary.file_lag_seconds or lag)
            trail = parse_key(ref.key)
            path = "local" if ref.bucket is None else "backfill" if ref.backfill else "s3"

            def alert(match: Match) -> Alert:
                return self._alert(
                    match,
                    source=ref.uri,
                    account=trail.account if trail else None,
                    region=trail.region if trail else None,
                    path=path,
                    destinations=ref.destinations,
                )

            # A replay's routing applies to the alerts of rules with memory too.
            routed = sink if ref.destinations is None else _routed(sink, ref.destinations)
            # Delivery runs outside the object limit so the next file is fetched meanwhile.
            try:
                await self._conclude(evaluation, alert, routed, summary, state, ref.uri)
            except StateError as exc:
                # Its other alerts went out; its matches count once when it comes back.
                self._failed(ref, exc.reason, str(exc), summary)
                return False
            summary.objects += 1
            logs.log(
                logging.INFO,
                "object_processed",
                records=evaluation.records,
                matches=len(evaluation.matches),
                rule_errors=evaluation.rule_errors,
                seconds=round(time.perf_counter() - started, 3),
            )
            return True

    async def run_events(
        self,
        events: Sequence[CloudTrailEvent],
        sink: AlertSink,
        summary: RunSummary,
        state: StateStage | None = None,
        deadline: float | None = None,
    ) -> list[CloudTrailEvent]:
        """Evaluate CloudTrail events delivered inline; return those that failed (`deadline`
        as for `run`).

        The same event delivered twice in one batch (EventBridge delivers at least once) is
        evaluated once. The records go to the pool as a few small log files, one per worker,
        so a batch uses every worker and a failure costs only its share.
        """
        if not events:
            return []
        by_event_id: dict[str, list[CloudTrailEvent]] = {}
        unique: list[CloudTrailEvent] = []
        for event in events:
            event_id = event.record.get("eventID")
            if isinstance(event_id, str) and event_id:
                if event_id in by_event_id:
                    by_event_id[event_id].append(event)
                    continue
                by_event_id[event_id] = [event]
            unique.append(event)
        summary.events += len(events)
        parts = min(len(unique), self.settings.workers)
        chunks = [unique[n::parts] for n in range(parts)]
        cutoff = self._cutoff(deadline)
        failed = await asyncio.gather(
            *(self._evaluate_events(chunk, sink, summary, state, cutoff) for chunk in chunks)
        )
        lost = [event for chunk in failed for event in chunk]
        # A duplicate shares its original's fate.
        return [
            duplicate
            for event in lost
            for duplicate in by_event_id.get(event.record.get("eventID") or "", [event])
        ]

    async def _evaluate_events(
        self,
        events: list[CloudTrailEvent],
        sink: AlertSink,
        summary: RunSummary,
        state: StateStage | None,
        cutoff: float | None,
    ) -> list[CloudTrailEvent]:
        payload = orjson.dumps({"Records": [event.record for event in events]})
        max_bytes = self.settings.max_object_bytes
        by_event_id = {event.record.get("eventID"): event for event in reversed(events)}

        def alert(match: Match) -> Alert:
            event = by_event_id.get(_event_id(match), events[0])
            return self._alert(
                match,
                source=event.source,
                account=event.account,
                region=event.region,
                path="eventbridge",
            )

        try:
            if len(payload) > max_bytes:
                raise ObjectError(
                    "too_large", f"{len(payload)} bytes of events exceed the limit of {max_bytes}"
                )
            evaluation = await self.pool.evaluate(payload, max_bytes, cutoff)
            source = events[0].source if len(events) == 1 else f"{len(events)} EventBridge events"
            await self._conclude(evaluation, alert, sink, summary, state, source)
        except Exception as exc:
            reason = _failure_reason(exc)
            summary.events_failed += len(events)
            summary.failures_by_reason[reason] += 1
            logs.log(
                logging.ERROR,
                "events_failed",
                reason=reason,
                error=str(exc),
                events=[event.source for event in events],
            )
            return events
        logs.log(
            logging.INFO,
            "events_processed",
            events=len(events),
            matches=len(evaluation.matches),
            rule_errors=evaluation.rule_errors,
        )
        return []

    async def _conclude(
        self,
        evaluation: Evaluation,
        alert: Callable[[Match], Alert],
        sink: AlertSink,
        summary: RunSummary,
        state: StateStage | None,
        source: str,
    ) -> None:
        """Count an evaluation, log its rule errors, hand its alerts to the sink, then its
        matches of rules with memory to the state stage (StateError when that fails)."""
        summary.records += evaluation.records
        summary.records_out_of_range += evaluation.out_of_range
        self._log_record_problems(evaluation, summary)
        summary.evaluation_seconds += evaluation.seconds
        summary.add_event_times(evaluation.oldest_event_time, evaluation.newest_event_time)
        self._log_rule_errors(evaluation, summary)
        for rule_index, count in evaluation.suppressed_counts.items():
            summary.suppressed += count
            summary.suppressed_by_rule[self.config.rules[rule_index].name] += count
        rules = self.config.rules
        summary.matches += len(evaluation.matches)
        for match in evaluation.matches:
            summary.matches_by_rule[rules[match.rule_index].name] += 1
        alerts = [
            alert(match)
            for match in evaluation.matches
            if rules[match.rule_index].alert and rules[match.rule_index].stateful is None
        ]
        if alerts:
            await sink(alerts)
        if state is not None:
            feeding = [match for match in evaluation.matches if state.feeds(match)]
            if feeding:
                await state.process(source, feeding, sink)

    def _check_routing(self, ref: ObjectRef) -> None:
        unknown = [d for d in ref.destinations or () if d not in self.config.destinations]
        if unknown:
            raise ObjectError(
                "unknown_destination",
                f"{ref.uri}: its message routes alerts to destinations the config does not "
                f"define: {', '.join(unknown)}",
            )

    def _failed(self, ref: ObjectRef, reason: str, error: str, summary: RunSummary) -> None:
        summary.objects_failed += 1
        summary.failures_by_reason[reason] += 1
        summary.failed_objects.append(ref.uri)
        logs.log(logging.ERROR, "object_failed", reason=reason, error=error)

    def _cutoff(self, deadline: float | None) -> float | None:
        return None if deadline is None else deadline - self.settings.deadline_margin

    async def _evaluate(
        self, ref: ObjectRef, cutoff: float | None, window: EventWindow | None
    ) -> Evaluation:
        s3 = await self.aws.client("s3") if ref.bucket is not None else None
        max_bytes = self.settings.max_object_bytes
        payload = await fetch(ref, s3, max_bytes)
        if not payload:
            raise SkippedObject("empty", f"{ref.uri}: zero-byte object, skipped")
        return await self.pool.evaluate(payload, max_bytes, cutoff, window)

    def _alert(
        self,
        match: Match,
        *,
        source: str,
        account: str | None,
        region: str | None,
        path: str,
        destinations: tuple[str, ...] | None = None,
    ) -> Alert:
        rule = self.config.rules[match.rule_index]
        return Alert(
            rule_name=rule.name,
            description=rule.description,
            record=match.record,
            match=match.annotation,
            source=source,
            destinations=rule.destinations if destinations is None else destinations,
            severity=rule.severity,
            title=match.title,
            tags=rule.tags,
            runbook=rule.runbook,
            account=account,
            region=region,
            path=path,
        )

    def _log_record_problems(self, evaluation: Evaluation, summary: RunSummary) -> None:
        summary.records_invalid += evaluation.records_invalid
        summary.records_failed += evaluation.records_failed
        if evaluation.records_invalid:
            logs.log(
                logging.WARNING,
                "records_invalid",
                count=evaluation.records_invalid,
                detail="entries of the Records array that are not JSON objects were skipped",
            )
        for failure in evaluation.failure_samples:
            logs.log(
                logging.ERROR,
                "record_failed",
                event_id=failure.event_id,
                reason=failure.reason,
                error=failure.message,
                failed_in_object=evaluation.records_failed,
            )

    def _log_rule_errors(self, evaluation: Evaluation, summary: RunSummary) -> None:
        for quarantined in evaluation.quarantined:
            summary.rules_quarantined += 1
            logs.log(
                logging.ERROR,
                "rule_quarantined",
                rule=self.config.rules[quarantined.rule_index].name,
                reason=quarantined.reason,
                detail=quarantined.detail,
                limit_seconds=self.settings.batch_timeout,
                note="not evaluated again until the container restarts or the rule changes; "
                "every other rule is still evaluated",
            )
        for rule_index, count in evaluation.error_counts.items():
            name = self.config.rules[rule_index].name
            summary.rule_errors += count
            summary.rule_errors_by_rule[name] += count
        for sample in evaluation.error_samples:
            logs.log(
                logging.WARNING,
                "rule_error",
                rule=self.config.rules[sample.rule_index].name,
                event_id=sample.event_id,
                error=sample.message,
                errors_in_object=evaluation.error_counts[sample.rule_index],
            )
