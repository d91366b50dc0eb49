"""The envelope stage: every documented trigger shape becomes the right S3 objects.

The samples in tests/lambda_events/ follow the event shapes AWS documents for S3 event
notifications, SNS and SQS Lambda events, EventBridge and CloudTrail's SNS notifications.
One test also builds SQS bodies for real, through moto's SNS -> SQS delivery (raw on and off).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tattletail.envelope import UnrecognisedEvent, open_envelope, parse_s3_uri, shape
from tattletail.objects import ObjectRef

EVENTS = Path(__file__).resolve().parent / "lambda_events"
BUCKET = "amzn-s3-demo-bucket"
PREFIX = "AWSLogs/123456789012/CloudTrail/us-east-1/2021/07/13/"
KEY1 = PREFIX + "123456789012_CloudTrail_us-east-1_20210713T1540Z_DWktkdMpEvhK04Eq.json.gz"
KEY1B = PREFIX + "123456789012_CloudTrail_us-east-1_20210713T1545Z_Xq1eR9dXjYTZ8kUo.json.gz"
# The samples' second key, decoded: a space, an '=' and a literal '+'.
KEY2 = PREFIX + "export run=2 copy+1.json.gz"


def load(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def keys(refs: tuple[ObjectRef, ...]) -> list[tuple[str | None, str]]:
    return [(ref.bucket, ref.key) for ref in refs]


def test_s3_notification_gives_every_created_object_with_url_decoded_keys() -> None:
    event = load("s3_object_created.json")
    # The sample really is encoded as S3 sends it: '+' for a space, %3D and %2B escapes.
    assert event["Records"][1]["s3"]["object"]["key"].endswith("export+run%3D2+copy%2B1.json.gz")

    envelope = open_envelope(event)

    assert envelope.kind == "s3"
    assert keys(envelope.refs) == [(BUCKET, KEY1), (BUCKET, KEY2)]
    assert envelope.ignored == ()
    assert all(ref.origin is None for ref in envelope.refs)


def test_s3_notification_for_a_removed_object_is_ignored_not_read() -> None:
    envelope = open_envelope(load("s3_object_removed.json"))

    assert envelope.refs == ()
    assert envelope.ignored == ("S3 event ObjectRemoved:Delete",)


def test_s3_test_event_is_ignored() -> None:
    envelope = open_envelope(load("s3_test_event.json"))

    assert envelope.kind == "s3_test_event"
    assert envelope.refs == ()
    assert envelope.ignored == ("s3:TestEvent",)


def test_s3_notification_wrapped_in_sns_is_unwrapped_and_decoded() -> None:
    envelope = open_envelope(load("sns_s3_notification.json"))

    assert envelope.kind == "sns"
    assert keys(envelope.refs) == [(BUCKET, KEY1)]
    assert envelope.ignored == ()


def test_sqs_carrying_s3_notifications_names_the_message_of_each_object() -> None:
    envelope = open_envelope(load("sqs_s3_notification.json"))

    assert envelope.kind == "sqs"
    assert keys(envelope.refs) == [(BUCKET, KEY1), (BUCKET, KEY2)]
    assert {ref.origin for ref in envelope.refs} == {"059f36b4-87a3-44ab-83d2-661975830a7d"}
    # The batch's first message is the s3:TestEvent S3 sends when the queue is configured.
    assert envelope.ignored == ("s3:TestEvent",)
    assert envelope.sqs_message_ids == (
        "2e1424d4-f796-459a-8184-9c92662be6da",
        "059f36b4-87a3-44ab-83d2-661975830a7d",
    )


def test_sqs_carrying_an_sns_notification_without_raw_delivery() -> None:
    envelope = open_envelope(load("sqs_sns_s3_notification.json"))

    assert envelope.kind == "sqs"
    assert keys(envelope.refs) == [(BUCKET, KEY1)]
    assert envelope.refs[0].origin == "c80e8021-a70a-42c7-a470-796e1186f753"


def test_sqs_carrying_an_sns_message_with_raw_delivery() -> None:
    envelope = open_envelope(load("sqs_sns_raw_s3_notification.json"))

    assert envelope.kind == "sqs"
    assert keys(envelope.refs) == [(BUCKET, KEY1)]
    assert envelope.refs[0].origin == "d9a7e3b2-1c4f-4e6a-9b8d-7f5e3c1a2b4d"


def test_sqs_message_whose_body_is_not_json_is_ignored_and_the_rest_are_read() -> None:
    event = load("sqs_sns_raw_s3_notification.json")
    bad = dict(event["Records"][0], messageId="not-json", body="hello from a test")
    event["Records"].insert(0, bad)

    envelope = open_envelope(event)

    assert keys(envelope.refs) == [(BUCKET, KEY1)]
    assert envelope.ignored == ("SQS message not-json: body is not JSON",)


def test_eventbridge_object_created_keeps_the_key_as_is() -> None:
    event = load("eventbridge_object_created.json")

    envelope = open_envelope(event)

    assert envelope.kind == "eventbridge"
    # EventBridge does not URL-encode keys: '+' stays a plus, nothing is unquoted.
    assert keys(envelope.refs) == [(BUCKET, KEY2)]


def test_eventbridge_key_that_looks_url_encoded_is_not_decoded() -> None:
    event = load("eventbridge_object_created.json")
    event["detail"]["object"]["key"] = "AWSLogs/a+b%3Dc.json.gz"

    envelope = open_envelope(event)

    assert keys(envelope.refs) == [(BUCKET, "AWSLogs/a+b%3Dc.json.gz")]


def test_eventbridge_object_deleted_is_ignored() -> None:
    envelope = open_envelope(load("eventbridge_object_deleted.json"))

    assert envelope.kind == "eventbridge"
    assert envelope.refs == ()
    assert envelope.ignored == ("EventBridge Object Deleted",)


def test_cloudtrail_sns_notification_lists_every_delivered_log_file() -> None:
    envelope = open_envelope(load("sns_cloudtrail_notification.json"))

    assert envelope.kind == "sns"
    assert keys(envelope.refs) == [(BUCKET, KEY1), (BUCKET, KEY1B)]


def test_cloudtrail_sns_notification_through_sqs() -> None:
    envelope = open_envelope(load("sqs_sns_cloudtrail_notification.json"))

    assert envelope.kind == "sqs"
    assert keys(envelope.refs) == [(BUCKET, KEY1), (BUCKET, KEY1B)]
    assert {ref.origin for ref in envelope.refs} == {"7b3e9f1d-2a4c-4d6e-8f0a-1b2c3d4e5f6a"}


def test_cloudtrail_notification_message_on_its_own() -> None:
    message = json.loads(load("sns_cloudtrail_notification.json")["Records"][0]["Sns"]["Message"])

    envelope = open_envelope(message)

    assert envelope.kind == "cloudtrail_sns_message"
    assert keys(envelope.refs) == [(BUCKET, KEY1), (BUCKET, KEY1B)]


def test_cloudtrail_notification_keys_are_not_url_decoded() -> None:
    envelope = open_envelope({"s3Bucket": BUCKET, "s3ObjectKey": ["AWSLogs/a+b.json.gz"]})

    assert keys(envelope.refs) == [(BUCKET, "AWSLogs/a+b.json.gz")]


def test_manual_invocation_lists_s3_uris() -> None:
    envelope = open_envelope(load("manual_objects.json"))

    assert envelope.kind == "manual"
    assert keys(envelope.refs) == [(BUCKET, KEY1), (BUCKET, KEY2)]


@pytest.mark.parametrize("uri", ["s3://bucket-only", "s3:///key", "s3://bucket/", "/local/path"])
def test_manual_invocation_with_a_malformed_uri_is_unrecognised(uri: str) -> None:
    with pytest.raises(UnrecognisedEvent, match="not an s3://bucket/key URI"):
        open_envelope({"objects": [uri]})


def test_parse_s3_uri_keeps_slashes_in_the_key() -> None:
    assert parse_s3_uri("s3://b/AWSLogs/a/b.json.gz") == ObjectRef(
        key="AWSLogs/a/b.json.gz", bucket="b"
    )


@pytest.mark.parametrize(
    "event",
    [
        load("eventbridge_scheduled_event.json"),
        {},
        {"Records": []},
        {"hello": "world"},
        [{"objects": ["s3://b/k"]}],
        "s3://b/k",
        None,
    ],
    ids=["scheduled-event", "empty", "no-records", "unknown-keys", "list", "string", "none"],
)
def test_unrecognised_event_raises(event: Any) -> None:
    with pytest.raises(UnrecognisedEvent):
        open_envelope(event)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"Records": [1]}, "not a notification: int"),
        (
            {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": "b", "object": "k"}}]},
            "S3 record without bucket name and object key",
        ),
        (
            {"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": None}},
            "EventBridge event without bucket name and object key",
        ),
        ({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": {"a": 1}}}]}, None),
        ({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": "Hello"}}]}, None),
    ],
    ids=[
        "record-not-object",
        "s3-fields-not-objects",
        "eventbridge-bucket-null",
        "sns-dict",
        "sns",
    ],
)
def test_malformed_notification_is_ignored_with_a_reason_not_a_crash(
    event: dict[str, Any], reason: str | None
) -> None:
    envelope = open_envelope(event)

    assert envelope.refs == ()
    assert envelope.ignored == ((reason,) if reason else ("SNS message is not JSON",))


def test_cloudtrail_notification_with_keys_not_a_list_gives_no_objects() -> None:
    envelope = open_envelope({"s3Bucket": BUCKET, "s3ObjectKey": {"AWSLogs/x.json.gz": 1}})

    assert envelope.refs == ()


def test_shape_of_an_unknown_event_names_keys_but_never_values() -> None:
    description = shape({"token": "s3cr3t-value", "detail": {"x": 1}})

    assert description == "object with keys detail, token"
    assert "s3cr3t" not in description


def test_every_sample_event_is_recognised_or_deliberately_not() -> None:
    """Guards the samples themselves: each is valid JSON of a known shape (or a known stranger)."""
    outcomes = {}
    for path in sorted(EVENTS.glob("*.json")):
        try:
            outcomes[path.name] = open_envelope(json.loads(path.read_text())).kind
        except UnrecognisedEvent:
            outcomes[path.name] = "unrecognised"
    assert outcomes == {
        "eventbridge_object_created.json": "eventbridge",
        "eventbridge_object_deleted.json": "eventbridge",
        "eventbridge_scheduled_event.json": "unrecognised",
        "manual_objects.json": "manual",
        "s3_object_created.json": "s3",
        "s3_object_removed.json": "s3",
        "s3_test_event.json": "s3_test_event",
        "sns_cloudtrail_notification.json": "sns",
        "sns_s3_notification.json": "sns",
        "sqs_s3_notification.json": "sqs",
        "sqs_sns_cloudtrail_notification.json": "sqs",
        "sqs_sns_raw_s3_notification.json": "sqs",
        "sqs_sns_s3_notification.json": "sqs",
    }


@pytest.mark.parametrize("raw", [False, True], ids=["raw-off", "raw-on"])
def test_sqs_bodies_made_by_real_sns_delivery_are_understood(moto: Any, raw: bool) -> None:
    """SNS -> SQS through the moto server: the body SQS really holds, raw delivery on or off."""
    sns, sqs = moto.client("sns"), moto.client("sqs")
    topic = sns.create_topic(Name="s3-events")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="tattletail")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "true" if raw else "false"},
    )
    notification = load("s3_object_created.json")
    sns.publish(TopicArn=topic, Message=json.dumps(notification), Subject="Amazon S3 Notification")
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    assert len(messages) == 1
    body = messages[0]["Body"]
    assert (json.loads(body).get("Type") == "Notification") is not raw
    event = {
        "Records": [
            {
                "messageId": messages[0]["MessageId"],
                "receiptHandle": messages[0]["ReceiptHandle"],
                "body": body,
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": messages[0]["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
        ]
    }

    envelope = open_envelope(event)

    assert keys(envelope.refs) == [(BUCKET, KEY1), (BUCKET, KEY2)]
    assert {ref.origin for ref in envelope.refs} == {messages[0]["MessageId"]}


# -- replay routing (`tattletail backfill`) --------------------------------------------------


def test_a_backfill_message_names_its_file_and_its_routing() -> None:
    from tattletail.backfill import notification
    from tattletail.listing import Listed

    body = notification(
        BUCKET,
        [Listed("AWSLogs/1/CloudTrail/a b+c.json.gz", 10, '"e"')],
        {"backfill": "run-7", "destinations": ["Archive"]},
        "2024-01-01T00:00:00.000Z",
    )
    envelope = open_envelope(
        {"Records": [{"messageId": "m1", "eventSource": "aws:sqs", "body": body}]}
    )

    [ref] = envelope.refs
    assert (ref.bucket, ref.key, ref.origin) == (BUCKET, "AWSLogs/1/CloudTrail/a b+c.json.gz", "m1")
    assert (ref.destinations, ref.backfill) == (("Archive",), "run-7")


@given(st.text(min_size=1, max_size=60).filter(lambda k: "\x00" not in k))
def test_any_key_survives_the_backfill_notification_round_trip(key: str) -> None:
    from tattletail.backfill import notification
    from tattletail.listing import Listed

    body = notification(BUCKET, [Listed(key, 1, "")], {"backfill": "r"}, "2024-01-01T00:00:00Z")
    [ref] = open_envelope(
        {"Records": [{"messageId": "m", "eventSource": "aws:sqs", "body": body}]}
    ).refs
    assert ref.key == key


@pytest.mark.parametrize(
    "routing",
    [
        "Archive",
        {"destinations": "Archive"},
        {"destinations": []},
        {"destinations": ["Archive", 3]},
        {"destinations": [""]},
        {"backfill": 7},
        {"destination": ["Archive"]},
    ],
)
def test_a_malformed_routing_rejects_its_message_instead_of_alerting_everyone(
    routing: Any,
) -> None:
    body = json.dumps({**load("s3_object_created.json"), "tattletail": routing})
    envelope = open_envelope(
        {"Records": [{"messageId": "bad", "eventSource": "aws:sqs", "body": body}]}
    )
    assert envelope.refs == ()
    assert [message_id for message_id, _ in envelope.rejected] == ["bad"]
    with pytest.raises(UnrecognisedEvent, match="manual invocation"):
        open_envelope({"objects": [f"s3://{BUCKET}/{KEY1}"], "tattletail": routing})


def test_a_manual_invocation_may_route_too() -> None:
    envelope = open_envelope(
        {"objects": [f"s3://{BUCKET}/{KEY1}"], "tattletail": {"destinations": ["Archive"]}}
    )
    assert envelope.refs[0].destinations == ("Archive",)
