"""Fixtures: real protocols on 127.0.0.1 (what they hand out is described in tests/support.py).

- `moto`: a moto server (S3, SNS, SES, SQS, ...) reached over HTTP by the same aioboto3 code that
  runs in Lambda, through AWS_ENDPOINT_URL.
- `slack`: a local aiohttp server that answers like Slack's incoming webhooks (200 "ok"), or with
  scripted failures (429 + Retry-After, 4xx, 5xx).
- `runtime_api`: a local Lambda Runtime API that hands out queued events (tests/lambda_support.py).
- `cli_environment`: the CLI run in-process (`tests.support.run_cli`) with one worker and none
  of the machine's config or log-level variables.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from moto.server import ThreadedMotoServer

from tests.lambda_support import RuntimeApi, serve_runtime_api
from tests.support import REGION, Moto, SlackStandIn, serving

# The AWS SDKs must never reach real AWS from the tests, whatever the machine's environment.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }
)
for _name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
    os.environ.pop(_name, None)


def _atomic_dynamodb_writes() -> None:
    """Make moto's DynamoDB writes atomic, as DynamoDB's are.

    moto's server answers each request in its own thread and checks a write's condition
    before it stores the item, with nothing between the two: two conditional writes to one
    item racing there can both succeed, which DynamoDB never allows. One lock around every
    write gives the tests real DynamoDB's guarantee (reads need none: an item is replaced
    whole)."""
    from moto.dynamodb.models import DynamoDBBackend

    if getattr(DynamoDBBackend, "_tattletail_atomic", False):
        return
    lock = threading.RLock()
    for name in (
        "put_item",
        "update_item",
        "delete_item",
        "batch_write_item",
        "transact_write_items",
    ):
        original = getattr(DynamoDBBackend, name, None)
        if original is None:
            continue

        def locked(*args: Any, __original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return __original(*args, **kwargs)

        setattr(DynamoDBBackend, name, locked)
    DynamoDBBackend._tattletail_atomic = True  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def moto_server() -> Iterator[Moto]:
    _atomic_dynamodb_writes()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield Moto(f"http://{host}:{port}")
    server.stop()


@pytest.fixture
def moto(moto_server: Moto, monkeypatch: pytest.MonkeyPatch) -> Moto:
    """A clean moto server, and Tattletail's AWS calls pointed at it."""
    moto_server.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    return moto_server


@pytest.fixture(scope="session")
def slack_server() -> Iterator[SlackStandIn]:
    stand_in = SlackStandIn(url="")
    webhook_path = "/services/T0000/B0000/s3cr3tw3bh00kt0k3n"

    async def webhook(request: web.Request) -> web.Response:
        body = await request.json()
        with stand_in.lock:
            reply = stand_in.script.pop(0) if stand_in.script else (200, {}, "ok")
            stand_in.requests.append({"body": body, "status": reply[0]})
        status, headers, text = reply
        return web.Response(status=status, headers=headers, text=text)

    app = web.Application()
    app.router.add_post(webhook_path, webhook)
    with serving(app) as (port, _):
        stand_in.url = f"http://127.0.0.1:{port}{webhook_path}"
        yield stand_in


@pytest.fixture
def slack(slack_server: SlackStandIn) -> SlackStandIn:
    with slack_server.lock:
        slack_server.requests.clear()
        slack_server.script.clear()
    return slack_server


@pytest.fixture
def cli_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # One worker keeps each scan's pool cheap (each worker compiles every rule); nothing from
    # the machine's environment names a config or turns logging on.
    monkeypatch.setenv("TATTLETAIL_WORKERS", "1")
    for name in ("TATTLETAIL_CONFIG", "S3_CONFIG_BUCKET", "S3_CONFIG_PATH", "TATTLETAIL_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def runtime_api() -> Iterator[RuntimeApi]:
    with serve_runtime_api() as api:
        yield api
