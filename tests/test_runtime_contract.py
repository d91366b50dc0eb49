"""The container image's runtime contract, proven without Docker.

The Lambda base image runs AWS's runtime interface client (`awslambdaric`) on the handler string
in the Dockerfile's CMD. Here the same client runs that same string against a local
implementation of the Lambda Runtime API (next invocation, response, error) on 127.0.0.1, with
an S3 event for an object in the moto server, and the alert arrives at the Slack stand-in.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import REPO, Moto, SlackStandIn
from tests.lambda_support import BUCKET, SEED_KEY, put_seed_log, s3_event


def dockerfile_handler() -> str:
    text = (REPO / "Dockerfile").read_text()
    commands = re.findall(r'^CMD \["([^"]+)"\]', text, flags=re.MULTILINE)
    assert len(commands) == 1, "the Dockerfile must have exactly one exec-form CMD"
    return commands[0]


@dataclass
class RuntimeApi:
    """A minimal Lambda Runtime API: hands out queued events, records what comes back."""

    address: str = ""
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    responses: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, Any] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def runtime_api() -> Iterator[RuntimeApi]:
    api = RuntimeApi()
    loop = asyncio.new_event_loop()
    available = asyncio.Event()

    async def next_invocation(request: web.Request) -> web.Response:
        while not api.events:
            available.clear()
            await available.wait()
        request_id, event = api.events.pop(0)
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
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    api.address = f"127.0.0.1:{port}"

    def push(request_id: str, event: dict[str, Any]) -> None:
        api.events.append((request_id, event))
        available.set()

    api.push = lambda request_id, event: loop.call_soon_threadsafe(push, request_id, event)  # type: ignore[attr-defined]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield api
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


CREATE_USER_TO_SLACK = """
[[rule]]
name = "Create User"
jq_match = 'select(.eventName == "CreateUser") | "username: \\(.responseElements.user.userName)"'
description = "A new IAM user has been created"
destinations = ["Slack"]

[[destination]]
id = "Slack"
type = "slack_webhook"
webhook_url = "{url}"
"""


def run_in_runtime_client(
    runtime_api: RuntimeApi, moto: Moto, slack: SlackStandIn, task_root: Path, event: Any
) -> tuple[dict[str, Any], str]:
    """The image's CMD, run by AWS's runtime interface client on one event; its response and
    what it printed."""
    # The task root holds the bundled config, as the image's does.
    (task_root / "tattletail.toml").write_text(CREATE_USER_TO_SLACK.format(url=slack.url))
    env = {
        **os.environ,
        "AWS_LAMBDA_RUNTIME_API": runtime_api.address,
        "AWS_ENDPOINT_URL": moto.endpoint,
        "TATTLETAIL_WORKERS": "1",
        "PYTHONPATH": str(REPO),
        "LAMBDA_TASK_ROOT": str(task_root),
        "_HANDLER": dockerfile_handler(),
    }
    env.pop("S3_CONFIG_BUCKET", None)
    request_id = str(uuid.uuid4())
    runtime_api.push(request_id, event)  # type: ignore[attr-defined]
    process = subprocess.Popen(
        [sys.executable, "-m", "awslambdaric", dockerfile_handler()],
        cwd=task_root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        finished = runtime_api.done.wait(60)
    finally:
        process.kill()
        output = process.communicate(timeout=10)[0].decode(errors="replace")
    assert finished, f"no response from the runtime client; it printed:\n{output}"
    assert runtime_api.errors == {}, output
    return runtime_api.responses[request_id], output


def test_runtime_interface_client_runs_the_dockerfile_handler(
    moto: Moto, slack: SlackStandIn, runtime_api: RuntimeApi, tmp_path: Path
) -> None:
    put_seed_log(moto)

    response, output = run_in_runtime_client(
        runtime_api, moto, slack, tmp_path, s3_event(BUCKET, SEED_KEY)
    )

    assert response["objects"] == 1 and response["matches"] == 1
    assert response["alerts_sent"] == 1 and response["alerts_failed"] == 0
    [delivered] = slack.received()
    texts = json.dumps(delivered["body"])
    assert "Create User" in texts and "username: user1" in texts
    assert slack.url not in output


def test_the_runtime_client_evaluates_an_eventbridge_cloudtrail_event_with_no_s3_read(
    moto: Moto, slack: SlackStandIn, runtime_api: RuntimeApi, tmp_path: Path
) -> None:
    """The real-time path: EventBridge's CloudTrail event, no S3 object to read anywhere."""
    event = json.loads(
        (REPO / "tests" / "cloudtrail_events" / "api_call_create_user.json").read_text()
    )

    response, output = run_in_runtime_client(runtime_api, moto, slack, tmp_path, event)

    assert response["events"] == 1 and response["objects"] == 0
    assert response["alerts_sent"] == 1
    assert moto.client("s3").list_buckets()["Buckets"] == []
    [delivered] = slack.received()
    assert "username: user1" in json.dumps(delivered["body"])
    # The real-time path's latency went out as an EMF line.
    assert '"Path":"eventbridge"' in output and "AlertLatencySeconds" in output
