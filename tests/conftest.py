"""Shared test infrastructure: real protocols on 127.0.0.1.

- `moto`: a moto server (S3, SNS, SES, SQS, ...) reached over HTTP by the same aioboto3 code that
  runs in Lambda, through AWS_ENDPOINT_URL.
- `slack`: a local aiohttp server that answers like Slack's incoming webhooks (200 "ok"), or with
  scripted failures (429 + Retry-After, 4xx, 5xx).
- Real CloudTrail data from ../shared/data.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from aiohttp import web
from moto.server import ThreadedMotoServer

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CLOUDTRAIL = SHARED_DATA / "cloudtrail"
SEED_LOG = CLOUDTRAIL / "seed" / "1.json"
REGION = "us-east-1"

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


def real_records() -> list[dict[str, Any]]:
    """Every record of ../shared/data/cloudtrail (documents and plain arrays)."""
    records: list[dict[str, Any]] = []
    for path in sorted(CLOUDTRAIL.rglob("*.json")):
        document = orjson.loads(path.read_bytes())
        records.extend(document["Records"] if isinstance(document, dict) else document)
    return records


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


@dataclass
class Moto:
    endpoint: str

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION)

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

    def sent_emails(self) -> list[Any]:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ses.models import ses_backends

        return list(ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages)


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


@dataclass
class SlackStandIn:
    """Answers like a Slack incoming webhook; `script` holds the responses to give first."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    script: list[tuple[int, dict[str, str], str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, status: int, times: int = 1, headers: dict[str, str] | None = None) -> None:
        body = {429: "rate_limited", 500: "internal_error", 404: "no_service"}.get(status, "error")
        with self.lock:
            self.script.extend([(status, headers or {}, body)] * times)

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.requests)


@pytest.fixture(scope="session")
def slack_server() -> Iterator[SlackStandIn]:
    loop = asyncio.new_event_loop()
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
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    stand_in.url = f"http://127.0.0.1:{port}{webhook_path}"
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield stand_in
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


@pytest.fixture
def slack(slack_server: SlackStandIn) -> SlackStandIn:
    with slack_server.lock:
        slack_server.requests.clear()
        slack_server.script.clear()
    return slack_server
