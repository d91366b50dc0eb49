"""What many test modules share: paths to the repository and to the real CloudTrail data in
../shared/data, small helpers, and the handles of the local servers that conftest.py's fixtures
start (a moto server, a Slack stand-in).

Test modules import it as `from tests.support import ...`; conftest.py holds fixtures only.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import orjson
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CLOUDTRAIL = SHARED_DATA / "cloudtrail"
SEED_LOG = CLOUDTRAIL / "seed" / "1.json"
REGION = "us-east-1"
# What a hostile CloudTrail field may carry to act on a terminal or to mislead its reader:
# line breaks, C0 and C1 controls, escape sequences (colour, window title, OSC 8 link), DEL,
# bidi overrides and isolates, zero-width characters, separators, a tag character, an odd space.
HOSTILE = [
    "\n",
    "\r",
    "\t",
    "\x00",
    "\x07",
    "\x1b[31m",
    "\x1b]0;pwned\x07",
    "\x1b]8;;http://evil/\x1b\\",
    "\x7f",
    "\x9b31m",
    "\u202e",
    "\u2066",
    "\u200b",
    "\u2028",
    "\u2029",
    "\ufeff",
    "\U000e0041",
    "\u00a0",
]


def real_records() -> list[dict[str, Any]]:
    """Every record of ../shared/data/cloudtrail (documents and plain arrays)."""
    records: list[dict[str, Any]] = []
    for path in sorted(CLOUDTRAIL.rglob("*.json")):
        document = orjson.loads(path.read_bytes())
        records.extend(document["Records"] if isinstance(document, dict) else document)
    return records


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def run_cli(argv: list[str]) -> int:
    """`tattletail ARGV` in this process: main()'s exit code, whether it returns it or argparse
    raises SystemExit (usage errors, --help)."""
    from tattletail.cli import main

    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


@contextmanager
def serving(app: web.Application) -> Iterator[tuple[int, asyncio.AbstractEventLoop]]:
    """Serve `app` on 127.0.0.1, on a free port, from a thread and event loop of its own (so
    sync and async tests alike can use it): yields the port and that loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)

    async def start() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop() -> None:
        await runner.cleanup()
        # A reply still held back (a sender that timed out) ends here, not at exit with "Task
        # was destroyed but it is pending".
        held = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)

    try:
        yield asyncio.run_coroutine_threadsafe(start(), loop).result(10), loop
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@dataclass
class Moto:
    endpoint: str

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION)

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

    def topic_with_queue(self, topic: str, queue: str) -> tuple[str, str]:
        """An SNS topic and an SQS queue subscribed to it (raw delivery), to read back what
        was published: (topic ARN, queue URL)."""
        sns, sqs = self.client("sns"), self.client("sqs")
        topic_arn = sns.create_topic(Name=topic)["TopicArn"]
        queue_url = sqs.create_queue(QueueName=queue)["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=attributes["Attributes"]["QueueArn"],
            Attributes={"RawMessageDelivery": "true"},
        )
        return topic_arn, queue_url

    def sent_emails(self) -> list[Any]:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ses.models import ses_backends

        return list(ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages)


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
