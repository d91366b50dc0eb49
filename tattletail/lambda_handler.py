"""The Lambda entry point: `tattletail.lambda_handler.handler`.

The container keeps one event loop and one Service between invocations, so the worker pool,
the compiled rules and the HTTP/AWS connections are built once, at the cold start.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tattletail import config_source, logs
from tattletail.aws import AwsClients
from tattletail.envelope import UnrecognisedEvent, open_envelope, shape
from tattletail.service import Service
from tattletail.settings import Settings
from tattletail.summary import RunSummary


class ObjectsFailed(RuntimeError):
    """Raised after every other object was processed, so Lambda retries the invocation (and
    its on-failure destination keeps what still fails)."""


_loop: asyncio.AbstractEventLoop | None = None
_service: Service | None = None


def handler(event: Any, context: Any) -> dict[str, Any]:
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    return _loop.run_until_complete(handle(event, context))


def shutdown() -> None:
    """Stop the worker pool and forget the container's state (tests; a graceful SIGTERM)."""
    global _service
    if _service is not None:
        if _loop is not None and not _loop.is_closed():
            _loop.run_until_complete(_service.aclose())
        _service.close_pool()
        _service = None


async def _get_service() -> Service:
    global _service
    if _service is None:
        settings = Settings.from_env()
        logs.configure(settings.log_level)
        aws = AwsClients(settings.aws_endpoint_url)
        s3 = await aws.client("s3") if settings.config_from_s3 else None
        config = await config_source.load(settings, s3)
        _service = Service(settings, config, aws)
    return _service


async def handle(event: Any, context: Any) -> dict[str, Any]:
    service = await _get_service()
    request_id = getattr(context, "aws_request_id", "") or ""
    with logs.context(request_id=request_id):
        try:
            envelope = open_envelope(event)
        except UnrecognisedEvent:
            logs.log(logging.WARNING, "event_unrecognised", shape=shape(event))
            return {"status": "unrecognised"}
        for reason in envelope.ignored:
            logs.log(logging.INFO, "notification_ignored", envelope=envelope.kind, reason=reason)
        summary = RunSummary()
        failed = await service.run(envelope.refs, summary)
        logs.log(logging.INFO, "invocation_summary", envelope=envelope.kind, **summary.fields())
        if envelope.kind == "sqs":
            failed_ids = sorted({ref.origin for ref in failed if ref.origin})
            return {"batchItemFailures": [{"itemIdentifier": i} for i in failed_ids]}
        if failed:
            raise ObjectsFailed(
                f"{len(failed)} of {len(envelope.refs)} objects failed: "
                + ", ".join(ref.uri for ref in failed)
            )
        return summary.fields()
