"""Secrets: references (`env:`, `ssm:`, `secretsmanager:`) resolved once per container from real
(moto) SSM Parameter Store and Secrets Manager, cached, and never written anywhere: not in a
repr, an error, or any log line of any library."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tattletail import config
from tattletail.aws import AwsClients
from tattletail.destinations import DeliveryContext, DeliveryError
from tattletail.destinations.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookDestination,
    verify,
)
from tattletail.dispatch import DeliveryPolicy, Dispatcher
from tattletail.logs import LOGGER_NAME, JsonFormatter
from tattletail.retry import Backoff
from tattletail.secret import FAILURE_TTL_SECONDS, Secret, SecretResolver, SecretUnavailable
from tattletail.summary import RunSummary
from tests.destinations.destination_support import make_alert
from tests.destinations.http_stand_in import HttpStandIn, Reply
from tests.support import Moto

HOOK_URL_PATH = "/hooks/ssm-kept-t0k3n-path"
SIGNING_KEY = "sm-kept-s1gn1ng-k3y"
PARAMETER = "/tattletail/webhook-url"
SECRET_NAME = "tattletail/webhook"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("text", "kind", "reference"),
    [
        ("https://hooks.example.com/x", "plain", "the configured value"),
        ("env:SLACK_URL", "env", "env:SLACK_URL"),
        ("ssm:/tattletail/slack", "ssm", "ssm:/tattletail/slack"),
        ("secretsmanager:arn:aws:secretsmanager:us-east-1:1:secret:x", "secretsmanager", None),
    ],
)
def test_parse_tells_references_from_values(text: str, kind: str, reference: str | None) -> None:
    secret = Secret.parse(text)

    assert secret.kind == kind
    assert secret.reference == (reference or text)
    if kind == "plain":
        assert secret.reveal() == text
        assert repr(secret) == str(secret) == "Secret('**redacted**')"
    else:
        assert repr(secret) == f"Secret({text!r})"
        with pytest.raises(RuntimeError, match="must be resolved"):
            secret.reveal()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("env:", "`env:` must be followed by a name"),
        ("ssm:", "`ssm:` must be followed by a name"),
        ("secretsmanager:#key", "`secretsmanager:` must be followed by a name"),
        ("env:NOT-VALID", "'env:NOT-VALID' is not an environment variable name"),
    ],
)
def test_malformed_references_are_config_problems(text: str, problem: str) -> None:
    assert Secret.parse(text).problems("webhook_url") == [f"destination.webhook_url: {problem}"]


async def test_env_reference_is_read_from_the_environment() -> None:
    resolver = SecretResolver(AwsClients("http://127.0.0.1:9"), environ={"HOOK": "value-1"})

    assert await resolver.resolve(Secret.parse("env:HOOK")) == "value-1"
    assert await resolver.resolve(Secret.parse("plain-value")) == "plain-value"
    with pytest.raises(SecretUnavailable) as raised:
        await resolver.resolve(Secret.parse("env:MISSING"))
    assert str(raised.value) == "secret env:MISSING could not be resolved: the variable is not set"
    assert raised.value.retryable is False


@pytest.fixture
async def aws(moto: Moto) -> Any:
    clients = AwsClients(moto.endpoint)
    yield clients
    await clients.close()


async def test_ssm_securestring_is_decrypted_and_cached(moto: Moto, aws: AwsClients) -> None:
    ssm = moto.client("ssm")
    ssm.put_parameter(Name=PARAMETER, Value="https://hooks.example.com/1", Type="SecureString")
    resolver = SecretResolver(aws)
    secret = Secret.parse(f"ssm:{PARAMETER}")

    assert await resolver.resolve(secret) == "https://hooks.example.com/1"
    # Changed in SSM afterwards: the container keeps what it resolved (once per container).
    ssm.put_parameter(Name=PARAMETER, Value="https://hooks.example.com/2", Overwrite=True)
    assert await resolver.resolve(secret) == "https://hooks.example.com/1"
    # Until the service refuses it: then it is looked up again.
    resolver.forget(secret)
    assert await resolver.resolve(secret) == "https://hooks.example.com/2"


async def test_secrets_manager_string_or_one_key_of_a_json_secret(
    moto: Moto, aws: AwsClients
) -> None:
    manager = moto.client("secretsmanager")
    arn = manager.create_secret(Name="plain", SecretString="s3cr3t-plain")["ARN"]
    manager.create_secret(Name=SECRET_NAME, SecretString='{"url": "https://x", "key": "k3y"}')
    resolver = SecretResolver(aws)

    assert await resolver.resolve(Secret.parse("secretsmanager:plain")) == "s3cr3t-plain"
    assert await resolver.resolve(Secret.parse(f"secretsmanager:{arn}")) == "s3cr3t-plain"
    assert await resolver.resolve(Secret.parse(f"secretsmanager:{SECRET_NAME}#key")) == "k3y"
    with pytest.raises(SecretUnavailable) as raised:
        await resolver.resolve(Secret.parse(f"secretsmanager:{SECRET_NAME}#missing"))
    assert str(raised.value) == (
        f"secret secretsmanager:{SECRET_NAME}#missing could not be resolved: "
        "the secret is not a JSON object with a string 'missing'"
    )
    assert "k3y" not in str(raised.value)


@pytest.mark.parametrize(
    ("reference", "code"),
    [
        (f"ssm:{PARAMETER}", "ParameterNotFound"),
        ("secretsmanager:no-such-secret", "ResourceNotFoundException"),
    ],
)
async def test_missing_secret_is_permanent_names_the_reference_and_is_retried_later(
    moto: Moto, aws: AwsClients, reference: str, code: str
) -> None:
    clock = FakeClock()
    resolver = SecretResolver(aws, clock=clock)
    secret = Secret.parse(reference)

    with pytest.raises(SecretUnavailable) as raised:
        await resolver.resolve(secret)
    assert str(raised.value) == f"secret {reference} could not be resolved: {code}"
    assert raised.value.retryable is False

    # Created now: the failure is remembered for a while (no lookup per alert), then retried.
    if reference.startswith("ssm:"):
        moto.client("ssm").put_parameter(Name=PARAMETER, Value="now-here", Type="SecureString")
    else:
        moto.client("secretsmanager").create_secret(Name="no-such-secret", SecretString="now-here")
    with pytest.raises(SecretUnavailable):
        await resolver.resolve(secret)
    clock.now += FAILURE_TTL_SECONDS + 1
    assert await resolver.resolve(secret) == "now-here"


class CountingSsm:
    """An SSM client that answers slowly, failing first with `errors`, and counts calls."""

    def __init__(self, errors: list[Exception]) -> None:
        self.calls = 0
        self.errors = errors

    async def get_parameter(self, Name: str, WithDecryption: bool) -> dict[str, Any]:  # noqa: N803
        self.calls += 1
        await asyncio.sleep(0.05)
        if self.errors:
            raise self.errors.pop(0)
        assert WithDecryption
        return {"Parameter": {"Name": Name, "Value": "v"}}


class StubAws:
    def __init__(self, ssm: CountingSsm) -> None:
        self.ssm = ssm

    async def client(self, service: str) -> Any:
        return self.ssm


async def test_concurrent_sends_share_one_lookup() -> None:
    ssm = CountingSsm([])
    resolver = SecretResolver(StubAws(ssm))  # type: ignore[arg-type]

    values = await asyncio.gather(*(resolver.resolve(Secret.parse("ssm:/p")) for _ in range(20)))

    assert values == ["v"] * 20
    assert ssm.calls == 1


async def test_throttled_lookup_is_a_retryable_error_and_is_not_remembered() -> None:
    throttled = ClientError({"Error": {"Code": "ThrottlingException"}}, "GetParameter")
    ssm = CountingSsm([throttled])
    context = DeliveryContext(StubAws(ssm), 5.0)  # type: ignore[arg-type]

    with pytest.raises(DeliveryError) as raised:
        await context.reveal(Secret.parse("ssm:/p"))
    assert str(raised.value) == "secret ssm:/p could not be resolved: ThrottlingException"
    assert raised.value.retryable is True
    assert await context.reveal(Secret.parse("ssm:/p")) == "v"
    assert ssm.calls == 2


@pytest.fixture
def tattletail_lines() -> Iterator[list[str]]:
    """Tattletail's own log lines as its JSON handler writes them (its logger may not
    propagate to the root logger: the Lambda handler configures it so)."""
    lines: list[str] = []
    formatter = JsonFormatter()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(formatter.format(record))

    logger = logging.getLogger(LOGGER_NAME)
    handler, level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


def library_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every other library's log lines (botocore, aiobotocore, aiohttp, ...) but the
    stand-in's access log, which shows the path it was sent to: that is the receiver's."""
    return [
        caplog.handler.format(record)
        for record in caplog.records
        if not record.name.startswith("aiohttp.access")
    ]


async def test_secrets_from_ssm_and_secrets_manager_are_used_and_never_logged(
    moto: Moto,
    tattletail_lines: list[str],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)  # botocore at DEBUG logs whole responses
    with HttpStandIn.running(Reply(200, body="ok")) as receiver:
        hook_url = receiver.url(HOOK_URL_PATH)
        moto.client("ssm").put_parameter(Name=PARAMETER, Value=hook_url, Type="SecureString")
        moto.client("secretsmanager").create_secret(
            Name=SECRET_NAME, SecretString=f'{{"key": "{SIGNING_KEY}"}}'
        )
        hook = WebhookDestination.from_config(
            "Hook",
            {"url": f"ssm:{PARAMETER}", "secret": f"secretsmanager:{SECRET_NAME}#key"},
        )
        caplog.clear()  # the test's own boto3 calls above logged the values they stored
        # The receiver fails the first two tries (quoting the path it was sent to), then takes
        # the alert: retries and failures are logged too.
        receiver.reply_next(500, times=2, body=f"upstream broke at {HOOK_URL_PATH}")
        aws = AwsClients(moto.endpoint)
        context = DeliveryContext(aws, 5.0)
        summary = RunSummary()
        policy = DeliveryPolicy(
            concurrency=2,
            send_timeout=5.0,
            retries=3,
            retry_budget=30.0,
            backoff=Backoff(0.01, 0.02),
            flood_threshold=100,
        )
        try:
            dispatcher = Dispatcher({"Hook": hook}, context, summary, policy)
            await dispatcher.deliver(make_alert(destinations=("Hook",)))
            await dispatcher.finish()
        finally:
            await context.close()
            await aws.close()
        requests = receiver.received()

    assert [request.status for request in requests] == [500, 500, 200]
    assert all(
        verify(SIGNING_KEY, r.headers[TIMESTAMP_HEADER], r.body, r.headers[SIGNATURE_HEADER])
        for r in requests
    )
    assert summary.alerts_sent == 1 and summary.alerts_retried == 2
    output = capfd.readouterr()
    logged = [
        *tattletail_lines,
        *library_lines(caplog),
        *output.out.splitlines(),
        *output.err.splitlines(),
    ]
    assert any("alert_delivery_retry" in line for line in logged)
    assert any("secret_resolved" in line and PARAMETER in line for line in logged)
    for line in logged:
        assert SIGNING_KEY not in line
        assert HOOK_URL_PATH not in line
        assert hook_url not in line


def test_a_config_dump_shows_no_secret_value() -> None:
    loaded = config.parse(
        """
dead_letter = "DLQ"

[[rule]]
name = "r"
jq_match = "."
destinations = ["Slack", "Hook", "Pager", "DLQ"]

[[destination]]
id = "Slack"
type = "slack_webhook"
webhook_url = "https://hooks.slack.com/services/T0/B0/sl4ck-t0k3n"

[[destination]]
id = "Hook"
type = "webhook"
url = "https://hooks.example.com/h00k-t0k3n"
secret = "s1gn1ng-s3cr3t"
headers = { Authorization = "Bearer h34d3r-t0k3n" }

[[destination]]
id = "Pager"
type = "pagerduty"
routing_key = "secretsmanager:pagerduty#routing_key"

[[destination]]
id = "DLQ"
type = "sqs"
queue_url = "https://sqs.us-east-1.amazonaws.com/123456789012/dead-letters"
"""
    )

    dump = repr(loaded) + str(loaded)
    for value in ("sl4ck-t0k3n", "h00k-t0k3n", "s1gn1ng-s3cr3t", "h34d3r-t0k3n"):
        assert value not in dump
    # A reference is where to look, not the value: it may be shown.
    assert "secretsmanager:pagerduty#routing_key" in dump
    assert loaded.dead_letter == "DLQ"


def test_only_sqs_or_s3_can_keep_dead_letters() -> None:
    with pytest.raises(config.ConfigError) as raised:
        config.parse(
            """
dead_letter = "Hook"

[[destination]]
id = "Hook"
type = "webhook"
url = "https://hooks.example.com/x"
"""
        )

    assert "which cannot keep dead letters (use one of: s3, sqs)" in str(raised.value)
