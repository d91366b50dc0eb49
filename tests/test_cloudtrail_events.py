"""Real time: EventBridge's CloudTrail events, evaluated with no S3 read through the same worker
pool and rules as log files.

The samples in tests/cloudtrail_events/ follow the shapes AWS delivers ("AWS API Call via
CloudTrail", "AWS Console Sign In via CloudTrail", "AWS Service Event via CloudTrail": an
EventBridge envelope whose `detail` is one CloudTrail record), alone or as SQS message bodies.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from cfnlint.decode import decode_str

from tattletail import lambda_handler
from tattletail.aws import AwsClients
from tattletail.config import load_file
from tattletail.envelope import CLOUDTRAIL_DETAIL_TYPES, open_envelope
from tattletail.objects import ObjectRef
from tattletail.service import Service
from tattletail.settings import Settings
from tattletail.summary import RunSummary
from tests.lambda_support import BUCKET, SEED_KEY, LambdaContext, put_seed_log, s3_event
from tests.support import CLOUDTRAIL, REGION, REPO, SEED_LOG, Moto, SlackStandIn, gzipped

SAMPLES = Path(__file__).resolve().parent / "cloudtrail_events"
TEMPLATE = REPO / "deploy" / "template.yaml"
PACK = REPO / "config" / "tattletail-pack.toml"
EVERY_EVENT = 'select(.eventID != null) | "\\(.eventSource) \\(.eventName)"'
CREATE_USER = 'select(.eventName == "CreateUser") | "username: \\(.responseElements.user.userName)"'


def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / name).read_text())


def sqs_batch(*bodies: Any, ids: list[str] | None = None) -> dict[str, Any]:
    """An SQS event as Lambda's event source mapping delivers it."""
    ids = ids or [f"message-{n}" for n in range(len(bodies))]
    return {
        "Records": [
            {
                "messageId": message_id,
                "receiptHandle": "handle",
                "body": body if isinstance(body, str) else json.dumps(body),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "0",
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:tattletail",
                "awsRegion": REGION,
            }
            for message_id, body in zip(ids, bodies, strict=True)
        ]
    }


def config_text(jq_match: str, destination: str = "", dedupe: bool = False) -> str:
    target = destination or '[[destination]]\nid = "Out"\ntype = "stdout"\n'
    dest_id = "Slack" if destination else "Out"
    return f"""
[[rule]]
name = "Seen"
jq_match = '{jq_match}'
description = "test rule"
destinations = ["{dest_id}"]

{target}
"""


@pytest.fixture
def handler(
    moto: Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], None]]:
    """Installs a bundled config (and a fresh container) for the real handler."""

    def install(text: str) -> None:
        lambda_handler.shutdown()
        (tmp_path / "tattletail.toml").write_text(text)

    monkeypatch.setenv("TATTLETAIL_CONFIG", str(tmp_path / "tattletail.toml"))
    monkeypatch.setenv("TATTLETAIL_WORKERS", "1")
    monkeypatch.setenv("TATTLETAIL_METRICS", "false")
    monkeypatch.delenv("S3_CONFIG_BUCKET", raising=False)
    monkeypatch.delenv("TATTLETAIL_DEDUPE_TABLE", raising=False)
    yield install
    lambda_handler.shutdown()


def printed(capfd: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in capfd.readouterr().out.splitlines() if line]


@pytest.mark.parametrize(
    "name", ["api_call_create_user.json", "console_sign_in.json", "service_event.json"]
)
def test_each_cloudtrail_event_is_evaluated_at_once_with_no_s3_read(
    name: str,
    handler: Callable[[str], None],
    moto: Moto,
    capfd: pytest.CaptureFixture[str],
) -> None:
    event = sample(name)
    handler(config_text(EVERY_EVENT))
    capfd.readouterr()

    response = lambda_handler.handler(event, LambdaContext())
    [alert] = printed(capfd)

    # No bucket exists on the moto server: an S3 read would have failed the invocation.
    assert moto.client("s3").list_buckets()["Buckets"] == []
    assert response["events"] == 1 and response["objects"] == 0
    assert response["alerts_sent"] == 1 and response["objects_failed"] == 0
    detail = event["detail"]
    # The time range of the records read covers inline events too.
    assert response["first_event_time"] == response["last_event_time"] == detail["eventTime"]
    assert alert["record"] == detail
    assert alert["match"] == f"{detail['eventSource']} {detail['eventName']}"
    assert alert["source"] == f"eventbridge:{event['id']}"
    assert (alert["account"], alert["region"]) == (event["account"], event["region"])


def test_a_batch_of_sqs_messages_carrying_events_and_files_alerts_on_both(
    handler: Callable[[str], None], moto: Moto, capfd: pytest.CaptureFixture[str]
) -> None:
    put_seed_log(moto)
    event = sample("sqs_eventbridge_batch.json")
    event["Records"].append(sqs_batch(s3_event(BUCKET, SEED_KEY), ids=["file"])["Records"][0])
    handler(config_text(EVERY_EVENT))
    capfd.readouterr()

    response = lambda_handler.handler(event, LambdaContext())
    alerts = printed(capfd)

    assert response == {"batchItemFailures": []}
    sources = sorted(a["source"] for a in alerts)
    inline = sorted(
        f"eventbridge:{json.loads(r['body'])['id']}"
        for r in sample("sqs_eventbridge_batch.json")["Records"]
    )
    # Three inline events, and the three records of the seed log file.
    assert [s for s in sources if s.startswith("eventbridge:")] == inline
    assert sources.count(f"s3://{BUCKET}/{SEED_KEY}") == 3


def test_an_event_delivered_twice_in_one_batch_is_evaluated_once(
    handler: Callable[[str], None], capfd: pytest.CaptureFixture[str]
) -> None:
    event = sample("api_call_create_user.json")
    handler(config_text(EVERY_EVENT))
    capfd.readouterr()

    response = lambda_handler.handler(sqs_batch(event, event), LambdaContext())

    assert response == {"batchItemFailures": []}
    assert len(printed(capfd)) == 1


def test_failed_evaluation_names_only_the_messages_whose_events_failed(
    handler: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """An event too large to evaluate fails its message; a good message in the batch alerts and
    is not named, so SQS redelivers only the failed one."""
    big = sample("api_call_create_user.json")
    big["id"] = "big"
    big["detail"] = {**big["detail"], "eventID": "big-event", "padding": "x" * 4096}
    good = sample("console_sign_in.json")
    monkeypatch.setenv("TATTLETAIL_MAX_OBJECT_BYTES", "3000")
    handler(config_text(EVERY_EVENT))
    capfd.readouterr()

    # Delivered alone (a batch of one message) each, so each has its own evaluation.
    failed = lambda_handler.handler(sqs_batch(big, ids=["m-big"]), LambdaContext())
    passed = lambda_handler.handler(sqs_batch(good, ids=["m-good"]), LambdaContext())

    assert failed == {"batchItemFailures": [{"itemIdentifier": "m-big"}]}
    assert passed == {"batchItemFailures": []}
    assert [a["source"] for a in printed(capfd)] == [f"eventbridge:{good['id']}"]


def test_a_direct_invocation_whose_event_fails_raises_so_lambda_retries(
    handler: Callable[[str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    big = sample("api_call_create_user.json")
    big["detail"] = {**big["detail"], "padding": "x" * 4096}
    monkeypatch.setenv("TATTLETAIL_MAX_OBJECT_BYTES", "3000")
    handler(config_text(EVERY_EVENT))

    with pytest.raises(lambda_handler.ObjectsFailed, match="1 of 1 events failed"):
        lambda_handler.handler(big, LambdaContext())


def test_custom_events_dressed_as_cloudtrail_are_not_evaluated(
    handler: Callable[[str], None], capfd: pytest.CaptureFixture[str]
) -> None:
    """Only AWS can publish a source starting with `aws.`: anyone allowed events:PutEvents could
    publish the rest."""
    forged = {**sample("api_call_create_user.json"), "source": "custom.iam"}
    handler(config_text(EVERY_EVENT))
    capfd.readouterr()

    alone = lambda_handler.handler(forged, LambdaContext())
    batched = lambda_handler.handler(sqs_batch(forged), LambdaContext())

    assert alone == {"status": "unrecognised"}
    assert batched == {"batchItemFailures": []}
    assert printed(capfd) == []


def test_the_templates_rule_pattern_names_only_types_the_handler_evaluates() -> None:
    template, problems = decode_str(TEMPLATE.read_text())
    assert not problems
    rule = template["Resources"]["CloudTrailEventRule"]["Properties"]
    pattern = rule["EventPattern"]
    assert set(pattern["detail-type"]) <= CLOUDTRAIL_DETAIL_TYPES
    assert {
        "AWS API Call via CloudTrail",
        "AWS Console Sign In via CloudTrail",
        "AWS Service Event via CloudTrail",
    } <= set(pattern["detail-type"])
    assert pattern["source"] == [{"prefix": "aws."}]
    [target] = rule["Targets"]
    assert "DeadLetterConfig" in target and "RetryPolicy" in target


def test_eventbridge_to_sqs_through_the_templates_rule_pattern_alerts(
    handler: Callable[[str], None], moto: Moto, capfd: pytest.CaptureFixture[str]
) -> None:
    """The template's pattern on the moto server's EventBridge, targeting a queue: what SQS then
    holds is what the handler gets (CloudTrailEvents=queue)."""
    template, _ = decode_str(TEMPLATE.read_text())
    pattern = template["Resources"]["CloudTrailEventRule"]["Properties"]["EventPattern"]
    events, sqs = moto.client("events"), moto.client("sqs")
    queue_url = sqs.create_queue(QueueName="trigger")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    events.put_rule(Name="cloudtrail", EventPattern=json.dumps(pattern), State="ENABLED")
    events.put_targets(Rule="cloudtrail", Targets=[{"Id": "queue", "Arn": queue_arn}])
    entries = []
    for name in ("api_call_create_user.json", "console_sign_in.json", "service_event.json"):
        event = sample(name)
        entries.append(
            {
                "Source": event["source"],
                "DetailType": event["detail-type"],
                "Detail": json.dumps(event["detail"]),
            }
        )
    # Not CloudTrail's: filtered out by the pattern.
    entries.append({"Source": "custom.app", "DetailType": entries[0]["DetailType"], "Detail": "{}"})
    entries.append(
        {
            "Source": "aws.ec2",
            "DetailType": "EC2 Spot Instance Interruption Warning",
            "Detail": "{}",
        }
    )
    assert events.put_events(Entries=entries)["FailedEntryCount"] == 0
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    assert len(messages) == 3
    handler(config_text(EVERY_EVENT))
    capfd.readouterr()

    response = lambda_handler.handler(
        sqs_batch(*(m["Body"] for m in messages), ids=[m["MessageId"] for m in messages]),
        LambdaContext(),
    )

    assert response == {"batchItemFailures": []}
    matches = sorted(a["match"] for a in printed(capfd))
    assert matches == [
        "iam.amazonaws.com CreateUser",
        "kms.amazonaws.com RotateKey",
        "signin.amazonaws.com ConsoleLogin",
    ]


def dedupe_table(moto: Moto, monkeypatch: pytest.MonkeyPatch) -> None:
    moto.client("dynamodb").create_table(
        TableName="dedupe",
        AttributeDefinitions=[{"AttributeName": "alert_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "alert_id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    monkeypatch.setenv("TATTLETAIL_DEDUPE_TABLE", "dedupe")


@pytest.mark.parametrize("first", ["eventbridge", "s3"])
def test_an_event_seen_on_both_paths_alerts_once_with_the_dedupe_table(
    first: str,
    handler: Callable[[str], None],
    moto: Moto,
    slack: SlackStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The seed log's CreateUser arrives in real time through EventBridge and again in its log
    file five minutes later (or the other way round): whichever path sees it first alerts."""
    put_seed_log(moto)
    dedupe_table(moto, monkeypatch)
    slack_destination = (
        f'[[destination]]\nid = "Slack"\ntype = "slack_webhook"\nwebhook_url = "{slack.url}"\n'
    )
    handler(config_text(CREATE_USER, slack_destination))
    paths = {
        "eventbridge": sample("api_call_create_user.json"),
        "s3": sqs_batch(s3_event(BUCKET, SEED_KEY)),
    }
    order = [first, *(p for p in paths if p != first)]

    responses = {p: lambda_handler.handler(paths[p], LambdaContext()) for p in order}

    [delivered] = slack.received()
    assert "username: user1" in json.dumps(delivered["body"])
    assert responses["s3"] == {"batchItemFailures": []}
    realtime = responses["eventbridge"]
    if first == "eventbridge":
        assert (realtime["alerts_sent"], realtime["alerts_deduplicated"]) == (1, 0)
    else:
        assert (realtime["alerts_sent"], realtime["alerts_deduplicated"]) == (0, 1)


def test_without_a_dedupe_table_both_paths_alert(
    handler: Callable[[str], None], moto: Moto, capfd: pytest.CaptureFixture[str]
) -> None:
    """What the README says: without TATTLETAIL_DEDUPE_TABLE, running both paths sends an event's
    alert once per path."""
    put_seed_log(moto)
    handler(config_text(CREATE_USER))
    capfd.readouterr()

    lambda_handler.handler(sample("api_call_create_user.json"), LambdaContext())
    lambda_handler.handler(s3_event(BUCKET, SEED_KEY), LambdaContext())
    alerts = printed(capfd)

    assert [a["match"] for a in alerts] == ["username: user1"] * 2
    assert {a["source"] for a in alerts} == {
        f"eventbridge:{sample('api_call_create_user.json')['id']}",
        f"s3://{BUCKET}/{SEED_KEY}",
    }


def test_alert_latency_is_emitted_per_path_from_event_time_to_delivery(
    handler: Callable[[str], None],
    moto: Moto,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    event = sample("console_sign_in.json")
    happened = datetime.now(UTC) - timedelta(seconds=90)
    event["detail"]["eventTime"] = happened.strftime("%Y-%m-%dT%H:%M:%SZ")
    monkeypatch.setenv("TATTLETAIL_METRICS", "true")
    handler(config_text(EVERY_EVENT))
    capfd.readouterr()

    before = time.time()
    lambda_handler.handler(event, LambdaContext())
    elapsed = time.time() - before
    documents = [
        json.loads(line)
        for line in capfd.readouterr().out.splitlines()
        if line.startswith('{"_aws"')
    ]

    [latency] = [d for d in documents if "AlertLatencySeconds" in d]
    assert latency["Path"] == "eventbridge"
    assert latency["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["FunctionName", "Path"]]
    [value] = latency["AlertLatencySeconds"]
    # eventTime is whole seconds: the event happened between 90 and 91 s before the call.
    assert 89 <= value <= 91 + elapsed


def pack_matches(events: list[Any], refs: list[ObjectRef]) -> set[tuple[str, str, str]]:
    """(rule, eventID, annotation) of every match, through a Service running the rule pack."""
    import asyncio

    settings = Settings.from_env({"TATTLETAIL_WORKERS": "2"})
    service = Service(settings, load_file(PACK), AwsClients(""), local=True)
    found: set[tuple[str, str, str]] = set()

    async def collect(alerts: Any) -> None:
        for alert in alerts:
            found.add((alert.rule_name, alert.event_id, json.dumps(alert.match, sort_keys=True)))

    async def run() -> None:
        summary = RunSummary()
        failed = await service.run_all(refs, events, summary, sink=collect)
        assert failed == ([], [])
        await service.aclose()

    try:
        asyncio.run(run())
    finally:
        service.close_pool()
    return found


def test_every_real_record_gets_the_same_verdicts_as_an_eventbridge_event_as_in_its_log_file(
    tmp_path: Path,
) -> None:
    """The differential for the promise "both paths agree": each real record of ../shared/data,
    delivered as EventBridge delivers it (an envelope around it, encoded as JSON by AWS and
    decoded by Lambda), gives the rule pack the same matches and annotations as the log file
    holding it."""
    records: dict[str, dict[str, Any]] = {}
    for path in sorted(CLOUDTRAIL.rglob("*.json")):
        document = orjson.loads(path.read_bytes())
        for record in document["Records"] if isinstance(document, dict) else document:
            records.setdefault(record["eventID"], record)
    log_file = tmp_path / "all.json"
    log_file.write_bytes(orjson.dumps({"Records": list(records.values())}))
    envelopes = [
        {
            "version": "0",
            "id": f"event-{n}",
            "detail-type": "AWS API Call via CloudTrail",
            "source": "aws." + record.get("eventSource", "x").split(".")[0],
            "account": "123456789012",
            "time": record.get("eventTime"),
            "region": record.get("awsRegion"),
            "resources": [],
            "detail": record,
        }
        for n, record in enumerate(records.values())
    ]
    wire = json.loads(json.dumps(sqs_batch(*envelopes)))
    events = open_envelope(wire).events
    assert len(events) == len(records)

    from_files = pack_matches([], [ObjectRef(key=str(log_file))])
    from_events = pack_matches(list(events), [])

    assert from_events == from_files
    assert len(from_files) > 100


def test_an_s3_notification_inside_an_eventbridge_object_created_event_is_unchanged() -> None:
    """The aws.s3 "Object Created" shape still names a file to read, not an inline record."""
    event = json.loads(
        (REPO / "tests" / "lambda_events" / "eventbridge_object_created.json").read_text()
    )
    envelope = open_envelope(event)
    assert envelope.events == () and len(envelope.refs) == 1


def test_s3_api_calls_via_cloudtrail_are_events_not_object_notifications() -> None:
    """source aws.s3 with detail-type "AWS API Call via CloudTrail" is a CloudTrail record (an S3
    data or management event), not an Object Created notification."""
    event = {**sample("api_call_create_user.json"), "source": "aws.s3"}
    envelope = open_envelope(event)
    assert envelope.kind == "cloudtrail_event" and len(envelope.events) == 1
    assert envelope.refs == ()


def test_a_seed_log_alert_from_an_organisation_key_carries_account_and_region(
    handler: Callable[[str], None], moto: Moto, capfd: pytest.CaptureFixture[str]
) -> None:
    key = (
        "trail/AWSLogs/o-a1b2c3d4e5/210987654321/CloudTrail/eu-west-1/2021/07/10/"
        "210987654321_CloudTrail_eu-west-1_20210710T1650Z_abc.json.gz"
    )
    s3 = moto.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=key, Body=gzipped(SEED_LOG.read_bytes()))
    handler(config_text(CREATE_USER))
    capfd.readouterr()

    lambda_handler.handler(s3_event(BUCKET, key), LambdaContext())
    [alert] = printed(capfd)

    assert (alert["account"], alert["region"]) == ("210987654321", "eu-west-1")
