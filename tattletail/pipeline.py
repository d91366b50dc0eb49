"""The pipeline: objects -> records -> rules -> alerts -> a sink (the dispatcher, or a printer).

Fetching and delivery are asyncio; gunzip, decode and rule evaluation happen in the worker pool.
A bad object is logged, counted and skipped; the other objects carry on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from tattletail import logs
from tattletail.alerts import Alert
from tattletail.aws import AwsClients
from tattletail.config import Config
from tattletail.objects import ObjectError, ObjectRef, SkippedObject, fetch, skip_reason
from tattletail.rules import Evaluation, Match, RuleSource
from tattletail.settings import Settings
from tattletail.summary import RunSummary
from tattletail.workers import WorkerCrashed, WorkerPool

# Takes every alert of one object at once: a printer writes them in one go, the dispatcher
# fans them out concurrently; no task per alert where none is needed.
AlertSink = Callable[[Sequence[Alert]], Awaitable[None]]


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


def rule_sources(config: Config) -> list[RuleSource]:
    """Every rule, disabled ones included, so that a match's rule_index is its config index."""
    return [
        RuleSource(
            rule.name,
            rule.jq_match,
            enabled=rule.enabled,
            title=rule.title,
            suppressions=rule.suppressions,
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
        self, refs: Sequence[ObjectRef], sink: AlertSink, summary: RunSummary
    ) -> list[ObjectRef]:
        """Process every object; return those that failed (skipped objects are not failures)."""
        limit = asyncio.Semaphore(self.settings.object_concurrency)
        outcomes = await asyncio.gather(*(self._process(ref, sink, summary, limit) for ref in refs))
        return [ref for ref, ok in zip(refs, outcomes, strict=True) if not ok]

    async def _process(
        self, ref: ObjectRef, sink: AlertSink, summary: RunSummary, limit: asyncio.Semaphore
    ) -> bool:
        with logs.context(object=ref.uri):
            started = time.perf_counter()
            try:
                reason = skip_reason(ref)
                if reason is not None:
                    raise SkippedObject(reason, f"{ref.uri}: not a log file ({reason}), skipped")
                async with limit:
                    evaluation = await self._evaluate(ref)
            except SkippedObject as exc:
                summary.objects_skipped += 1
                summary.skipped_by_reason[exc.reason] += 1
                logs.log(logging.INFO, "object_skipped", reason=exc.reason, detail=str(exc))
                return True
            except Exception as exc:
                # Anything unforeseen fails this object only; the others carry on.
                reason = (
                    exc.reason
                    if isinstance(exc, ObjectError)
                    else "worker_crashed"
                    if isinstance(exc, WorkerCrashed)
                    else f"internal_{type(exc).__name__}"
                )
                summary.objects_failed += 1
                summary.failures_by_reason[reason] += 1
                summary.failed_objects.append(ref.uri)
                logs.log(logging.ERROR, "object_failed", reason=reason, error=str(exc))
                return False
            summary.objects += 1
            summary.records += evaluation.records
            summary.evaluation_seconds += evaluation.seconds
            summary.add_event_times(evaluation.oldest_event_time, evaluation.newest_event_time)
            lag = _lag_seconds(evaluation.newest_event_time)
            if lag is not None:
                summary.file_lag_seconds = max(lag, summary.file_lag_seconds or lag)
            self._log_rule_errors(evaluation, summary)
            for rule_index, count in evaluation.suppressed_counts.items():
                summary.suppressed += count
                summary.suppressed_by_rule[self.config.rules[rule_index].name] += count
            alerts = [self._alert(match.rule_index, match, ref) for match in evaluation.matches]
            summary.matches += len(alerts)
            for alert in alerts:
                summary.matches_by_rule[alert.rule_name] += 1
            # Delivery runs outside the object limit so the next file is fetched meanwhile.
            if alerts:
                await sink(alerts)
            logs.log(
                logging.INFO,
                "object_processed",
                records=evaluation.records,
                matches=len(alerts),
                rule_errors=evaluation.rule_errors,
                seconds=round(time.perf_counter() - started, 3),
            )
            return True

    async def _evaluate(self, ref: ObjectRef) -> Evaluation:
        s3 = await self.aws.client("s3") if ref.bucket is not None else None
        max_bytes = self.settings.max_object_bytes
        payload = await fetch(ref, s3, max_bytes)
        if not payload:
            raise SkippedObject("empty", f"{ref.uri}: zero-byte object, skipped")
        return await self.pool.evaluate(payload, max_bytes)

    def _alert(self, rule_index: int, match: Match, ref: ObjectRef) -> Alert:
        rule = self.config.rules[rule_index]
        return Alert(
            rule_name=rule.name,
            description=rule.description,
            record=match.record,
            match=match.annotation,
            source=ref.uri,
            destinations=rule.destinations,
            severity=rule.severity,
            title=match.title,
            tags=rule.tags,
            runbook=rule.runbook,
        )

    def _log_rule_errors(self, evaluation: Evaluation, summary: RunSummary) -> None:
        for rule_index in evaluation.timed_out_rules:
            summary.rules_timed_out += 1
            logs.log(
                logging.ERROR,
                "rule_timed_out",
                rule=self.config.rules[rule_index].name,
                limit_seconds=self.settings.batch_timeout,
                detail="the rule overran the batch time limit and was skipped for the rest "
                "of the object; every other rule was evaluated",
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
