"""What the destination tests share: alerts built from real CloudTrail records, the largest real
records, a 1 MB synthetic record, and a DeliveryContext made in the test's own event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from typing import Any

import orjson

from tattletail.alerts import Alert
from tattletail.aws import AwsClients
from tattletail.destinations import DeliveryContext
from tests.support import SEED_LOG, real_records

CREATE_USER: dict[str, Any] = orjson.loads(SEED_LOG.read_bytes())["Records"][1]
# Never reached: for destinations that need no AWS client.
NO_AWS = "http://127.0.0.1:9"
# Identifying fields a truncated record must keep (with userIdentity.arn).
MARKER_FIELDS = ("eventID", "eventName", "eventTime", "eventSource")


def make_alert(
    record: dict[str, Any] | None = None,
    *,
    match: Any = "username: user1",
    name: str = "Create User",
    description: str = "A new IAM user has been created",
    severity: str = "medium",
    title: str | None = None,
    tags: tuple[str, ...] = (),
    runbook: str | None = None,
    destinations: tuple[str, ...] = ("Out",),
) -> Alert:
    return Alert(
        rule_name=name,
        description=description,
        record=CREATE_USER if record is None else record,
        match=match,
        source="s3://trail-bucket/AWSLogs/1.json.gz",
        destinations=destinations,
        severity=severity,
        title=title,
        tags=tags,
        runbook=runbook,
    )


@cache
def largest_real_records(count: int = 3) -> tuple[dict[str, Any], ...]:
    """The `count` largest records of ../shared/data (by JSON size), largest last."""
    records = sorted(real_records(), key=lambda record: len(orjson.dumps(record)))
    return tuple(records[-count:])


def synthetic_record(size: int = 1024 * 1024) -> dict[str, Any]:
    """The seed CreateUser with a policy document that makes its JSON at least `size` bytes (by
    default 1 MiB); its texts hold characters that JSON escapes and multi-byte UTF-8, so bytes
    and characters differ."""
    chunk = 'Statement "é" <&> \\ ü\n'
    document = chunk * (size // (len(orjson.dumps(chunk)) - 2) + 1)
    return {
        **CREATE_USER,
        "requestParameters": {**CREATE_USER["requestParameters"], "policyDocument": document},
    }


def json_size(value: Any) -> int:
    return len(orjson.dumps(value))


def assert_is_marker(value: Any, original: dict[str, Any]) -> None:
    """`value` is the marker that stands for `original`: identifying fields, truncated, size."""
    assert isinstance(value, dict)
    for key in MARKER_FIELDS:
        assert value[key] == original[key]
    assert value["userIdentity"] == {"arn": original["userIdentity"]["arn"]}
    assert value["truncated"] is True
    assert value["original_size_bytes"] == json_size(original)


@asynccontextmanager
async def delivery(endpoint: str = NO_AWS, timeout: float = 10.0) -> AsyncIterator[DeliveryContext]:
    """A DeliveryContext whose clients are made and closed in the test's own event loop."""
    aws = AwsClients(endpoint)
    context = DeliveryContext(aws, timeout)
    try:
        yield context
    finally:
        await context.close()
        await aws.close()
