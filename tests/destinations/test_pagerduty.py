"""`pagerduty`: the Events API v2 body, checked field by field, and real POSTs to a local
stand-in that answers like PagerDuty (202 Accepted, 400 invalid event, 429, 5xx). The routing
key is a secret: no error or repr may carry it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tattletail.destinations import DeliveryError, DestinationConfigError
from tattletail.destinations.pagerduty import (
    BODY_LIMIT,
    EVENTS_URL,
    PagerDutyDestination,
    render,
)
from tests.destinations.destination_support import (
    CREATE_USER,
    assert_is_marker,
    delivery,
    largest_real_records,
    make_alert,
    synthetic_record,
)
from tests.destinations.http_stand_in import HttpStandIn, Reply

ROUTING_KEY = "R0UT1NGK3Y0123456789abcdef012345"
ACCEPTED = '{"status":"success","message":"Event processed","dedup_key":"x"}'


@pytest.fixture
def pagerduty() -> Iterator[HttpStandIn]:
    with HttpStandIn.running(Reply(202, body=ACCEPTED)) as stand_in:
        yield stand_in


def destination(url: str) -> PagerDutyDestination:
    return PagerDutyDestination.from_config("Pager", {"routing_key": ROUTING_KEY, "url": url})


def test_event_has_the_events_api_v2_shape() -> None:
    alert = make_alert(severity="high", runbook="https://wiki.example.com/create-user")

    body = orjson.loads(render(alert, "Pager", ROUTING_KEY))

    assert body == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": alert.alert_id("Pager"),
        "client": "Tattletail",
        "links": [{"href": "https://wiki.example.com/create-user", "text": "Runbook"}],
        "payload": {
            "summary": "Create User",
            "source": "s3://trail-bucket/AWSLogs/1.json.gz",
            "severity": "error",
            "timestamp": CREATE_USER["eventTime"],
            "component": "iam.amazonaws.com",
            "class": "CreateUser",
            "group": CREATE_USER["recipientAccountId"],
            "custom_details": alert.message(),
        },
    }


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        ("info", "info"),
        ("low", "warning"),
        ("medium", "warning"),
        ("high", "error"),
        ("critical", "critical"),
    ],
)
def test_severity_is_mapped_onto_pagerdutys_four(severity: str, expected: str) -> None:
    body = orjson.loads(render(make_alert(severity=severity), "Pager", ROUTING_KEY))

    assert body["payload"]["severity"] == expected


def test_summary_is_the_title_on_one_line_within_1024_characters() -> None:
    body = orjson.loads(render(make_alert(title="user1\ncreated " + "x" * 2000), "P", ROUTING_KEY))

    summary = body["payload"]["summary"]
    assert len(summary) == 1024
    assert summary.startswith("user1 created xxx") and summary.endswith("… (truncated)")


def test_dedup_key_is_stable_across_retries_and_distinct_per_destination() -> None:
    first = orjson.loads(render(make_alert(), "Pager", ROUTING_KEY))["dedup_key"]
    again = orjson.loads(render(make_alert(), "Pager", ROUTING_KEY))["dedup_key"]
    other = orjson.loads(render(make_alert(), "Pager 2", ROUTING_KEY))["dedup_key"]

    assert first == again != other


@pytest.mark.parametrize("record", largest_real_records(), ids=lambda r: r["eventName"])
def test_largest_real_records_are_sent_whole(record: dict[str, Any]) -> None:
    body = orjson.loads(render(make_alert(record=record), "Pager", ROUTING_KEY))

    assert body["payload"]["custom_details"]["record"] == record


def test_a_1_mb_record_is_cut_to_pagerdutys_512_kb() -> None:
    record = synthetic_record()

    encoded = render(make_alert(record=record), "Pager", ROUTING_KEY)

    assert len(encoded) <= BODY_LIMIT
    body = orjson.loads(encoded)
    assert_is_marker(body["payload"]["custom_details"]["record"], record)
    assert body["payload"]["custom_details"]["match"] == "username: user1"
    assert body["routing_key"] == ROUTING_KEY and body["event_action"] == "trigger"


async def test_send_posts_the_event_and_202_is_success(pagerduty: HttpStandIn) -> None:
    alert = make_alert(severity="critical")

    async with delivery() as context:
        await destination(pagerduty.url("/v2/enqueue")).send(alert, context)

    [request] = pagerduty.received()
    assert request.path == "/v2/enqueue"
    assert request.headers["Content-Type"] == "application/json"
    assert request.body == render(alert, "Pager", ROUTING_KEY)
    assert request.json()["payload"]["severity"] == "critical"


@pytest.mark.parametrize(
    ("status", "retryable"), [(400, False), (403, False), (429, True), (500, True), (503, True)]
)
async def test_failure_is_classified_and_never_shows_the_routing_key(
    pagerduty: HttpStandIn, status: int, retryable: bool
) -> None:
    # PagerDuty's 400 names what was wrong, and may quote the key.
    pagerduty.reply_next(
        status,
        headers={"Retry-After": "3"} if status == 429 else {},
        body=f'{{"status":"invalid event","errors":["routing_key {ROUTING_KEY} is unknown"]}}',
    )

    async with delivery() as context:
        with pytest.raises(DeliveryError) as raised:
            await destination(pagerduty.url()).send(make_alert(), context)

    message = str(raised.value)
    assert message.startswith(f"pagerduty answered HTTP {status}: ")
    assert ROUTING_KEY not in message and "[redacted]" in message
    assert raised.value.retryable is retryable
    assert raised.value.retry_after == (3.0 if status == 429 else None)


async def test_routing_key_may_come_from_the_environment(
    pagerduty: HttpStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PD_ROUTING_KEY", ROUTING_KEY)
    pager = PagerDutyDestination.from_config(
        "Pager", {"routing_key": "env:PD_ROUTING_KEY", "url": pagerduty.url()}
    )

    async with delivery() as context:
        await pager.send(make_alert(), context)

    [request] = pagerduty.received()
    assert request.json()["routing_key"] == ROUTING_KEY
    assert ROUTING_KEY not in repr(pager)


def test_defaults_are_pagerdutys_endpoint_and_120_events_a_minute() -> None:
    pager = PagerDutyDestination.build("Pager", {"routing_key": ROUTING_KEY})

    assert pager.url is None and EVENTS_URL == "https://events.pagerduty.com/v2/enqueue"
    assert pager.rate() == (2.0, 10)
    assert ROUTING_KEY not in repr(pager) and ROUTING_KEY not in str(pager)


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({}, "destination.routing_key must be set"),
        ({"routing_key": "  "}, "destination.routing_key must be set"),
        ({"routing_key": ROUTING_KEY, "url": "events.pagerduty.com"}, "must be an http(s) URL"),
        ({"routing_key": "secretsmanager:"}, "`secretsmanager:` must be followed by a name"),
    ],
)
def test_config_problems_are_reported(settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(DestinationConfigError) as raised:
        PagerDutyDestination.from_config("Pager", settings)

    assert problem in str(raised.value)
