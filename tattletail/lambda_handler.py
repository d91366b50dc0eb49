"""The Lambda entry point: `tattletail.lambda_handler.handler`.

The container keeps one event loop and one Service between invocations, so the worker pool,
the compiled rules and the HTTP/AWS connections are built once, at the cold start. With a
bundled config that happens at import time, during Lambda's init phase (and during the image
build's smoke step, so a broken bundled config fails the build). An S3 config is loaded at the
first invocation and then re-checked at most once per TATTLETAIL_CONFIG_TTL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

from tattletail import config_source, logs, metrics
from tattletail.aws import AwsClients
from tattletail.config import ConfigError
from tattletail.config_source import S3ConfigWatcher
from tattletail.envelope import UnrecognisedEvent, open_envelope, shape
from tattletail.service import Service
from tattletail.settings import Settings
from tattletail.summary import RunSummary


class ObjectsFailed(RuntimeError):
    """Raised after every other object was processed, so Lambda retries the invocation (and
    its on-failure destination keeps what still fails)."""


_loop: asyncio.AbstractEventLoop | None = None
_service: Service | None = None
_watcher: S3ConfigWatcher | None = None


def _event_loop() -> asyncio.AbstractEventLoop:
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    return _loop


def handler(event: Any, context: Any) -> dict[str, Any]:
    return _event_loop().run_until_complete(handle(event, context))


def shutdown() -> None:
    """Stop the worker pool and forget the container's state (tests; a graceful SIGTERM)."""
    global _service, _watcher
    if _service is not None:
        _event_loop().run_until_complete(_service.aclose())
        _service.close_pool()
        _service = None
    _watcher = None


async def _get_service() -> Service:
    global _service, _watcher
    if _service is None:
        settings = Settings.from_env()
        logs.configure(settings.log_level)
        aws = AwsClients(settings.aws_endpoint_url)
        if settings.config_from_s3:
            bucket, key = settings.s3_config_bucket, settings.s3_config_path
            loaded, etag = await config_source.load_from_s3_with_etag(
                await aws.client("s3"), bucket, key
            )
            _watcher = S3ConfigWatcher(bucket, key, settings.config_ttl, etag)
        else:
            loaded = await config_source.load(settings, None)
        _service = Service(settings, loaded, aws)
    return _service


async def _refresh_config(service: Service, summary: RunSummary) -> None:
    if _watcher is None:
        return
    try:
        changed = await _watcher.poll(await service.aws.client("s3"))
    except ConfigError as exc:
        summary.config_errors += 1
        logs.log(
            logging.ERROR,
            "config_reload_failed",
            error=str(exc),
            keeping=service.config.source,
        )
        return
    if changed is None:
        return
    try:
        await service.replace_config(changed)
    except Exception as exc:  # e.g. new workers did not start: keep the running config
        summary.config_errors += 1
        logs.log(
            logging.ERROR,
            "config_reload_failed",
            error=f"{type(exc).__name__}: {exc}",
            keeping=service.config.source,
        )
        return
    _watcher.accept()
    logs.log(logging.INFO, "config_reloaded", rules=len(changed.rules), etag=_watcher.etag)


def _deadline(context: Any) -> float | None:
    """The invocation's end as a time.monotonic() value, from Lambda's context (None without)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None
    try:
        return time.monotonic() + float(remaining()) / 1000
    except (TypeError, ValueError):
        return None


async def handle(event: Any, context: Any) -> dict[str, Any]:
    service = await _get_service()
    request_id = getattr(context, "aws_request_id", "") or ""
    function_name = getattr(context, "function_name", "") or os.environ.get(
        "AWS_LAMBDA_FUNCTION_NAME", "tattletail"
    )
    summary = RunSummary()
    with logs.context(request_id=request_id):
        try:
            await _refresh_config(service, summary)
            try:
                envelope = open_envelope(event)
            except UnrecognisedEvent:
                summary.events_unrecognised += 1
                logs.log(logging.WARNING, "event_unrecognised", shape=shape(event))
                return {"status": "unrecognised"}
            for reason in envelope.ignored:
                logs.log(
                    logging.INFO, "notification_ignored", envelope=envelope.kind, reason=reason
                )
            for message_id, reason in envelope.rejected:
                # Not processed as it is: it comes back, and ends in the dead-letter queue.
                summary.messages_rejected += 1
                logs.log(logging.ERROR, "message_rejected", message_id=message_id, error=reason)
            try:
                failed, failed_events = await service.run_all(
                    envelope.refs, envelope.events, summary, deadline=_deadline(context)
                )
            finally:
                # Logged however the run ended (DeliveryIncomplete included).
                logs.log(
                    logging.INFO, "invocation_summary", envelope=envelope.kind, **summary.fields()
                )
        finally:
            if service.settings.emit_metrics:
                metrics.emit(summary, function_name)
        if envelope.kind == "sqs":
            failed_ids = sorted(
                {item.origin for item in [*failed, *failed_events] if item.origin}
                | {message_id for message_id, _ in envelope.rejected}
            )
            return {"batchItemFailures": [{"itemIdentifier": i} for i in failed_ids]}
        if failed or failed_events:
            counts = [
                f"{len(lost)} of {len(given)} {noun}"
                for lost, given, noun in (
                    (failed, envelope.refs, "objects"),
                    (failed_events, envelope.events, "events"),
                )
                if given
            ]
            raise ObjectsFailed(
                f"{' and '.join(counts)} failed: "
                + ", ".join([*(ref.uri for ref in failed), *(e.source for e in failed_events)])
            )
        return summary.fields()


def _eager_cold_start() -> None:
    """With a bundled config, build everything now, in Lambda's init phase."""
    settings = Settings.from_env()
    if not settings.config_from_s3 and Path(settings.config_file).is_file():
        _event_loop().run_until_complete(_get_service())


if os.environ.get("AWS_LAMBDA_RUNTIME_API") or os.environ.get("TATTLETAIL_EAGER_INIT"):
    _eager_cold_start()
