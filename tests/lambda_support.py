"""Helpers for tests that drive the Lambda handler: S3 events in AWS's documented shape, a bucket
holding the original's seed log, and a local Lambda Runtime API for the runtime interface client
(in a process, or in the container image)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

from aiohttp import web

from tests.support import REGION, SEED_LOG, Moto, gzipped, serving

BUCKET = "trail-bucket"
CONFIG_BUCKET = "config-bucket"
SEED_KEY = "AWSLogs/123456789/CloudTrail/us-east-1/2021/07/10/123456789_CloudTrail_seed 1.json.gz"


@dataclass
class LambdaContext:
    aws_request_id: str = "req-1"
    function_name: str = "tattletail-test"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def s3_event(bucket: str, *keys: str) -> dict[str, Any]:
    """An S3 ObjectCreated notification as S3 sends it (keys URL-encoded)."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": REGION,
                "eventTime": "2021-07-10T16:50:00.000Z",
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:cloudtrail"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {"x-amz-request-id": "1", "x-amz-id-2": "2"},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "tattletail",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "A1"},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": {"key": quote_plus(key, safe="/"), "size": 1, "eTag": "e"},
                },
            }
            for key in keys
        ]
    }


def put_seed_log(moto: Moto) -> None:
    s3 = moto.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=SEED_KEY, Body=gzipped(SEED_LOG.read_bytes()))


def slack_config(webhook_url: str) -> str:
    """The original's Create User rule, alerting a Slack webhook."""
    return f"""
[[rule]]
name = "Create User"
jq_match = 'select(.eventName == "CreateUser") | "username: \\(.responseElements.user.userName)"'
description = "A new IAM user has been created"
destinations = ["Slack"]

[[destination]]
id = "Slack"
type = "slack_webhook"
webhook_url = "{webhook_url}"
"""


def stdout_config(jq_match: str, name: str = "Create User") -> str:
    """A one-rule config whose alerts go to the stdout destination."""
    return f"""
[[rule]]
name = "{name}"
jq_match = '{jq_match}'
description = "test rule"
destinations = ["Out"]

[[destination]]
id = "Out"
type = "stdout"
"""


@dataclass
class RuntimeApi:
    """A minimal Lambda Runtime API: hands out queued events, records what comes back."""

    address: str = ""
    responses: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, Any] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)
    _events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _available: asyncio.Event | None = None

    def push(self, request_id: str, event: dict[str, Any]) -> None:
        """Queue an invocation (from any thread)."""
        assert self._loop is not None and self._available is not None
        available = self._available

        def add() -> None:
            self._events.append((request_id, event))
            available.set()

        self._loop.call_soon_threadsafe(add)


@contextmanager
def serve_runtime_api() -> Iterator[RuntimeApi]:
    """A RuntimeApi listening on 127.0.0.1 (an ephemeral port) in a thread of its own."""
    api = RuntimeApi()
    available = asyncio.Event()
    api._available = available

    async def next_invocation(request: web.Request) -> web.Response:
        while not api._events:
            available.clear()
            await available.wait()
        request_id, event = api._events.pop(0)
        # Exactly "application/json", as the real Runtime API sends (the client compares it).
        return web.Response(
            body=json.dumps(event).encode(),
            content_type="application/json",
            headers={
                "Lambda-Runtime-Aws-Request-Id": request_id,
                # Five minutes from now, as Lambda sets it (the client reads a far-off value
                # such as 9999999999999 as a deadline long past).
                "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 300_000),
                "Lambda-Runtime-Invoked-Function-Arn": (
                    "arn:aws:lambda:us-east-1:123456789012:function:tattletail"
                ),
                "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000",
            },
        )

    async def response(request: web.Request) -> web.Response:
        api.responses[request.match_info["id"]] = json.loads(await request.read())
        api.done.set()
        return web.Response(status=202)

    async def error(request: web.Request) -> web.Response:
        api.errors[request.match_info.get("id", "init")] = json.loads(await request.read())
        api.done.set()
        return web.Response(status=202)

    app = web.Application()
    app.router.add_get("/2018-06-01/runtime/invocation/next", next_invocation)
    app.router.add_post("/2018-06-01/runtime/invocation/{id}/response", response)
    app.router.add_post("/2018-06-01/runtime/invocation/{id}/error", error)
    app.router.add_post("/2018-06-01/runtime/init/error", error)
    with serving(app) as (port, loop):
        api.address = f"127.0.0.1:{port}"
        api._loop = loop
        yield api
