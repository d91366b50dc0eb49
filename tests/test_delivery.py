"""Delivery guarantees end to end, with faults injected into real protocols: local HTTP receivers
that rate-limit, fail, hang or are not there at all; moto's SNS, SQS, S3 and DynamoDB; and the
Lambda handler itself for deduplication and flood control. Retry waits are kept small
(milliseconds) except where the service asks for a wait, which is what is under test there."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tattletail import config, lambda_handler
from tattletail.alerts import Alert
from tattletail.aws import AwsClients
from tattletail.dedupe import DedupeTable
from tattletail.destinations import DeliveryContext, http
from tattletail.destinations.slack_webhook import SlackWebhookDestination
from tattletail.destinations.sns import MESSAGE_LIMIT, SnsDestination
from tattletail.dispatch import DeliveryPolicy, Dispatcher
from tattletail.retry import Backoff
from tattletail.summary import RunSummary
from tests.destinations.destination_support import (
    CREATE_USER,
    assert_is_marker,
    json_size,
    make_alert,
    synthetic_record,
)
from tests.destinations.http_stand_in import HttpStandIn, Reply, Request, refused_url
from tests.lambda_support import BUCKET, SEED_KEY, LambdaContext, put_seed_log, s3_event
from tests.support import Moto, SlackStandIn

DEDUPE_TABLE = "tattletail-dedupe"


def policy(**overrides: Any) -> DeliveryPolicy:
    settings: dict[str, Any] = {
        "concurrency": 8,
        "send_timeout": 5.0,
        "retries": 4,
        "retry_budget": 30.0,
        "backoff": Backoff(base=0.01, cap=0.05),
        "flood_threshold": 100,
        **overrides,
    }
    return DeliveryPolicy(**settings)


def event(number: int) -> dict[str, Any]:
    return {**CREATE_USER, "eventID": f"event-{number:05}"}


def slack_event_id(request: Request) -> str:
    """The eventID a Slack message is about (its *Event* field: `CreateUser <eventID>`)."""
    fields = request.json()["blocks"][1]["fields"]
    return fields[1]["text"].split()[-1]


def queue_messages(moto: Moto, queue_url: str) -> list[Any]:
    sqs = moto.client("sqs")
    bodies = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return bodies
        for message in batch:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


async def dispatch_all(
    destinations: dict[str, Any],
    alerts: list[Alert],
    endpoint: str,
    delivery_policy: DeliveryPolicy,
    dead_letter: str | None = None,
) -> RunSummary:
    aws = AwsClients(endpoint)
    context = DeliveryContext(aws, 10.0)
    summary = RunSummary()
    # A warm container: its AWS clients exist. (Making one loads botocore's service model, which
    # holds the event loop for a few hundred milliseconds: longer than these tests' timeouts.)
    for service in ("sns", "sqs"):
        await aws.client(service)
    try:
        dispatcher = Dispatcher(
            destinations, context, summary, delivery_policy, dead_letter=dead_letter
        )
        await asyncio.gather(*(dispatcher.deliver(alert) for alert in alerts))
        await dispatcher.finish()
    finally:
        await context.close()
        await aws.close()
    return summary


async def test_rate_limited_slack_retries_after_retry_after_and_gets_each_alert_once() -> None:
    with HttpStandIn.running(Reply(200, body="ok")) as slack:
        # Slack's answer to a burst: 429 with Retry-After: 1, for the first three requests.
        slack.reply_next(429, times=3, headers={"Retry-After": "1"}, body="rate_limited")
        destination = SlackWebhookDestination.build(
            "Slack", {"webhook_url": slack.url("/services/T0/B0/t0k3n"), "rate_limit": 50}
        )
        alerts = [make_alert(event(n), destinations=("Slack",)) for n in range(3)]

        summary = await dispatch_all({"Slack": destination}, alerts, "http://127.0.0.1:9", policy())
        requests = slack.received()

    delivered = sorted(slack_event_id(r) for r in requests if r.status == 200)
    assert delivered == ["event-00000", "event-00001", "event-00002"]
    assert sum(r.status == 429 for r in requests) == 3
    assert (summary.alerts_sent, summary.alerts_retried, summary.alerts_failed) == (3, 3, 0)
    # Each retry came at least the second Slack asked for after the 429 it followed.
    for alert in alerts:
        attempts = [r for r in requests if slack_event_id(r) == alert.event_id]
        for earlier, later in zip(attempts, attempts[1:], strict=False):
            assert earlier.status == 429
            assert later.at - earlier.at >= 0.95


@pytest.mark.parametrize("fault", ["http_500", "timeout", "connection_refused"])
async def test_a_failing_destination_ends_in_the_dead_letter_queue_while_others_deliver(
    moto: Moto, slack: SlackStandIn, fault: str
) -> None:
    sqs = moto.client("sqs")
    topic_arn, sns_queue = moto.topic_with_queue("alerts", "sns-copy")
    dead_letters = sqs.create_queue(QueueName="dead-letters")["QueueUrl"]
    reply = {
        "http_500": Reply(500, body="internal error"),
        # Held until the stand-in stops: however slow the machine, every try times out.
        "timeout": Reply(200, delay=60.0),
        "connection_refused": Reply(),
    }[fault]
    with HttpStandIn.running(reply) as flaky:
        url = refused_url() if fault == "connection_refused" else flaky.url()
        loaded = config.parse(
            f"""
dead_letter = "Dead Letters"

[[rule]]
name = "Create User"
jq_match = 'select(.eventName == "CreateUser")'
description = "A new IAM user has been created"
destinations = ["Flaky", "Slack", "SNS"]

[[destination]]
id = "Flaky"
type = "webhook"
url = "{url}"

[[destination]]
id = "Slack"
type = "slack_webhook"
webhook_url = "{slack.url}"
rate_limit = 100

[[destination]]
id = "SNS"
type = "sns"
sns_arn = "{topic_arn}"

[[destination]]
id = "Dead Letters"
type = "sqs"
queue_url = "{dead_letters}"
"""
        )
        [rule] = loaded.rules
        alerts = [make_alert(event(n), destinations=rule.destinations) for n in range(3)]

        summary = await dispatch_all(
            dict(loaded.destinations),
            alerts,
            moto.endpoint,
            # Long enough that a loaded machine still gets each try to the receiver in time.
            policy(retries=2, send_timeout=1.5),
            dead_letter=loaded.dead_letter,
        )
        flaky_requests = flaky.received()

    # The others got every alert, once.
    slack_ids = sorted(r["body"]["blocks"][1]["fields"][1]["text"] for r in slack.received())
    assert slack_ids == [f"*Event*\nCreateUser event-0000{n}" for n in range(3)]
    sns_ids = sorted(m["record"]["eventID"] for m in queue_messages(moto, sns_queue))
    assert sns_ids == ["event-00000", "event-00001", "event-00002"]
    # The failing one was tried three times per alert (the first try and two retries)...
    if fault != "connection_refused":
        assert len(flaky_requests) == 9
    # ... and each of its alerts is in the dead-letter queue, whole, with why it failed.
    kept = sorted(queue_messages(moto, dead_letters), key=lambda d: d["alert"]["record"]["eventID"])
    # The answer's excerpt, then what is safe by construction: its length and a keyed digest.
    digest = http.digest(b"internal error", [url])
    expected_error = {
        "http_500": f"webhook answered HTTP 500: internal error (14 bytes, digest {digest})",
        "timeout": "timed out after 1.5 s",
        "connection_refused": "webhook request failed: ClientConnectorError",
    }[fault]
    assert kept == [
        {
            "alert_id": alert.alert_id("Flaky"),
            "failed_destination": "Flaky",
            "failed_destination_type": "webhook",
            "error": expected_error,
            "source": alert.source,
            "alert": {**alert.message(), "severity": "medium"},
        }
        for alert in alerts
    ]
    assert summary.alerts_dead_lettered == 3
    assert summary.sent_by_destination == {"Slack": 3, "SNS": 3}
    assert summary.failed_by_destination == {"Flaky": 3}


async def test_a_300_kb_record_to_sns_and_a_50_kb_record_to_slack_are_delivered_cut(
    moto: Moto, slack: SlackStandIn
) -> None:
    topic_arn, queue_url = moto.topic_with_queue("alerts", "sns-copy")
    for_sns, for_slack = synthetic_record(300 * 1024), synthetic_record(50 * 1024)
    destinations = {
        "SNS": SnsDestination(id="SNS", sns_arn=topic_arn),
        "Slack": SlackWebhookDestination.build("Slack", {"webhook_url": slack.url}),
    }
    alerts = [
        make_alert(for_sns, destinations=("SNS",)),
        make_alert(for_slack, destinations=("Slack",)),
    ]

    summary = await dispatch_all(destinations, alerts, moto.endpoint, policy())

    assert (summary.alerts_sent, summary.alerts_failed) == (2, 0)
    [published] = queue_messages(moto, queue_url)
    assert len(orjson.dumps(published)) <= MESSAGE_LIMIT
    assert_is_marker(published["record"], for_sns)
    assert published["match"] == "username: user1"
    [posted] = slack.received()
    texts = [b["text"]["text"] for b in posted["body"]["blocks"] if "text" in b]
    head = next(t for t in texts if t.startswith("*CloudTrail Record*"))
    assert head.startswith(f"*CloudTrail Record* (truncated: {json_size(for_slack):,} bytes")
    assert for_slack["eventID"] in head and "original_size_bytes" in head
    assert "*Description*\nA new IAM user has been created" in texts
    assert '*Match*\n```"username: user1"```' in texts
    assert all(len(text) <= 3000 for text in texts)


# ---- through the Lambda handler: deduplication and flood control ------------------------------


class Deployed:
    """The handler's world: a trail bucket, a queue, a receiver, and a bundled config file."""

    def __init__(self, moto: Moto, receiver: HttpStandIn, config_path: Path) -> None:
        self.moto = moto
        self.receiver = receiver
        self.config_path = config_path
        sqs = moto.client("sqs")
        self.queue_url = sqs.create_queue(QueueName="alerts")["QueueUrl"]
        moto.client("s3").create_bucket(Bucket="alert-archive")
        moto.client("dynamodb").create_table(
            TableName=DEDUPE_TABLE,
            KeySchema=[{"AttributeName": "alert_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "alert_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )

    def configure(self, destinations: list[str]) -> None:
        self.config_path.write_text(
            f"""
[[rule]]
name = "Create User"
jq_match = 'select(.eventName == "CreateUser")'
description = "A new IAM user has been created"
destinations = {json.dumps(destinations)}

[[destination]]
id = "Hook"
type = "webhook"
url = "{self.receiver.url()}"
rate_limit = 1000

[[destination]]
id = "Queue"
type = "sqs"
queue_url = "{self.queue_url}"

[[destination]]
id = "Archive"
type = "s3"
bucket = "alert-archive"
prefix = "archive"
"""
        )

    def run(self, key: str = SEED_KEY) -> dict[str, Any]:
        return lambda_handler.handler(s3_event(BUCKET, key), LambdaContext())

    def hook_event_ids(self) -> list[str]:
        return [request.json()["record"]["eventID"] for request in self.receiver.received()]

    def dedupe_items(self) -> dict[str, str]:
        items = self.moto.client("dynamodb").scan(TableName=DEDUPE_TABLE)["Items"]
        return {item["alert_id"]["S"]: item["state"]["S"] for item in items}


@pytest.fixture
def deployed(moto: Moto, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Deployed]:
    lambda_handler.shutdown()
    put_seed_log(moto)
    config_path = tmp_path / "tattletail.toml"
    for name, value in {
        "TATTLETAIL_CONFIG": str(config_path),
        "TATTLETAIL_WORKERS": "1",
        "TATTLETAIL_METRICS": "false",
        "TATTLETAIL_RETRY_BASE": "0.01",
        "TATTLETAIL_RETRY_CAP": "0.05",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("S3_CONFIG_BUCKET", "S3_CONFIG_PATH", "TATTLETAIL_DEDUPE_TABLE"):
        monkeypatch.delenv(name, raising=False)
    with HttpStandIn.running(Reply(200, body="ok")) as receiver:
        yield Deployed(moto, receiver, config_path)
        lambda_handler.shutdown()


def test_the_same_s3_event_twice_with_a_dedupe_table_sends_once(
    deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TATTLETAIL_DEDUPE_TABLE", DEDUPE_TABLE)
    deployed.configure(["Hook", "Queue"])

    first = deployed.run()
    second = deployed.run()

    assert (first["alerts_sent"], first["alerts_deduplicated"]) == (2, 0)
    assert (second["alerts_sent"], second["alerts_deduplicated"]) == (0, 2)
    assert deployed.hook_event_ids() == [CREATE_USER["eventID"]]
    assert len(queue_messages(deployed.moto, deployed.queue_url)) == 1
    alert = make_alert()
    assert deployed.dedupe_items() == {
        alert.alert_id("Hook"): "sent",
        alert.alert_id("Queue"): "sent",
    }


def test_without_a_dedupe_table_delivery_is_at_least_once(deployed: Deployed) -> None:
    deployed.configure(["Hook"])

    deployed.run()
    deployed.run()

    assert deployed.hook_event_ids() == [CREATE_USER["eventID"]] * 2


def test_a_send_killed_after_its_claim_is_made_again_once_the_claim_expires(
    deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TATTLETAIL_DEDUPE_TABLE", DEDUPE_TABLE)
    deployed.configure(["Hook"])
    alert_id = make_alert().alert_id("Hook")
    # Another invocation claimed the send and died before sending.
    table = DedupeTable(DEDUPE_TABLE, 3600, 3600)

    async def claim() -> bool:
        aws = AwsClients(deployed.moto.endpoint)
        try:
            return await table.claim(await aws.client("dynamodb"), alert_id)
        finally:
            await aws.close()

    assert asyncio.run(claim())

    while_claimed = deployed.run()
    assert while_claimed["alerts_deduplicated"] == 1
    assert deployed.hook_event_ids() == []
    assert deployed.dedupe_items() == {alert_id: "claimed"}

    # Its claim runs out (moved into the past rather than waited for: no test times things).
    deployed.moto.client("dynamodb").update_item(
        TableName=DEDUPE_TABLE,
        Key={"alert_id": {"S": alert_id}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
    )
    after_expiry = deployed.run()

    assert (after_expiry["alerts_sent"], after_expiry["alerts_deduplicated"]) == (1, 0)
    assert deployed.hook_event_ids() == [CREATE_USER["eventID"]]
    assert deployed.dedupe_items() == {alert_id: "sent"}


def test_a_flood_of_10000_matches_sends_a_few_and_one_summary_and_archives_all(
    deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    threshold = 5
    monkeypatch.setenv("TATTLETAIL_FLOOD_THRESHOLD", str(threshold))
    deployed.configure(["Hook", "Queue", "Archive"])
    records = [
        {**CREATE_USER, "eventID": f"flood-{n:05}", "eventTime": f"2021-07-10T16:{n // 600:02}:00Z"}
        for n in range(10_000)
    ]
    key = "AWSLogs/123456789/CloudTrail/us-east-1/2021/07/10/flood.json.gz"
    body = gzip.compress(orjson.dumps({"Records": records}), mtime=0)
    deployed.moto.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)

    result = deployed.run(key)

    assert result["matches"] == 10_000
    assert result["alerts_held"] == 2 * (10_000 - threshold)
    assert result["flood_summaries"] == 1
    # The archive holds every alert, whole.
    s3 = deployed.moto.client("s3")
    [archived] = s3.list_objects_v2(Bucket="alert-archive", Prefix="archive/")["Contents"]
    lines = s3.get_object(Bucket="alert-archive", Key=archived["Key"])["Body"].read().splitlines()
    assert [orjson.loads(line)["record"] for line in lines] == records
    archive_uri = f"s3://alert-archive/{archived['Key']}"
    # The others: the first `threshold` alerts, then one summary pointing at the archive.
    hook = [request.json() for request in deployed.receiver.received()]
    queued = queue_messages(deployed.moto, deployed.queue_url)
    for received in (hook, queued):
        assert len(received) == threshold + 1
        alerts = [m for m in received if "flood_summary" not in m]
        [summary] = [m for m in received if "flood_summary" in m]
        assert len(alerts) == threshold
        assert summary["name"] == "Create User (flood summary)"
        flood = summary["flood_summary"]
        assert (flood["matches"], flood["sent"], flood["held_back"]) == (10_000, 5, 9_995)
        assert flood["full_list"] == [archive_uri]
        assert flood["top_event_names"] == [["CreateUser", 9_995]]
