"""`webhook`: the JSON body within its budget, config validation, and real POSTs to a local
receiver that checks the HMAC signature the way a real one would. The URL, the signing secret
and header values are secrets: no error or repr may carry them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import orjson
import pytest

from tattletail.destinations import DeliveryError, DestinationConfigError
from tattletail.destinations.webhook import (
    ALERT_ID_HEADER,
    BODY_LIMIT,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookDestination,
    render,
    sign,
    verify,
)
from tattletail.secret import Secret
from tests.destinations.destination_support import (
    assert_is_marker,
    delivery,
    largest_real_records,
    make_alert,
    synthetic_record,
)
from tests.destinations.http_stand_in import HttpStandIn, Reply, refused_url

SIGNING_SECRET = "wh-s1gn1ng-s3cr3t-value"
HOOK_PATH = "/hooks/T0K3N-in-the-path"


@pytest.fixture
def receiver() -> Iterator[HttpStandIn]:
    with HttpStandIn.running(Reply(204, body="")) as stand_in:
        yield stand_in


def destination(url: str, **settings: Any) -> WebhookDestination:
    return WebhookDestination.from_config("Hook", {"url": url, **settings})


def test_body_is_the_alert_message_with_its_id_and_source() -> None:
    alert = make_alert()

    body = orjson.loads(render(alert, "Hook"))

    assert body == {
        **alert.message(),
        "alert_id": alert.alert_id("Hook"),
        "source": "s3://trail-bucket/AWSLogs/1.json.gz",
    }


@pytest.mark.parametrize("record", largest_real_records(), ids=lambda r: r["eventName"])
def test_largest_real_records_are_sent_whole(record: dict[str, Any]) -> None:
    assert orjson.loads(render(make_alert(record=record), "Hook"))["record"] == record


def test_a_1_mb_record_is_replaced_by_its_marker_within_the_budget() -> None:
    record = synthetic_record()
    alert = make_alert(record=record)

    body = render(alert, "Hook")

    assert len(body) <= BODY_LIMIT
    sent = orjson.loads(body)
    assert_is_marker(sent["record"], record)
    assert (sent["name"], sent["description"], sent["match"]) == (
        "Create User",
        "A new IAM user has been created",
        "username: user1",
    )
    assert render(alert, "Hook") == body  # deterministic


def test_signature_covers_timestamp_and_exact_body() -> None:
    body = b'{"a":1}'
    signature = sign("k", "1700000000", body)

    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify("k", "1700000000", body, signature, now=lambda: 1700000000)
    assert not verify("k", "1700000000", b'{"a":2}', signature, now=lambda: 1700000000)
    assert not verify("other", "1700000000", body, signature, now=lambda: 1700000000)
    # A replay: the same signed request, ten minutes later.
    assert not verify("k", "1700000000", body, signature, now=lambda: 1700000600)
    assert not verify("k", "1700000001", body, signature, now=lambda: 1700000000)


async def test_post_is_signed_and_verifiable_by_the_receiver(receiver: HttpStandIn) -> None:
    alert = make_alert()
    hook = destination(
        receiver.url(HOOK_PATH),
        secret=SIGNING_SECRET,
        headers={"Authorization": "Bearer t0k3n-value", "X-Team": "security"},
    )

    async with delivery() as context:
        await hook.send(alert, context)

    [request] = receiver.received()
    assert request.path == HOOK_PATH
    assert request.body == render(alert, "Hook")
    assert request.headers["Content-Type"].startswith("application/json")
    assert request.headers[ALERT_ID_HEADER] == alert.alert_id("Hook")
    assert request.headers["Authorization"] == "Bearer t0k3n-value"
    assert request.headers["X-Team"] == "security"
    timestamp = request.headers[TIMESTAMP_HEADER]
    assert abs(int(timestamp) - time.time()) < 60
    # What the receiver does with the bytes it got.
    assert verify(SIGNING_SECRET, timestamp, request.body, request.headers[SIGNATURE_HEADER])
    assert not verify("wrong", timestamp, request.body, request.headers[SIGNATURE_HEADER])


async def test_unsigned_webhook_sends_no_signature_headers(receiver: HttpStandIn) -> None:
    async with delivery() as context:
        await destination(receiver.url()).send(make_alert(), context)

    [request] = receiver.received()
    assert SIGNATURE_HEADER not in request.headers
    assert TIMESTAMP_HEADER not in request.headers


@pytest.mark.parametrize("status", [200, 201, 202, 204])
async def test_any_2xx_is_delivered(receiver: HttpStandIn, status: int) -> None:
    receiver.reply_next(status, body="")

    async with delivery() as context:
        await destination(receiver.url()).send(make_alert(), context)

    assert [request.status for request in receiver.received()] == [status]


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (301, False),
        (400, False),
        (401, False),
        (404, False),
        (413, False),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
    ],
)
async def test_error_status_is_classified_and_never_names_the_url(
    receiver: HttpStandIn, status: int, retryable: bool
) -> None:
    # Like many frameworks' error pages, the answer quotes the path (which holds a token).
    headers = {"Location": "https://elsewhere.example/"} if status == 301 else {}
    receiver.reply_next(status, headers=headers, body=f"Cannot POST {HOOK_PATH} (t0k3n-value)")

    async with delivery() as context:
        with pytest.raises(DeliveryError) as raised:
            await destination(
                receiver.url(HOOK_PATH), headers={"Authorization": "t0k3n-value"}
            ).send(make_alert(), context)

    message = str(raised.value)
    assert message.startswith(f"webhook answered HTTP {status}: Cannot POST [redacted]")
    assert HOOK_PATH not in message and "T0K3N" not in message and "t0k3n-value" not in message
    assert "127.0.0.1" not in message
    assert raised.value.retryable is retryable
    assert raised.value.__cause__ is None
    # A redirect is not followed: the alert goes nowhere but the configured URL.
    assert len(receiver.received()) == 1


@pytest.mark.parametrize(
    "echo",
    [
        # The examples: the URL JSON-escaped and HTML-escaped, a token on its own...
        lambda url, token: orjson.dumps(url).decode().replace("/", "\\/"),
        lambda url, token: url.replace("&", "&amp;").replace("/", "&#x2F;"),
        lambda url, token: f"invalid token {token}",
        # ... percent-encoded (either case), in base64, upper-cased, a query value alone.
        lambda url, token: url.replace("/", "%2f").replace("?", "%3F"),
        lambda url, token: __import__("base64").b64encode(url.encode()).decode(),
        lambda url, token: url.upper(),
        lambda url, token: "bad signature sig=QueryS1gnature!",
    ],
    ids=["json", "html", "token", "percent", "base64", "upper", "query_value"],
)
async def test_an_answer_echoing_a_secret_in_any_encoding_shows_none_of_it(
    receiver: HttpStandIn, echo: Any
) -> None:
    token = "Bearer-T0ken-Value-1234"
    url = receiver.url(f"{HOOK_PATH}?sig=QueryS1gnature")
    receiver.reply_next(400, body=f"upstream says: {echo(url, token)}")

    async with delivery() as context:
        with pytest.raises(DeliveryError) as raised:
            await destination(url, headers={"Authorization": token}).send(make_alert(), context)

    message = str(raised.value)
    assert message.startswith("webhook answered HTTP 400: upstream says: ")
    assert "[redacted]" in message and "127.0.0.1" not in message
    for secret in ("T0K3N-in-the-path", "QueryS1gnature", token, "Value-1234"):
        assert secret.lower() not in message.lower()
    assert "base64" not in message and "aHR0c" not in message


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("2", 2.0),
        ("0.5", 0.5),
        (timedelta(seconds=30), 30.0),
        (datetime(2001, 1, 1, tzinfo=UTC), 0.0),
        ("later", None),
    ],
)
async def test_retry_after_in_seconds_or_as_an_http_date_is_honoured(
    receiver: HttpStandIn, header: str | timedelta | datetime, expected: float | None
) -> None:
    if isinstance(header, timedelta):
        header = datetime.now(UTC) + header
    if isinstance(header, datetime):
        header = format_datetime(header, usegmt=True)
    receiver.reply_next(503, headers={"Retry-After": header})

    async with delivery() as context:
        with pytest.raises(DeliveryError) as raised:
            await destination(receiver.url()).send(make_alert(), context)

    assert raised.value.retryable
    if expected is None:
        assert raised.value.retry_after is None
    else:
        # An HTTP-date has whole seconds.
        assert raised.value.retry_after == pytest.approx(expected, abs=1.1)


async def test_timeout_is_retryable(receiver: HttpStandIn) -> None:
    receiver.reply_next(200, delay=2.0)

    async with delivery(timeout=0.2) as context:
        with pytest.raises(DeliveryError) as raised:
            await destination(receiver.url(HOOK_PATH)).send(make_alert(), context)

    assert raised.value.retryable
    assert HOOK_PATH not in str(raised.value)


async def test_connection_refused_is_retryable_and_never_names_the_url() -> None:
    url = refused_url(HOOK_PATH)

    async with delivery() as context:
        with pytest.raises(DeliveryError) as raised:
            await destination(url).send(make_alert(), context)

    assert str(raised.value).startswith("webhook request failed: Client")
    assert HOOK_PATH not in str(raised.value) and "127.0.0.1" not in str(raised.value)
    assert raised.value.retryable


async def test_url_signing_secret_and_headers_may_come_from_the_environment(
    receiver: HttpStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_URL", receiver.url(HOOK_PATH))
    monkeypatch.setenv("HOOK_SECRET", SIGNING_SECRET)
    monkeypatch.setenv("HOOK_TOKEN", "Bearer from-env")
    hook = destination(
        "env:HOOK_URL", secret="env:HOOK_SECRET", headers={"Authorization": "env:HOOK_TOKEN"}
    )

    async with delivery() as context:
        await hook.send(make_alert(), context)

    [request] = receiver.received()
    assert request.headers["Authorization"] == "Bearer from-env"
    assert verify(
        SIGNING_SECRET,
        request.headers[TIMESTAMP_HEADER],
        request.body,
        request.headers[SIGNATURE_HEADER],
    )


def test_repr_shows_no_url_secret_or_header_value() -> None:
    hook = destination(
        "https://hooks.example.com/T0K3N",
        secret=SIGNING_SECRET,
        headers={"Authorization": "Bearer t0k3n-value"},
    )

    shown = repr(hook) + str(hook)
    assert "T0K3N" not in shown and SIGNING_SECRET not in shown and "t0k3n-value" not in shown
    assert "Authorization" in shown
    assert hook.url == Secret("https://hooks.example.com/T0K3N")


def test_default_rate_is_ten_a_second() -> None:
    assert destination("https://hooks.example.com/x").rate() == (10.0, 10)


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({}, "destination.url must be set"),
        ({"url": "ftp://x"}, "destination.url must be an http(s) URL"),
        ({"url": "ssm:"}, "`ssm:` must be followed by a name"),
        ({"url": "https://x", "headers": "Authorization: x"}, "must be a table"),
        ({"url": "https://x", "headers": {"Bad Name": "x"}}, "'Bad Name' is not a valid header"),
        ({"url": "https://x", "headers": {"Content-Type": "x"}}, "set by Tattletail itself"),
        ({"url": "https://x", "headers": {"X-Tattletail-Signature": "x"}}, "set by Tattletail"),
        ({"url": "https://x", "headers": {"X-A": 1}}, "headers.X-A must be a non-empty string"),
        ({"url": "https://x", "headers": {"X-A": "a\r\nX-B: b"}}, "must be one line"),
        ({"url": "https://x", "secret": ""}, "destination.secret must be set"),
        ({"url": "https://x", "secret": "env:1BAD"}, "not an environment variable name"),
    ],
)
def test_config_problems_are_reported(settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(DestinationConfigError) as raised:
        WebhookDestination.from_config("Hook", settings)

    assert problem in str(raised.value)
    assert "a\r\nX-B" not in str(raised.value)
