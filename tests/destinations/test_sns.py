"""`sns`: the Publish request's rendering, and real publishes to the moto server read back
through an SQS queue subscribed to the topic."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tattletail.alerts import Alert
from tattletail.destinations import DestinationConfigError
from tattletail.destinations.sns import MESSAGE_LIMIT, SUBJECT_LIMIT, SnsDestination, render
from tests.destinations.destination_support import (
    CREATE_USER,
    assert_is_marker,
    largest_real_records,
    make_alert,
    synthetic_record,
)
from tests.destinations.destination_support import delivery as delivery_to
from tests.support import Moto

# The Go original's payload: every consumer of the topic relies on these.
ORIGINAL_KEYS = ("name", "description", "record", "match")


def test_message_has_the_original_keys() -> None:
    message = json.loads(render(make_alert())["Message"])

    assert {key: message[key] for key in ORIGINAL_KEYS} == {
        "name": "Create User",
        "description": "A new IAM user has been created",
        "record": CREATE_USER,
        "match": "username: user1",
    }
    # Anything else is the rule's metadata, added beside the original keys.
    assert message == make_alert().message()


def test_message_of_a_plain_select_rule_has_a_null_match() -> None:
    message = json.loads(render(make_alert(match=None))["Message"])

    assert message["match"] is None
    assert message["record"] == CREATE_USER


def test_subject_names_the_rule() -> None:
    assert render(make_alert())["Subject"] == "Tattletail: Create User"


def test_subject_of_a_long_multiline_rule_name_is_one_line_within_the_limit() -> None:
    subject = render(make_alert(name="Very\nlong\trule " + "x" * 300))["Subject"]

    assert len(subject) <= SUBJECT_LIMIT == 100
    assert "\n" not in subject and "\t" not in subject
    assert subject.startswith("Tattletail: Very long rule xxx")


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({}, "destination.sns_arn must be set to a non-empty string"),
        ({"sns_arn": "cloudtail_alert"}, "destination.sns_arn must be a full ARN"),
    ],
)
def test_config_without_a_full_arn_is_rejected(settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(DestinationConfigError) as raised:
        SnsDestination.from_config("Default SNS", settings)

    assert problem in str(raised.value)


def subscribed_queue(moto: Moto, topic_arn: str) -> str:
    sqs = moto.client("sqs")
    queue_url = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    moto.client("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return queue_url


async def test_send_publishes_the_rendered_alert_to_the_topic(moto: Moto) -> None:
    topic_arn = moto.client("sns").create_topic(Name="cloudtail_alert")["TopicArn"]
    queue_url = subscribed_queue(moto, topic_arn)
    alert = make_alert(name="Create User " + "y" * 150)

    async with delivery_to(moto.endpoint) as delivery:
        await SnsDestination(id="Default SNS", sns_arn=topic_arn).send(alert, delivery)

    messages = moto.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
    [notification] = [json.loads(m["Body"]) for m in messages["Messages"]]
    assert notification["TopicArn"] == topic_arn
    assert notification["Subject"] == render(alert)["Subject"]
    assert len(notification["Subject"]) == SUBJECT_LIMIT
    assert json.loads(notification["Message"]) == alert.message()


async def test_send_to_a_topic_that_does_not_exist_raises_the_aws_error(moto: Moto) -> None:
    missing = "arn:aws:sns:us-east-1:123456789012:no-such-topic"

    async with delivery_to(moto.endpoint) as delivery:
        with pytest.raises(ClientError) as raised:
            await SnsDestination(id="Default SNS", sns_arn=missing).send(make_alert(), delivery)

    assert raised.value.response["Error"]["Code"] == "NotFound"


async def test_alert_for_a_record_over_the_sns_size_limit_is_still_published(moto: Moto) -> None:
    topic_arn = moto.client("sns").create_topic(Name="cloudtail_alert")["TopicArn"]
    queue_url = subscribed_queue(moto, topic_arn)
    # CloudTrail records can be this big: a PutBucketPolicy or CreateStack with a large body.
    big = {**CREATE_USER, "requestParameters": {"policy": "x" * 300_000}}

    async with delivery_to(moto.endpoint) as delivery:
        await SnsDestination(id="Default SNS", sns_arn=topic_arn).send(
            make_alert_for(big), delivery
        )

    messages = moto.client("sqs").receive_message(QueueUrl=queue_url)["Messages"]
    assert json.loads(json.loads(messages[0]["Body"])["Message"])["name"] == "Create User"


def make_alert_for(record: dict[str, Any]) -> Alert:
    return dataclasses.replace(make_alert(), record=record)


def test_subject_is_folded_to_ascii_and_uses_the_rules_title() -> None:
    alert = dataclasses.replace(make_alert(), title="Créé: user \u2713 by\tadmin\u0007")

    subject = render(alert)["Subject"]

    assert subject == "Tattletail: Cree: user by admin"
    assert subject.isascii() and subject.isprintable()


@pytest.mark.parametrize("record", largest_real_records(), ids=lambda r: r["eventName"])
def test_largest_real_records_are_published_whole(record: dict[str, Any]) -> None:
    alert = dataclasses.replace(make_alert(), record=record)

    assert json.loads(render(alert)["Message"])["record"] == record


def test_a_1_mb_record_is_cut_to_snss_256_kib() -> None:
    record = synthetic_record()

    message = render(dataclasses.replace(make_alert(), record=record))["Message"]

    assert len(message.encode()) <= MESSAGE_LIMIT == 262_144
    assert_is_marker(json.loads(message)["record"], record)


async def test_a_300_kb_record_is_published_with_its_marker(moto: Moto) -> None:
    topic_arn = moto.client("sns").create_topic(Name="cloudtail_alert")["TopicArn"]
    queue_url = subscribed_queue(moto, topic_arn)
    # Raw delivery: the queue receives the message itself, not SNS's larger envelope.
    [subscription] = moto.client("sns").list_subscriptions_by_topic(TopicArn=topic_arn)[
        "Subscriptions"
    ]
    moto.client("sns").set_subscription_attributes(
        SubscriptionArn=subscription["SubscriptionArn"],
        AttributeName="RawMessageDelivery",
        AttributeValue="true",
    )
    record = synthetic_record(300 * 1024)
    alert = dataclasses.replace(make_alert(), record=record)

    async with delivery_to(moto.endpoint) as context:
        await SnsDestination(id="Default SNS", sns_arn=topic_arn).send(alert, context)

    [message] = moto.client("sqs").receive_message(QueueUrl=queue_url)["Messages"]
    assert len(message["Body"].encode()) <= MESSAGE_LIMIT
    published = json.loads(message["Body"])
    assert_is_marker(published["record"], record)
    assert {key: published[key] for key in ("name", "description", "match")} == {
        "name": "Create User",
        "description": "A new IAM user has been created",
        "match": "username: user1",
    }


def test_default_rate() -> None:
    topic = SnsDestination.build("SNS", {"sns_arn": "arn:aws:sns:us-east-1:1:t"})

    assert topic.rate() == (100.0, 100)
