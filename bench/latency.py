"""Latency from an event to its alert, per path, for the part Tattletail controls.

    python -m bench.latency [--runs N] [--markdown FILE]

A moto server (S3) and a local webhook receiver on 127.0.0.1 stand in for AWS and a
destination; the real handler runs warm in this process (its first invocation, the cold start,
is measured apart). For each run a fresh event (its own eventID) goes through one path:

* eventbridge: an "AWS API Call via CloudTrail" event handed to the handler;
* s3: a log file written to S3, then its S3 notification handed to the handler (GetObject,
  gunzip, decode, rules), for a small file (3 records), a typical one (60 records, 8 KB
  gzipped, the median of a real account's files) and a busy account's (5,000 records).

Measured: from the handler's call to the webhook receiving the alert (perf_counter), and the
function's own `AlertLatencySeconds` for the eventbridge path. What AWS adds before the handler
is called (CloudTrail's delivery to S3, EventBridge's to the function) is not measurable here:
see deploy/README.md, "Latency".
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SEED = REPO.parent / "shared" / "data" / "cloudtrail" / "seed" / "1.json"
INVICTUS = REPO.parent / "shared" / "data" / "cloudtrail" / "invictus"
BUCKET = "latency-trail"


class Receiver:
    """A webhook destination: records when each alert (by eventID) arrives."""

    def __init__(self) -> None:
        from aiohttp import web

        self.arrived: dict[str, float] = {}
        self.event = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def receive(request: web.Request) -> web.Response:
            body = await request.json()
            self.arrived[body["record"]["eventID"]] = time.perf_counter()
            self.event.set()
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/hook", receive)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"
        threading.Thread(target=self._loop.run_forever, daemon=True).start()


def create_user(event_id: str, when: datetime) -> dict[str, Any]:
    record = dict(
        next(r for r in json.loads(SEED.read_text())["Records"] if r["eventName"] == "CreateUser")
    )
    record["eventID"] = event_id
    record["eventTime"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return record


def filler(count: int) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for path in sorted(INVICTUS.glob("*.json")):
        records.extend(json.loads(path.read_text())["Records"])
    return [{**records[n % len(records)], "eventID": f"filler-{n}"} for n in range(count)]


def log_file(event_id: str, size: int, fill: list[dict[str, Any]]) -> bytes:
    records = [*fill[: size - 1], create_user(event_id, datetime.now(UTC))]
    return gzip.compress(json.dumps({"Records": records}).encode(), mtime=0)


def s3_event(key: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": BUCKET}, "object": {"key": key}},
            }
        ]
    }


def eventbridge_event(event_id: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.iam",
        "account": "123456789012",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [],
        "detail": create_user(event_id, datetime.now(UTC)),
    }


class Context:
    aws_request_id = "bench"
    function_name = "tattletail-bench"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


@contextmanager
def environment(receiver: Receiver, endpoint: str, scratch: Path) -> Iterator[None]:
    config = scratch / "tattletail.toml"
    config.write_text(
        f"""
[[rule]]
name = "Create User"
jq_match = 'select(.eventName == "CreateUser")'
description = "bench"
destinations = ["Hook"]

[[destination]]
id = "Hook"
type = "webhook"
url = "{receiver.url}"
# The webhook's default pacing (10 a second) would be measured instead of the pipeline.
rate_limit = 1000
rate_burst = 1000
"""
    )
    saved = dict(os.environ)
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "TATTLETAIL_CONFIG": str(config),
            "TATTLETAIL_WORKERS": "1",
            "TATTLETAIL_LOG_LEVEL": "WARNING",
        }
    )
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def measure(
    receiver: Receiver, invoke: Callable[[str], Any], event_id: str
) -> tuple[float, list[float]]:
    """Seconds from the call to the alert's arrival, and the function's own latencies."""
    receiver.event.clear()
    out = _Capture()
    started = time.perf_counter()
    with redirect_stdout(out):  # the EMF lines
        invoke(event_id)
    while event_id not in receiver.arrived:
        receiver.event.wait(10)
        receiver.event.clear()
    reported = [
        value
        for line in out.lines()
        if "AlertLatencySeconds" in line
        for value in json.loads(line)["AlertLatencySeconds"]
    ]
    return receiver.arrived[event_id] - started, reported


class _Capture:
    """stdout for the handler's EMF lines (metrics.emit writes to sys.stdout.buffer)."""

    def __init__(self) -> None:
        self.buffer = _Bytes()

    def write(self, text: str) -> int:
        return self.buffer.write(text.encode())

    def flush(self) -> None:
        pass

    def lines(self) -> list[str]:
        return self.buffer.getvalue().decode().splitlines()


class _Bytes:
    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run(runs: int) -> list[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    receiver = Receiver()
    rows: list[tuple[str, str, list[float], list[float]]] = []
    try:
        with (
            tempfile.TemporaryDirectory() as scratch,
            environment(receiver, endpoint, Path(scratch)),
        ):
            import boto3

            from tattletail import lambda_handler

            s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
            s3.create_bucket(Bucket=BUCKET)
            fill = filler(5_000)
            cold, _ = measure(
                receiver,
                lambda eid: lambda_handler.handler(eventbridge_event(eid), Context()),
                "cold",
            )
            rows.append(("eventbridge, cold start (pool start included)", "1 record", [cold], []))

            def eventbridge(eid: str) -> Any:
                return lambda_handler.handler(eventbridge_event(eid), Context())

            samples = [measure(receiver, eventbridge, f"eb-{n}") for n in range(runs)]
            rows.append(
                (
                    "eventbridge (warm)",
                    "1 record",
                    [s for s, _ in samples],
                    [r for _, rs in samples for r in rs],
                )
            )
            for label, size in (("small", 3), ("typical", 60), ("busy account", 5_000)):
                bodies = {}
                for n in range(runs):
                    key = (
                        f"AWSLogs/123456789012/CloudTrail/us-east-1/2026/01/01/{label}-{n}.json.gz"
                    )
                    bodies[f"{label}-{n}"] = key
                    s3.put_object(Bucket=BUCKET, Key=key, Body=log_file(f"{label}-{n}", size, fill))

                def via_s3(eid: str, keys: dict[str, str] = bodies) -> Any:
                    return lambda_handler.handler(s3_event(keys[eid]), Context())

                samples = [measure(receiver, via_s3, f"{label}-{n}") for n in range(runs)]
                gz = len(s3.get_object(Bucket=BUCKET, Key=bodies[f"{label}-0"])["Body"].read())
                rows.append(
                    (
                        f"s3, {label} file",
                        f"{size:,} records, {gz / 1024:,.0f} KB gz",
                        [s for s, _ in samples],
                        [],
                    )
                )
            lambda_handler.shutdown()
    finally:
        server.stop()
    return render(rows, runs)


def render(rows: list[tuple[str, str, list[float], list[float]]], runs: int) -> list[str]:
    lines = [
        f"### Latency, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- Machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.2f}",
        f"- {runs} runs per warm row; handler call to alert received by a local webhook (ms)",
        "",
        "| path | event | runs | p50 ms | p95 ms | max ms | AlertLatencySeconds p50 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, event, seconds, reported in rows:
        ms = [s * 1000 for s in seconds]
        lines.append(
            f"| {name} | {event} | {len(ms)} | {statistics.median(ms):,.0f} | "
            f"{percentile(ms, 0.95):,.0f} | {max(ms):,.0f} | "
            + (f"{statistics.median(reported):.2f} s" if reported else "-")
            + " |"
        )
    lines.append("")
    lines.append(
        "AlertLatencySeconds is eventTime (whole seconds, as CloudTrail writes it) to delivery, "
        "so it reads up to one second more than the handler's own time."
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.latency", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--runs", type=int, default=30, help="invocations per warm row (30)")
    parser.add_argument("--markdown", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    report = "\n".join(run(args.runs)) + "\n"
    sys.stdout.write(report)
    if args.markdown:
        args.markdown.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
