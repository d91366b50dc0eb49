"""`s3`: the archive buffers every alert and writes one JSON Lines object per rule at flush, whole;
as the dead-letter destination it writes each dead letter at once. Real (moto) S3, read back."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest

from tattletail.destinations import DeliveryError, DestinationConfigError
from tattletail.destinations.s3 import S3Destination, slug
from tests.destinations.destination_support import delivery, make_alert, synthetic_record
from tests.support import Moto

BUCKET = "alert-archive"
KEY = re.compile(
    r"^archive/alerts/(\d{4})/(\d{2})/(\d{2})/([a-z0-9-]+)/(\d{8}T\d{6}Z)-([0-9a-f]{32})\.jsonl$"
)


def archive() -> S3Destination:
    return S3Destination.build("Archive", {"bucket": BUCKET, "prefix": "/archive/alerts/"})


def read_lines(moto: Moto, uri: str) -> list[dict[str, Any]]:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    body = moto.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    assert body.endswith("\n")
    return [json.loads(line) for line in body.splitlines()]


async def test_flush_writes_one_jsonl_object_per_rule_with_every_alert_whole(moto: Moto) -> None:
    moto.client("s3").create_bucket(Bucket=BUCKET)
    big = synthetic_record()
    alerts = [make_alert(name="Create User"), make_alert(record=big, name="Create User")]
    alerts += [make_alert(name="Delete Trail!", match=None)]
    destination = archive()

    async with delivery(moto.endpoint) as context:
        for alert in alerts:
            await destination.send(alert, context)
        written = await destination.flush(context)

    assert [rule for rule, _ in written] == ["Create User", "Delete Trail!"]
    by_rule = dict(written)
    for rule, uri in written:
        key = uri.removeprefix(f"s3://{BUCKET}/")
        match = KEY.match(key)
        assert match, key
        assert match[4] == slug(rule)
    create_user = read_lines(moto, by_rule["Create User"])
    # Nothing is cut in the archive: the 1 MiB record is there whole.
    assert create_user == [
        {**alert.message(), "alert_id": alert.alert_id("Archive"), "source": alert.source}
        for alert in alerts[:2]
    ]
    assert create_user[1]["record"] == big
    assert [line["name"] for line in read_lines(moto, by_rule["Delete Trail!"])] == [
        "Delete Trail!"
    ]


async def test_each_flush_writes_only_what_came_since_the_last(moto: Moto) -> None:
    moto.client("s3").create_bucket(Bucket=BUCKET)
    destination = archive()

    async with delivery(moto.endpoint) as context:
        assert await destination.flush(context) == []
        await destination.send(make_alert(), context)
        [(_, first)] = await destination.flush(context)
        assert await destination.flush(context) == []
        await destination.send(make_alert(match="second"), context)
        [(_, second)] = await destination.flush(context)

    assert first != second
    assert [line["match"] for line in read_lines(moto, second)] == ["second"]
    listed = moto.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]
    assert len(listed) == 2


async def test_failed_flush_names_the_rules_and_is_not_written_again(moto: Moto) -> None:
    destination = archive()  # the bucket does not exist

    async with delivery(moto.endpoint) as context:
        await destination.send(make_alert(), context)
        with pytest.raises(DeliveryError) as raised:
            await destination.flush(context)
        assert await destination.flush(context) == []

    assert str(raised.value) == (
        "s3 archive: 1 of 1 objects not written: 'Create User': NoSuchBucket"
    )


async def test_dead_letter_is_written_at_once_whole_and_named_by_alert_id(moto: Moto) -> None:
    moto.client("s3").create_bucket(Bucket=BUCKET)
    record = synthetic_record()
    alert = make_alert(record=record)
    document = {
        "alert_id": alert.alert_id("Pager"),
        "failed_destination": "Pager Duty",
        "failed_destination_type": "pagerduty",
        "error": "pagerduty answered HTTP 500: boom",
        "source": alert.source,
        "alert": {**alert.message(), "severity": alert.severity},
    }

    async with delivery(moto.endpoint) as context:
        await archive().send_dead_letter(document, context)
        await archive().send_dead_letter(document, context)  # the same again: replaced

    [listed] = moto.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]
    assert re.match(
        rf"^archive/alerts/dead-letter/\d{{4}}/\d{{2}}/\d{{2}}/pager-duty/{document['alert_id']}"
        r"\.json$",
        listed["Key"],
    )
    body = moto.client("s3").get_object(Bucket=BUCKET, Key=listed["Key"])["Body"].read()
    assert json.loads(body) == document


def test_archive_is_unlimited_receives_held_alerts_and_keeps_dead_letters() -> None:
    destination = archive()

    assert destination.archive and destination.can_dead_letter
    assert destination.rate() is None
    assert destination.prefix == "archive/alerts"
    assert S3Destination.build("A", {"bucket": BUCKET}).prefix == "tattletail"


async def test_every_copy_of_the_destination_has_its_own_buffer() -> None:
    first = archive()
    copy = dataclasses.replace(first, rate_limit=5.0)

    async with delivery() as context:
        await first.send(make_alert(), context)

    assert first._pending and not copy._pending  # type: ignore[attr-defined]
    assert "_pending" not in S3Destination.config_keys()


@pytest.mark.parametrize(
    ("name", "expected"),
    [("Create User", "create-user"), ("  ***  ", "unnamed"), ("Ünïcode / IAM", "n-code-iam")],
)
def test_slug(name: str, expected: str) -> None:
    assert slug(name) == expected


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({}, "destination.bucket must be set"),
        ({"bucket": "s3://alert-archive"}, "must be an S3 bucket name"),
        ({"bucket": "Alert_Archive"}, "must be an S3 bucket name"),
        ({"bucket": BUCKET, "prefix": 3}, "destination.prefix must be a string"),
    ],
)
def test_config_problems_are_reported(settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(DestinationConfigError) as raised:
        S3Destination.from_config("Archive", settings)

    assert problem in str(raised.value)
