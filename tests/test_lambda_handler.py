"""The Lambda handler end to end, over real protocols.

The original project's own scenario (its cloudtrail_tattletail_test.go): the seed log gzipped
into S3, the config read from S3 through S3_CONFIG_BUCKET/S3_CONFIG_PATH, the handler invoked
twice with an S3 event notification, and each run delivering exactly one "Create User" alert to
SNS, SES and Slack. Here S3, SNS, SQS and SES are a moto server reached over HTTP and Slack is a
local aiohttp stand-in; nothing inside Tattletail is patched.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import orjson
import pytest

import tattletail
from tattletail import lambda_handler
from tattletail.dispatch import DeliveryIncomplete
from tests.support import SEED_LOG, SHARED_DATA, Moto, SlackStandIn, gzipped

EVENTS = Path(__file__).resolve().parent / "lambda_events"
LOG_BUCKET = "interlinked-buzzards"
CONFIG_BUCKET = "mandrake-aquarius"
CONFIG_KEY = "tattletail/horseplay-shoveling.toml"
# A CloudTrail-style key with a space and an '=': S3 notifications URL-encode both.
LOG_KEY = (
    "AWSLogs/123456789/CloudTrail/us-east-1/2021/07/10/"
    "123456789_CloudTrail_us-east-1_20210710T1645Z run=1 copy.json.gz"
)
FROM_EMAIL = "cloudtrail_tattletail@example.com"
TO_EMAILS = ["foo@example.com", "bar@example.com"]
SEED_RECORDS: list[dict[str, Any]] = orjson.loads(SEED_LOG.read_bytes())["Records"]
CREATE_USER = SEED_RECORDS[1]

# The original project's README, whose configuration example is the config used here.
ORIGINAL_README = SHARED_DATA.parent / "seed" / "cloudtrail-tattletail-README.txt"


def readme_config(sns_arn: str, webhook_url: str) -> str:
    """The README's configuration example, verbatim, with its destinations pointed at the moto
    topic, the Slack stand-in and a verified SES sender."""
    text = ORIGINAL_README.read_text()
    config = text[text.index("[[rule]]") : text.index("The configuration file can either")]
    values = {
        "sns_arn": json.dumps(sns_arn),
        "webhook_url": json.dumps(webhook_url),
        "to_emails": json.dumps(TO_EMAILS),
        "from_email": json.dumps(FROM_EMAIL),
    }
    for key, value in values.items():
        config, count = re.subn(rf"^{key} = .*$", f"{key} = {value}", config, flags=re.M)
        assert count == 1, key
    assert config.count("[[rule]]") == 3
    return config


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that a handler may read."""

    aws_request_id: str
    function_name: str = "tattletail"
    memory_limit_in_mb: int = 1024
    remaining_ms: int = 300_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@dataclass
class Scenario:
    moto: Moto
    slack: SlackStandIn
    topic_arn: str
    queue_url: str
    slack_seen: int = 0
    emails_seen: int = 0
    env: dict[str, str] = field(default_factory=dict)

    def put_log(self, key: str, body: bytes) -> None:
        self.moto.client("s3").put_object(Bucket=LOG_BUCKET, Key=key, Body=body)

    def new_sns_messages(self) -> list[dict[str, Any]]:
        """SNS notifications delivered to the subscribed queue since the last call."""
        sqs = self.moto.client("sqs")
        notifications = []
        while True:
            batch = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not batch:
                return notifications
            for message in batch:
                notifications.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def new_emails(self) -> list[Any]:
        emails = self.moto.sent_emails()
        new, self.emails_seen = emails[self.emails_seen :], len(emails)
        return new

    def new_slack_requests(self) -> list[dict[str, Any]]:
        received = self.slack.received()
        new, self.slack_seen = received[self.slack_seen :], len(received)
        return new


def s3_event(*keys: str, bucket: str = LOG_BUCKET) -> dict[str, Any]:
    """An S3 event notification as S3 sends it (the sample's shape, keys URL-encoded)."""
    template = json.loads((EVENTS / "s3_object_created.json").read_text())["Records"][0]
    records = []
    for key in keys:
        record = json.loads(json.dumps(template))
        record["s3"]["bucket"]["name"] = bucket
        record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
        record["s3"]["object"]["key"] = quote_plus(key, safe="/")
        records.append(record)
    return {"Records": records}


def log_lines(text: str) -> list[dict[str, Any]]:
    """Tattletail's JSON log lines in captured output (anything else is skipped)."""
    lines = []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and "event" in value:
            lines.append(value)
    return lines


def events_named(lines: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [line for line in lines if line["event"] == name]


# The stand-ins' own loggers: the Slack stand-in's access log shows the path it was sent to,
# as Slack's own logs would; that is the receiver, not Tattletail.
STAND_IN_LOGGERS = ("aiohttp.access", "aiohttp.server", "werkzeug")


def client_side_log_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every captured log record (any library, any level captured) but the stand-ins'."""
    return [
        caplog.handler.format(record)
        for record in caplog.records
        if not record.name.startswith(STAND_IN_LOGGERS)
    ]


def assert_no_secret(webhook_url: str, *outputs: str) -> None:
    token = webhook_url.rsplit("/", 1)[1]
    path = webhook_url.split("/", 3)[3]
    for output in outputs:
        for line in output.splitlines():
            assert token not in line
            assert path not in line
            assert webhook_url not in line


@pytest.fixture
def scenario(
    moto: Moto, slack: SlackStandIn, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Scenario]:
    lambda_handler.shutdown()
    s3, sns, sqs, ses = (moto.client(name) for name in ("s3", "sns", "sqs", "ses"))
    s3.create_bucket(Bucket=LOG_BUCKET)
    s3.create_bucket(Bucket=CONFIG_BUCKET)
    topic_arn = sns.create_topic(Name="cloudtail_alert")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    ses.verify_email_identity(EmailAddress=FROM_EMAIL)
    config = readme_config(topic_arn, slack.url)
    s3.put_object(Bucket=CONFIG_BUCKET, Key=CONFIG_KEY, Body=config.encode())
    env = {
        "S3_CONFIG_BUCKET": CONFIG_BUCKET,
        "S3_CONFIG_PATH": CONFIG_KEY,
        "TATTLETAIL_WORKERS": "1",
        "TATTLETAIL_LOG_LEVEL": "INFO",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TATTLETAIL_CONFIG", raising=False)
    yield Scenario(moto, slack, topic_arn, queue_url, env=env)
    lambda_handler.shutdown()


def assert_create_user_alert_everywhere(scenario: Scenario) -> None:
    """Exactly one "Create User" alert reached SNS, SES and Slack since the last check."""
    notifications = scenario.new_sns_messages()
    assert len(notifications) == 1
    assert notifications[0]["Subject"] == "Tattletail: Create User"
    message = json.loads(notifications[0]["Message"])
    # The original's keys (rule metadata such as severity may sit beside them).
    assert {key: message[key] for key in ("name", "description", "record", "match")} == {
        "name": "Create User",
        "description": "A new IAM user has been created",
        "record": CREATE_USER,
        "match": "username: user1",
    }

    emails = scenario.new_emails()
    assert len(emails) == 1
    email = emails[0]
    assert email.source == FROM_EMAIL
    assert email.destinations["ToAddresses"] == TO_EMAILS
    assert "Create User" in email.subject
    assert "Create User" in email.body
    assert "A new IAM user has been created" in email.body
    assert "username: user1" in email.body
    assert CREATE_USER["eventID"] in email.body
    assert '"eventName": "CreateUser"' in email.body

    requests = scenario.new_slack_requests()
    by_text = sorted(request["body"]["text"] for request in requests)
    # "Modifications" (a README rule sending to Slack only) also matches CreateUser.
    assert by_text == ["Tattletail: Create User", "Tattletail: Modifications"]
    create_user = next(r["body"] for r in requests if r["body"]["text"].endswith("Create User"))
    blocks = json.dumps(create_user["blocks"])
    assert "A new IAM user has been created" in blocks
    assert "username: user1" in blocks
    assert CREATE_USER["eventID"] in blocks


def test_original_scenario_twice_delivers_one_create_user_alert_per_run(
    scenario: Scenario,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TATTLETAIL_WORKERS", "2")
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    scenario.put_log(LOG_KEY, gzipped(SEED_LOG.read_bytes()))
    event = s3_event(LOG_KEY)
    assert "run%3D1+copy.json.gz" in event["Records"][0]["s3"]["object"]["key"]
    expected = {
        "objects": 1,
        "objects_failed": 0,
        "objects_skipped": 0,
        "records": 3,
        "matches": 2,
        "alerts_sent": 4,
        "alerts_failed": 0,
        "rule_errors": 0,
    }

    captured = []
    for run in range(2):
        result = lambda_handler.handler(event, LambdaContext(aws_request_id=f"request-{run}"))

        output = capfd.readouterr()
        captured.append(output)
        lines = log_lines(output.err)
        summaries = events_named(lines, "invocation_summary")
        assert len(summaries) == 1
        assert {key: summaries[0][key] for key in expected} == expected
        assert summaries[0]["envelope"] == "s3"
        assert summaries[0]["request_id"] == f"request-{run}"
        assert summaries[0]["matches_by_rule"] == {"Create User": 1, "Modifications": 1}
        assert {key: result[key] for key in expected} == expected
        # The config is loaded and the pool started once per container, not per invocation.
        assert len(events_named(lines, "service_started")) == (1 if run == 0 else 0)
        processed = events_named(lines, "object_processed")
        assert [line["object"] for line in processed] == [f"s3://{LOG_BUCKET}/{LOG_KEY}"]
        assert_create_user_alert_everywhere(scenario)

    assert_no_secret(
        scenario.slack.url,
        *(output.err for output in captured),
        *(output.out for output in captured),
        *client_side_log_messages(caplog),
    )


def test_alerts_are_delivered_without_usable_dev_shm_as_in_lambda(
    scenario: Scenario, tmp_path: Path
) -> None:
    """Lambda has no /dev/shm: POSIX semaphores (multiprocessing.Lock, Pool, Queue) fail there.
    Run the handler where /dev/shm is an empty read-only directory: the worker pool (2 workers)
    must still deliver every alert, while Pool(1) and Lock() fail in that same environment."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("`unshare` is not installed: cannot hide /dev/shm")
    empty = tmp_path / "empty-shm"
    empty.mkdir()
    wrapper = [
        unshare,
        "-m",
        "sh",
        "-c",
        f'mount --bind -o ro "{empty}" /dev/shm && exec "$@"',
        "sh",
    ]
    probe = subprocess.run([*wrapper, "true"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"cannot bind-mount over /dev/shm in a mount namespace: {probe.stderr.strip()}")

    script = tmp_path / "invoke.py"
    script.write_text(
        textwrap.dedent(
            """\
            import json, multiprocessing, os, sys


            class Context:
                aws_request_id = "no-shm"
                function_name = "tattletail"


            def main():
                # Imported here: spawned workers re-import this module and need none of it.
                from tattletail import lambda_handler

                result = lambda_handler.handler(json.loads(sys.argv[1]), Context())
                lambda_handler.shutdown()
                outcome = {"result": result, "dev_shm_entries": os.listdir("/dev/shm")}
                try:
                    multiprocessing.Lock()
                    outcome["lock"] = None
                except OSError as exc:
                    outcome["lock"] = f"OSError: {exc}"
                try:
                    with multiprocessing.get_context("spawn").Pool(1) as pool:
                        pool.map(abs, [-1])
                    outcome["pool"] = None
                except OSError as exc:
                    outcome["pool"] = f"OSError: {exc}"
                print("RESULT " + json.dumps(outcome), flush=True)


            # Spawned workers re-import the main module: only the parent invokes.
            if __name__ == "__main__":
                main()
            """
        )
    )
    scenario.put_log(LOG_KEY, gzipped(SEED_LOG.read_bytes()))
    # The child imports the very package under test, whatever is installed.
    package_root = str(Path(tattletail.__file__).resolve().parents[1])
    env = {
        **os.environ,
        **scenario.env,
        "TATTLETAIL_WORKERS": "2",
        "TATTLETAIL_METRICS": "false",
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
    }
    assert env["AWS_ENDPOINT_URL"] == scenario.moto.endpoint

    completed = subprocess.run(
        [*wrapper, sys.executable, str(script), json.dumps(s3_event(LOG_KEY))],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert completed.returncode == 0, completed.stderr
    result_lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(result_lines) == 1, completed.stdout
    outcome = json.loads(result_lines[0].removeprefix("RESULT "))
    # Proof that the environment really is Lambda-like: POSIX semaphores cannot be created.
    assert outcome["dev_shm_entries"] == []
    assert outcome["lock"] is not None and outcome["lock"].startswith("OSError")
    assert outcome["pool"] is not None and outcome["pool"].startswith("OSError")
    # ... and the handler delivered anyway, with both workers.
    assert outcome["result"]["objects"] == 1
    assert outcome["result"]["alerts_sent"] == 4
    assert outcome["result"]["alerts_failed"] == 0
    lines = log_lines(completed.stderr)
    assert events_named(lines, "service_started")[0]["workers"] == 2
    assert events_named(lines, "invocation_summary")[0]["alerts_sent"] == 4
    assert_create_user_alert_everywhere(scenario)
    assert_no_secret(scenario.slack.url, completed.stderr, completed.stdout)


def test_bad_objects_are_logged_and_fail_the_invocation_after_good_alerts_are_delivered(
    scenario: Scenario, capfd: pytest.CaptureFixture[str]
) -> None:
    seed = SEED_LOG.read_bytes()
    objects = {
        "AWSLogs/good one.json.gz": gzipped(seed),
        "AWSLogs/corrupt.json.gz": b"\x1f\x8b\x08\x00" + b"this is not deflate data" * 20,
        "AWSLogs/truncated.json.gz": gzipped(seed[: len(seed) // 2]),
        "AWSLogs/empty.json.gz": b"",
    }
    for key, body in objects.items():
        scenario.put_log(key, body)
    missing = "AWSLogs/never uploaded.json.gz"
    event = s3_event(*objects, missing)

    with pytest.raises(lambda_handler.ObjectsFailed) as raised:
        lambda_handler.handler(event, LambdaContext(aws_request_id="bad-objects"))

    uri = f"s3://{LOG_BUCKET}/"
    message = str(raised.value)
    assert message.startswith("2 of 5 objects failed")
    for key in ("AWSLogs/corrupt.json.gz", missing):
        assert uri + key in message
    assert "good one" not in message and "empty" not in message
    # A file cut short is read up to the cut: only the record it ends inside fails.
    assert "truncated" not in message

    lines = log_lines(capfd.readouterr().err)
    failed = {line["object"]: line for line in events_named(lines, "object_failed")}
    assert {key: line["reason"] for key, line in failed.items()} == {
        uri + "AWSLogs/corrupt.json.gz": "corrupt_gzip",
        uri + missing: "not_found",
    }
    [record_failed] = events_named(lines, "record_failed")
    assert record_failed["object"] == uri + "AWSLogs/truncated.json.gz"
    assert record_failed["level"] == "ERROR" and record_failed["reason"] == "invalid_json"
    assert all(line["level"] == "ERROR" and line["error"] for line in failed.values())
    skipped = events_named(lines, "object_skipped")
    assert [(line["object"], line["reason"]) for line in skipped] == [
        (uri + "AWSLogs/empty.json.gz", "empty")
    ]
    summary = events_named(lines, "invocation_summary")[0]
    assert summary["objects"] == 2
    assert summary["objects_failed"] == 2
    assert summary["objects_skipped"] == 1
    assert summary["records_failed"] == 1
    assert summary["failures_by_reason"] == {"corrupt_gzip": 1, "not_found": 1}
    assert summary["alerts_sent"] == 4
    # The good object's alerts went out before the invocation failed.
    assert_create_user_alert_everywhere(scenario)


def test_slack_failing_does_not_stop_other_destinations_or_records_and_fails_the_run_last(
    scenario: Scenario, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No retries: the one 500 is this send's final answer.
    monkeypatch.setenv("TATTLETAIL_SEND_RETRIES", "0")
    keys = ["AWSLogs/first.json.gz", "AWSLogs/second.json.gz"]
    for key in keys:
        scenario.put_log(key, gzipped(SEED_LOG.read_bytes()))
    scenario.slack.fail_next(500)

    # Undelivered and no dead_letter destination: the invocation fails, after everything else.
    with pytest.raises(DeliveryIncomplete, match="^1 alert deliveries failed"):
        lambda_handler.handler(s3_event(*keys), LambdaContext(aws_request_id="slack-500"))

    # Two objects: 4 matches, 2 to SNS, 2 to SES, 4 to Slack of which the first answered 500.
    assert len(scenario.new_sns_messages()) == 2
    assert len(scenario.new_emails()) == 2
    statuses = sorted(request["status"] for request in scenario.new_slack_requests())
    assert statuses == [200, 200, 200, 500]
    output = capfd.readouterr()
    lines = log_lines(output.err)
    failures = events_named(lines, "alert_delivery_failed")
    assert len(failures) == 1
    assert failures[0]["destination"] == "Slack Warnings"
    assert failures[0]["destination_type"] == "slack_webhook"
    assert "HTTP 500" in failures[0]["error"]
    assert len(events_named(lines, "object_processed")) == 2
    [summary] = events_named(lines, "invocation_summary")
    assert summary["objects"] == 2
    assert summary["matches"] == 4
    assert (summary["alerts_sent"], summary["alerts_failed"]) == (7, 1)
    assert summary["sent_by_destination"] == {
        "Default SNS": 2,
        "Email": 2,
        "Slack Warnings": 3,
    }
    assert summary["failed_by_destination"] == {"Slack Warnings": 1}
    assert_no_secret(scenario.slack.url, output.err, output.out)


def test_slack_500_is_retried_and_the_alert_delivered(
    scenario: Scenario, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TATTLETAIL_RETRY_BASE", "0.01")  # backoff of at most 10 ms
    scenario.put_log(LOG_KEY, gzipped(SEED_LOG.read_bytes()))
    scenario.slack.fail_next(500)

    result = lambda_handler.handler(s3_event(LOG_KEY), LambdaContext(aws_request_id="retry"))

    assert (result["alerts_sent"], result["alerts_failed"], result["alerts_retried"]) == (4, 0, 1)
    statuses = sorted(request["status"] for request in scenario.slack.received())
    assert statuses == [200, 200, 500]
    [retry] = events_named(log_lines(capfd.readouterr().err), "alert_delivery_retry")
    assert retry["destination"] == "Slack Warnings" and "HTTP 500" in retry["error"]


def test_retries_never_run_past_the_lambda_deadline(
    scenario: Scenario, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 6 s left, of which the dispatcher keeps 5 s in reserve, a retry (whose send may take
    the 10 s send timeout) cannot fit: the failed send is final at once."""
    # Evaluation may start this close to the deadline (by default it would not: see below).
    monkeypatch.setenv("TATTLETAIL_DEADLINE_MARGIN", "1")
    scenario.put_log(LOG_KEY, gzipped(SEED_LOG.read_bytes()))
    scenario.slack.fail_next(500)
    context = LambdaContext(aws_request_id="deadline", remaining_ms=6_000)

    with pytest.raises(DeliveryIncomplete):
        lambda_handler.handler(s3_event(LOG_KEY), context)

    assert sorted(request["status"] for request in scenario.slack.received()) == [200, 500]
    lines = log_lines(capfd.readouterr().err)
    [failure] = events_named(lines, "alert_delivery_failed")
    assert failure["error"].endswith("(gave up: retry budget exhausted)")
    assert events_named(lines, "alert_delivery_retry") == []
    assert events_named(lines, "invocation_summary")[0]["alerts_failed"] == 1


def test_sqs_batch_reports_only_the_message_whose_object_failed(scenario: Scenario) -> None:
    scenario.put_log("AWSLogs/good.json.gz", gzipped(SEED_LOG.read_bytes()))
    template = json.loads((EVENTS / "sqs_s3_notification.json").read_text())["Records"][1]
    event = {
        "Records": [
            dict(
                template,
                messageId="message-good",
                body=json.dumps(s3_event("AWSLogs/good.json.gz")),
            ),
            dict(
                template, messageId="message-bad", body=json.dumps(s3_event("AWSLogs/gone.json.gz"))
            ),
        ]
    }

    result = lambda_handler.handler(event, LambdaContext(aws_request_id="sqs"))

    assert result == {"batchItemFailures": [{"itemIdentifier": "message-bad"}]}
    assert_create_user_alert_everywhere(scenario)


def test_test_event_and_unrecognised_event_deliver_nothing_and_do_not_fail(
    scenario: Scenario, capfd: pytest.CaptureFixture[str]
) -> None:
    test_event = json.loads((EVENTS / "s3_test_event.json").read_text())
    scheduled = json.loads((EVENTS / "eventbridge_scheduled_event.json").read_text())

    tested = lambda_handler.handler(test_event, LambdaContext(aws_request_id="test-event"))
    unrecognised = lambda_handler.handler(scheduled, LambdaContext(aws_request_id="scheduled"))

    assert tested["objects"] == 0 and tested["alerts_sent"] == 0
    assert unrecognised == {"status": "unrecognised"}
    lines = log_lines(capfd.readouterr().err)
    assert [line["reason"] for line in events_named(lines, "notification_ignored")] == [
        "s3:TestEvent"
    ]
    [warning] = events_named(lines, "event_unrecognised")
    assert warning["level"] == "WARNING"
    assert warning["shape"].startswith("object with keys account, detail")
    assert scenario.new_sns_messages() == []
    assert scenario.new_slack_requests() == []


# -- runaway rules and the invocation's deadline (issue 10, defect 4) ----------------------


def sqs_event(*keys: str) -> dict[str, Any]:
    """An SQS batch with one S3 notification per message, named message-1, message-2, ..."""
    template = json.loads((EVENTS / "sqs_s3_notification.json").read_text())["Records"][1]
    return {
        "Records": [
            dict(template, messageId=f"message-{n}", body=json.dumps(s3_event(key)))
            for n, key in enumerate(keys, 1)
        ]
    }


def use_config_with(scenario: Scenario, extra: str) -> None:
    config = readme_config(scenario.topic_arn, scenario.slack.url) + textwrap.dedent(extra)
    scenario.moto.client("s3").put_object(Bucket=CONFIG_BUCKET, Key=CONFIG_KEY, Body=config)


RUNAWAY = """
    [[rule]]
    name = "Runaway"
    jq_match = 'select(.eventName == "CreateUser") | def f: f; f'
    description = "never ends"
    destinations = ["Slack Warnings"]
    """


def test_a_runaway_rule_is_quarantined_once_for_the_container_and_every_invocation_alerts(
    scenario: Scenario, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TATTLETAIL_BATCH_TIMEOUT", "1")
    use_config_with(scenario, RUNAWAY)
    scenario.put_log(LOG_KEY, gzipped(SEED_LOG.read_bytes()))

    first = lambda_handler.handler(s3_event(LOG_KEY), LambdaContext(aws_request_id="first"))
    assert_create_user_alert_everywhere(scenario)
    second = lambda_handler.handler(s3_event(LOG_KEY), LambdaContext(aws_request_id="second"))
    assert_create_user_alert_everywhere(scenario)

    assert (first["rules_quarantined"], second["rules_quarantined"]) == (1, 0)
    assert first["objects_failed"] == second["objects_failed"] == 0
    lines = log_lines(capfd.readouterr().err)
    [quarantined] = events_named(lines, "rule_quarantined")
    assert quarantined["level"] == "ERROR" and quarantined["request_id"] == "first"
    assert (quarantined["rule"], quarantined["reason"]) == ("Runaway", "overrun")


def test_objects_not_started_before_the_deadline_margin_come_back_as_batch_item_failures(
    scenario: Scenario, capfd: pytest.CaptureFixture[str]
) -> None:
    scenario.put_log("AWSLogs/a.json.gz", gzipped(SEED_LOG.read_bytes()))
    scenario.put_log("AWSLogs/b.json.gz", gzipped(SEED_LOG.read_bytes()))
    # 20 s left: inside the default 30 s margin, nothing is started.
    context = LambdaContext(aws_request_id="late", remaining_ms=20_000)

    result = lambda_handler.handler(sqs_event("AWSLogs/a.json.gz", "AWSLogs/b.json.gz"), context)

    assert result == {
        "batchItemFailures": [{"itemIdentifier": "message-1"}, {"itemIdentifier": "message-2"}]
    }
    assert scenario.new_slack_requests() == []
    lines = log_lines(capfd.readouterr().err)
    assert [line["reason"] for line in events_named(lines, "object_failed")] == ["deadline"] * 2
    assert events_named(lines, "invocation_summary")[0]["records"] == 0


def test_evaluation_stops_at_the_deadline_margin_after_what_finished_is_delivered(
    scenario: Scenario, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TATTLETAIL_DEADLINE_MARGIN", "2")
    monkeypatch.setenv("TATTLETAIL_OBJECT_CONCURRENCY", "1")
    # The default 60 s batch limit would let it run far past the invocation's end.
    use_config_with(
        scenario,
        """
        [[rule]]
        name = "Slow on one file"
        jq_match = 'select(.eventID == "runs-forever") | def f: f; f'
        description = "d"
        destinations = ["Slack Warnings"]
        """,
    )
    seed = SEED_LOG.read_bytes()
    scenario.put_log("AWSLogs/good.json.gz", gzipped(seed))
    records = orjson.loads(seed)["Records"]
    slow = [dict(records[0], eventID="runs-forever"), *records]
    scenario.put_log("AWSLogs/slow.json.gz", gzipped(orjson.dumps({"Records": slow})))
    scenario.put_log("AWSLogs/late.json.gz", gzipped(seed))
    # 6 s left: evaluation must end 2 s before the deadline.
    context = LambdaContext(aws_request_id="deadline", remaining_ms=6_000)

    result = lambda_handler.handler(
        sqs_event("AWSLogs/good.json.gz", "AWSLogs/slow.json.gz", "AWSLogs/late.json.gz"),
        context,
    )

    # The finished file's alerts went out; the two others come back to be tried again.
    assert result == {
        "batchItemFailures": [{"itemIdentifier": "message-2"}, {"itemIdentifier": "message-3"}]
    }
    assert_create_user_alert_everywhere(scenario)
    lines = log_lines(capfd.readouterr().err)
    failed = {
        line["object"].rsplit("/", 1)[1]: line for line in events_named(lines, "object_failed")
    }
    assert {name: line["reason"] for name, line in failed.items()} == {
        "slow.json.gz": "deadline",
        "late.json.gz": "deadline",
    }
    assert "not started" in failed["late.json.gz"]["error"]
    # Stopped by the deadline, not by its own limit: the rule is not blamed.
    assert events_named(lines, "rule_quarantined") == []
