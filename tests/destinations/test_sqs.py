"""`sqs`: SendMessage to real (moto) queues, read back; the 256 KiB budget; dead letters."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tattletail.destinations import DestinationConfigError
from tattletail.destinations.sqs import (
    BODY_LIMIT,
    SqsDestination,
    encode,
    render,
    render_dead_letter,
)
from tattletail.retry import classify
from tests.destinations.destination_support import (
    assert_is_marker,
    delivery,
    largest_real_records,
    make_alert,
    synthetic_record,
)
from tests.support import Moto


def read_all(moto: Moto, queue_url: str) -> list[dict[str, Any]]:
    sqs = moto.client("sqs")
    messages = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages", [])
        if not batch:
            return messages
        for message in batch:
            messages.append(message)
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def dead_letter(record: dict[str, Any] | None = None) -> dict[str, Any]:
    alert = make_alert(record=record)
    return {
        "alert_id": alert.alert_id("Slack"),
        "failed_destination": "Slack",
        "failed_destination_type": "slack_webhook",
        "error": "slack webhook answered HTTP 500: internal_error",
        "source": alert.source,
        "alert": {**alert.message(), "severity": alert.severity},
    }


async def test_send_puts_the_alert_json_on_the_queue(moto: Moto) -> None:
    queue_url = moto.client("sqs").create_queue(QueueName="alerts")["QueueUrl"]
    alert = make_alert()

    async with delivery(moto.endpoint) as context:
        await SqsDestination(id="Queue", queue_url=queue_url).send(alert, context)

    [message] = read_all(moto, queue_url)
    assert json.loads(message["Body"]) == {
        **alert.message(),
        "alert_id": alert.alert_id("Queue"),
        "source": alert.source,
    }


async def test_fifo_queue_gets_the_alert_id_as_deduplication_id(moto: Moto) -> None:
    queue_url = moto.client("sqs").create_queue(
        QueueName="alerts.fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    queue = SqsDestination(id="Queue", queue_url=queue_url)
    alert = make_alert(name="Create User / IAM")

    async with delivery(moto.endpoint) as context:
        await queue.send(alert, context)
        await queue.send(alert, context)  # a retry after a lost answer: dropped by SQS

    [message] = read_all(moto, queue_url)
    assert message["Attributes"]["MessageDeduplicationId"] == alert.alert_id("Queue")
    assert message["Attributes"]["MessageGroupId"] == "Create-User-/-IAM"


@pytest.mark.parametrize("record", largest_real_records(), ids=lambda r: r["eventName"])
def test_largest_real_records_are_sent_whole(record: dict[str, Any]) -> None:
    assert json.loads(render(make_alert(record=record), "Queue"))["record"] == record


async def test_a_300_kb_record_is_replaced_by_its_marker_and_delivered(moto: Moto) -> None:
    queue_url = moto.client("sqs").create_queue(QueueName="alerts")["QueueUrl"]
    record = synthetic_record(300 * 1024)

    async with delivery(moto.endpoint) as context:
        await SqsDestination(id="Queue", queue_url=queue_url).send(
            make_alert(record=record), context
        )

    [message] = read_all(moto, queue_url)
    assert len(message["Body"].encode()) <= BODY_LIMIT
    body = json.loads(message["Body"])
    assert_is_marker(body["record"], record)
    assert body["name"] == "Create User" and body["match"] == "username: user1"


def test_characters_sqs_refuses_are_escaped() -> None:
    body = encode({"record": {"userAgent": "odd \ufffe\uffff end"}})

    assert "\ufffe" not in body and "\uffff" not in body
    assert json.loads(body) == {"record": {"userAgent": "odd \ufffe\uffff end"}}


async def test_dead_letter_is_kept_whole_with_its_failure(moto: Moto) -> None:
    queue_url = moto.client("sqs").create_queue(QueueName="dead-letters")["QueueUrl"]
    document = dead_letter()

    async with delivery(moto.endpoint) as context:
        await SqsDestination(id="DLQ", queue_url=queue_url).send_dead_letter(document, context)

    [message] = read_all(moto, queue_url)
    assert json.loads(message["Body"]) == document


def test_oversized_dead_letter_keeps_everything_but_the_record() -> None:
    record = synthetic_record()
    document = dead_letter(record)

    body = render_dead_letter(document)

    assert len(body.encode()) <= BODY_LIMIT
    kept = json.loads(body)
    assert_is_marker(kept["alert"]["record"], record)
    assert {k: v for k, v in kept.items() if k != "alert"} == {
        k: v for k, v in document.items() if k != "alert"
    }


async def test_missing_queue_is_a_permanent_aws_error(moto: Moto) -> None:
    missing = f"{moto.endpoint}/123456789012/no-such-queue"

    async with delivery(moto.endpoint) as context:
        with pytest.raises(ClientError) as raised:
            await SqsDestination(id="Queue", queue_url=missing).send(make_alert(), context)

    assert classify(raised.value).retryable is False


def test_sqs_can_be_the_dead_letter_destination_and_has_a_default_rate() -> None:
    queue = SqsDestination.build("Queue", {"queue_url": "https://sqs.us-east-1.amazonaws.com/1/q"})

    assert queue.can_dead_letter
    assert queue.rate() == (300.0, 100)


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({}, "destination.queue_url must be set"),
        ({"queue_url": "alerts"}, "destination.queue_url must be the queue's URL"),
    ],
)
def test_config_problems_are_reported(settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(DestinationConfigError) as raised:
        SqsDestination.from_config("Queue", settings)

    assert problem in str(raised.value)
