"""Every way an alert is written (each destination's render, dead letters, the S3 archive)
carries values orjson cannot write: an annotation with integers beyond 64 bits, a record
nested 300 levels deep (issue 10, defects 1 and 2)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tattletail.alerts import Alert
from tattletail.destinations import (
    eventbridge,
    pagerduty,
    s3,
    ses,
    slack_webhook,
    sns,
    sqs,
    stdout,
    webhook,
)
from tattletail.json_output import dumps
from tattletail.records import RecordJSON
from tests.destinations.destination_support import CREATE_USER, delivery, make_alert
from tests.support import Moto

BIG = 10**20
DEEP = json.loads("[" * 300 + "]" * 300)
ANNOTATION = {"n": BIG, "negative": -(2**70), "deep": DEEP}


def alerts() -> list[Alert]:
    record = {**CREATE_USER, "deep": DEEP}
    return [
        make_alert(record=record, match=ANNOTATION),
        # As a match arrives from a worker: the record as its JSON text.
        make_alert(record=RecordJSON(dumps(record), record["eventID"]), match=[BIG]),
    ]


def _text(rendered: Any) -> str:
    if isinstance(rendered, bytes):
        return rendered.decode()
    return rendered if isinstance(rendered, str) else json.dumps(rendered)


RENDERS: dict[str, Callable[[Alert], Any]] = {
    "stdout": stdout.render,
    "sns": sns.render,
    "sqs": lambda alert: sqs.render(alert, "Queue"),
    "eventbridge": lambda alert: eventbridge.render(alert, "Bus", "default"),
    "pagerduty": lambda alert: pagerduty.render(alert, "Pager", "routing-key"),
    "webhook": lambda alert: webhook.render(alert, "Hook"),
    "slack_webhook": lambda alert: dumps(slack_webhook.render(alert)),
    "ses": ses.render,
    "s3 archive line": lambda alert: s3.line(alert, "Archive"),
    "sqs dead letter": lambda alert: sqs.render_dead_letter(dead_letter(alert)),
}


def dead_letter(alert: Alert) -> dict[str, Any]:
    return {
        "alert_id": alert.alert_id("Pager"),
        "failed_destination": "Pager",
        "error": "HTTP 500",
        "source": alert.source,
        "alert": {**alert.message(), "severity": alert.severity},
    }


@pytest.mark.parametrize("render", list(RENDERS.values()), ids=list(RENDERS))
def test_every_render_writes_big_integers_with_all_their_digits(
    render: Callable[[Alert], Any],
) -> None:
    for alert in alerts():
        text = _text(render(alert))
        # Written as JSON inside JSON (SNS, EventBridge) or pretty (SES, Slack): the digits.
        assert str(BIG) in text


async def test_the_s3_archive_and_its_dead_letters_keep_every_value(moto: Moto) -> None:
    moto.client("s3").create_bucket(Bucket="archive")
    archive = s3.S3Destination.build("Archive", {"bucket": "archive"})
    async with delivery(moto.endpoint) as context:
        for alert in alerts():
            await archive.send(alert, context)
        [(_, location)] = await archive.flush(context)
        await archive.send_dead_letter(dead_letter(alerts()[0]), context)

    client = moto.client("s3")
    key = location.removeprefix("s3://archive/")
    lines = client.get_object(Bucket="archive", Key=key)["Body"].read().splitlines()
    assert [json.loads(line)["match"] for line in lines] == [ANNOTATION, [BIG]]
    assert all(json.loads(line)["record"]["deep"] == DEEP for line in lines)
    keys = [item["Key"] for item in client.list_objects_v2(Bucket="archive")["Contents"]]
    [letter] = [k for k in keys if "/dead-letter/" in k]
    body = json.loads(client.get_object(Bucket="archive", Key=letter)["Body"].read())
    assert body["alert"]["match"] == ANNOTATION
