"""The attacker for "no secret is ever logged": a receiver that echoes back every secret it was
sent (the URL, its path, segments and query values, header values, the routing key) or knows
(the signing secret), in the encodings of tests/leak_check.py, chained and mixed, in its body,
its Location, WWW-Authenticate, Retry-After and Set-Cookie headers, as text, JSON, HTML or
UTF-16, with the first echo straddling the excerpt's cut; plus every way a send fails without
an answer. Whatever it does, no log record of any library at DEBUG, no dead letter, no metric,
no repr and nothing printed may hold any encoding of any secret.

The receiver is reached as `localhost` (aiohttp skips cookies from IP addresses).
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import logging
import os
import random
import string
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tattletail import metrics
from tattletail.aws import AwsClients
from tattletail.cli import main
from tattletail.destinations import DESTINATION_TYPES, DeliveryContext, Destination
from tattletail.dispatch import DeliveryPolicy, Dispatcher
from tattletail.logs import JsonFormatter
from tattletail.retry import Backoff
from tattletail.summary import RunSummary
from tests.destinations.destination_support import make_alert
from tests.destinations.http_stand_in import HttpStandIn, Reply, Request, refused_url
from tests.leak_check import ENCODERS, encode, forbidden, leaks
from tests.support import SEED_LOG, Moto

# The receiver's own logs (its access log quotes the path it was sent to) and moto's: theirs.
RECEIVER_LOGGERS = ("aiohttp.access", "aiohttp.server", "aiohttp.web", "werkzeug", "moto")
STATUSES = (301, 302, 307, 308, 400, 401, 403, 404, 410, 413, 429, 500, 502, 503)
WRAPS = ("text", "json", "html", "utf16")
EXCERPT_CHARS = 200

_URL_SAFE = string.ascii_letters + string.digits + "-._~"
_HEADER_SAFE = "".join(c for c in map(chr, range(33, 127)) if c not in '"\\')


@dataclass(frozen=True)
class Secrets:
    slack_token: str
    hook_segment: str
    hook_query: str
    bearer: str
    api_key: str
    signing: str
    routing_key: str

    def urls(self, port: int) -> dict[str, str]:
        base = f"http://localhost:{port}"
        return {
            # No fixed run of 8 characters in a path: the check would find it in any log.
            "slack": f"{base}/svc/{self.slack_token}",
            "hook": f"{base}/hooks/{self.hook_segment}?key={self.hook_query}&x=1",
        }

    def values(self, port: int) -> list[str]:
        return [
            *self.urls(port).values(),
            self.slack_token,
            self.hook_segment,
            self.hook_query,
            f"Bearer {self.bearer}",
            self.api_key,
            self.signing,
            self.routing_key,
        ]


def make_secrets(seed: int) -> Secrets:
    """Random secrets of the shapes real ones have (drawn from a seed, not by hypothesis: it
    would try the constants it finds in the code, and a secret equal to a metric's name is
    no leak)."""
    rng = random.Random(seed)

    def text(alphabet: str, low: int = 8, high: int = 32) -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))

    return Secrets(
        slack_token=text(string.ascii_letters + string.digits, 16, 32),
        hook_segment=text(_URL_SAFE),
        hook_query=text(_URL_SAFE),
        bearer=text(_URL_SAFE, 12, 40),
        api_key=text(_HEADER_SAFE),
        signing=text(_HEADER_SAFE),
        routing_key=text(string.hexdigits, 32, 32),
    )


SECRETS = st.integers(0, 2**32).map(make_secrets)


@dataclass(frozen=True)
class Hostile:
    """How the receiver answers (generated per example)."""

    status: int
    chains: tuple[tuple[str, ...], ...]
    seed: int
    pad: int
    wrap: str
    cookies: bool


HOSTILE = st.builds(
    Hostile,
    status=st.sampled_from(STATUSES),
    chains=st.lists(
        st.lists(st.sampled_from(sorted(ENCODERS)), min_size=1, max_size=3).map(tuple),
        min_size=1,
        max_size=6,
    ).map(tuple),
    seed=st.integers(0, 2**32),
    # Mostly so that the first echo straddles the excerpt's cut.
    pad=st.one_of(st.just(0), st.integers(EXCERPT_CHARS - 12, EXCERPT_CHARS)),
    wrap=st.sampled_from(WRAPS),
    cookies=st.booleans(),
)


def echoed(request: Request, port: int, known: Sequence[str]) -> list[str]:
    """Everything the request carried that a receiver could quote, and what it knows."""
    url = f"http://localhost:{port}{request.path}"
    parts = urlsplit(url)
    items = [url, request.path, parts.path, parts.query, *parts.path.split("/")]
    items += [value for _, value in parse_qsl(parts.query)]
    for name in ("Authorization", "X-Api-Key", "X-Tattletail-Signature"):
        value = request.headers.get(name, "")
        items += [value, *value.split()]
    try:
        body = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("routing_key"), str):
        items.append(body["routing_key"])
    return [item for item in [*items, *known] if len(item) >= 4]


def _header_safe(text: str) -> bool:
    return text.isascii() and text.isprintable()


def hostile_answer(plan: Hostile, request: Request, port: int, known: Sequence[str]) -> Reply:
    rng = random.Random(plan.seed)
    items = echoed(request, port, known)
    echoes = [encode(item, plan.chains[i % len(plan.chains)], rng) for i, item in enumerate(items)]
    text = "y" * plan.pad + " ".join(f"bad {echo};" for echo in echoes)
    body: bytes
    if plan.wrap == "json":
        body = orjson.dumps({"error": text, "echo": echoes})
    elif plan.wrap == "html":
        body = f"<html><body><h1>Error</h1><pre>{html.escape(text)}</pre></body></html>".encode()
    elif plan.wrap == "utf16":
        body = text.encode("utf-16")
    else:
        body = text.encode()
    plain = [echo for echo in echoes if _header_safe(echo)] or ["none"]
    headers = [
        ("Location", plain[0]),
        ("WWW-Authenticate", f'Bearer error="{plain[-1]}"'),
        ("Retry-After", plain[len(plain) // 2]),
    ]
    if plan.cookies:
        # Malformed names (aiohttp logs those) and ordinary ones.
        headers += [("Set-Cookie", f"{echo}=1; Path=/") for echo in plain[:6]]
        headers += [("Set-Cookie", f"session={echo}") for echo in plain[:3] if ";" not in echo]
    return Reply(plan.status, headers=headers, body=body)


def destinations(secrets: Secrets, urls: dict[str, str], pager_url: str) -> dict[str, Destination]:
    """Slack (its URL from the environment), a signed webhook with two secret headers (one from
    the environment), PagerDuty: the secrets inline and as references."""
    built = {
        "Slack": ("slack_webhook", {"webhook_url": "env:HOSTILE_SLACK_URL"}),
        "Hook": (
            "webhook",
            {
                "url": urls["hook"],
                "secret": secrets.signing,
                "headers": {
                    "Authorization": f"Bearer {secrets.bearer}",
                    "X-Api-Key": "env:HOSTILE_API_KEY",
                },
            },
        ),
        "Pager": ("pagerduty", {"routing_key": secrets.routing_key, "url": pager_url}),
    }
    return {
        dest_id: DESTINATION_TYPES[kind].build(dest_id, {**settings, "rate_limit": 1000})
        for dest_id, (kind, settings) in built.items()
    }


@contextmanager
def every_log_record() -> Iterator[list[logging.LogRecord]]:
    """Every record of every logger at DEBUG (Tattletail's own logger may not propagate)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if not record.name.startswith(RECEIVER_LOGGERS) and record not in records:
                records.append(record)

    handler = Keep(logging.DEBUG)
    loggers = [logging.getLogger(), logging.getLogger("tattletail")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def rendered(record: logging.LogRecord) -> str:
    """The record as any handler could write it: message, fields, traceback, stack."""
    return JsonFormatter().format(record) + "\n" + logging.Formatter().format(record)


def queue_bodies(moto: Moto, queue_url: str) -> list[str]:
    sqs = moto.client("sqs")
    bodies = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get(
        "Messages", []
    ):
        for message in batch:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


POLICY = DeliveryPolicy(
    concurrency=4,
    send_timeout=2.0,
    retries=1,
    retry_budget=5.0,
    backoff=Backoff(0.001, 0.002),
    flood_threshold=100,
)


def deliver(
    moto: Moto, found: dict[str, Destination], policy: DeliveryPolicy = POLICY
) -> tuple[RunSummary, list[str]]:
    """One alert to every destination but the dead letters; what the run wrote anywhere."""
    queue_url = moto.client("sqs").create_queue(QueueName="dead-letters")["QueueUrl"]
    dead = DESTINATION_TYPES["sqs"].build("Dead", {"queue_url": queue_url})
    found = {**found, "Dead": dead}
    summary = RunSummary()

    async def run() -> None:
        aws = AwsClients(moto.endpoint)
        context = DeliveryContext(aws, policy.send_timeout)
        try:
            dispatcher = Dispatcher(found, context, summary, policy, dead_letter="Dead")
            alert = make_alert(destinations=tuple(d for d in found if d != "Dead"))
            await dispatcher.deliver(alert)
            await dispatcher.finish()
        finally:
            await context.close()
            await aws.close()

    with every_log_record() as records:
        asyncio.run(run())
    written = [rendered(record) for record in records]
    written += queue_bodies(moto, queue_url)
    written += [orjson.dumps(doc).decode() for doc in metrics.documents(summary, "tattletail")]
    written += [orjson.dumps(summary.fields()).decode(), repr(found), str(found)]
    return summary, written


def assert_no_leak(written: list[str], secrets: Sequence[str]) -> None:
    # The receiver's host too: it is `localhost`, which nothing else writes.
    runs = forbidden(secrets, hosts=True)
    for text in dict.fromkeys(written):
        assert leaks(text, runs) == [], text


@pytest.fixture
def hostile(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[HttpStandIn, list[Any]]]:
    """The receiver, answering with the plan in `state[0]` and knowing the secrets in
    `state[1]` (a real receiver knows the signing secret)."""
    state: list[Any] = [None, []]

    def respond(request: Request) -> Reply:
        return hostile_answer(state[0], request, receiver.port, state[1])

    with HttpStandIn.running(respond=respond) as receiver:
        yield receiver, state


@settings(
    # A fixed set in CI; TATTLETAIL_FUZZ_EXAMPLES=200 for a longer, random run.
    max_examples=int(os.environ.get("TATTLETAIL_FUZZ_EXAMPLES", 10)),
    derandomize="TATTLETAIL_FUZZ_EXAMPLES" not in os.environ,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(secrets=SECRETS, plan=HOSTILE)
def test_a_hostile_receiver_gets_no_secret_into_logs_dead_letters_or_metrics(
    moto: Moto,
    hostile: tuple[HttpStandIn, list[Any]],
    monkeypatch: pytest.MonkeyPatch,
    secrets: Secrets,
    plan: Hostile,
) -> None:
    receiver, state = hostile
    port = receiver.port
    state[0], state[1] = plan, [secrets.signing, secrets.routing_key]
    monkeypatch.setenv("HOSTILE_SLACK_URL", secrets.urls(port)["slack"])
    monkeypatch.setenv("HOSTILE_API_KEY", secrets.api_key)
    found = destinations(secrets, secrets.urls(port), f"http://localhost:{port}/v2/enqueue")
    earlier = len(receiver.received())

    summary, written = deliver(moto, found)

    # The receiver answered as planned (its handler did not fail), every send failed and was
    # kept, with why.
    answered = receiver.received()[earlier:]
    assert len(answered) >= 3 and {r.status for r in answered} == {plan.status}
    assert summary.alerts_dead_lettered == 3, summary.fields()
    assert sum(f"answered HTTP {plan.status}: " in text for text in written) >= 3
    assert_no_leak(written, secrets.values(port))


def _slow(request: Request) -> Reply:
    return Reply(500, body=request.path, delay=1.0)


def _truncated(request: Request) -> Reply:
    return Reply(500, body=f"partial {request.path} {request.body.decode()}", truncated=True)


@pytest.mark.parametrize("failure", ["refused", "timeout", "truncated", "invalid_url", "dns"])
def test_a_send_that_fails_without_an_answer_shows_no_secret(
    moto: Moto, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    secrets = make_secrets(42)
    respond: Callable[[Request], Reply] = {"timeout": _slow, "truncated": _truncated}.get(
        failure, lambda request: Reply(200)
    )
    with HttpStandIn.running(respond=respond) as receiver:
        port = receiver.port
        if failure == "refused":
            port = int(urlsplit(refused_url()).port or 0)
        elif failure == "invalid_url":
            port = 99999
        urls = secrets.urls(port)
        if failure == "dns":
            urls = {
                k: v.replace("localhost", f"{secrets.slack_token}.invalid") for k, v in urls.items()
            }
        monkeypatch.setenv("HOSTILE_SLACK_URL", urls["slack"])
        monkeypatch.setenv("HOSTILE_API_KEY", secrets.api_key)
        found = destinations(secrets, urls, urls["hook"].replace("/hooks/", "/v2/enqueue/"))
        quick = dataclasses.replace(POLICY, send_timeout=0.3, retries=0)
        summary, written = deliver(moto, found, quick if failure == "timeout" else POLICY)

    assert summary.alerts_dead_lettered == 3, summary.fields()
    values = secrets.values(port) + list(urls.values())
    assert_no_leak(written, values)


def test_a_scan_through_the_cli_prints_and_logs_no_secret(
    moto: Moto,
    hostile: tuple[HttpStandIn, list[Any]],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    receiver, state = hostile
    secrets = make_secrets(7)
    state[0] = Hostile(
        status=400,
        chains=(("raw",), ("percent",), ("json_slash",), ("html_numeric",), ("base64",)),
        seed=7,
        pad=EXCERPT_CHARS - 5,
        wrap="json",
        cookies=True,
    )
    state[1] = [secrets.signing, secrets.routing_key]
    urls = secrets.urls(receiver.port)
    monkeypatch.setenv("TATTLETAIL_WORKERS", "1")
    monkeypatch.setenv("TATTLETAIL_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("TATTLETAIL_RETRY_BASE", "0.001")
    monkeypatch.setenv("TATTLETAIL_RETRY_CAP", "0.002")
    for name in ("TATTLETAIL_CONFIG", "S3_CONFIG_BUCKET", "S3_CONFIG_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOSTILE_API_KEY", secrets.api_key)
    config = tmp_path / "tattletail.toml"
    config.write_text(
        f"""
[[rule]]
name = "Create User"
jq_match = 'select(.eventName == "CreateUser")'
description = "A new IAM user has been created"
destinations = ["Slack", "Hook", "Pager"]

[[destination]]
id = "Slack"
type = "slack_webhook"
webhook_url = "{urls["slack"]}"

[[destination]]
id = "Hook"
type = "webhook"
url = "{urls["hook"]}"
secret = "{secrets.signing}"
headers = {{ Authorization = "Bearer {secrets.bearer}", X-Api-Key = "env:HOSTILE_API_KEY" }}

[[destination]]
id = "Pager"
type = "pagerduty"
routing_key = "{secrets.routing_key}"
url = "http://localhost:{receiver.port}/v2/enqueue"
"""
    )

    with every_log_record() as records:
        code = main(["scan", "--config", str(config), str(SEED_LOG)])
    output = capfd.readouterr()

    assert code == 1  # every delivery failed
    assert "3 failed" in output.err
    written = [output.out, output.err, *(rendered(record) for record in records)]
    assert_no_leak(written, secrets.values(receiver.port))
