"""Generated CloudTrail buckets for the listing and backfill tests: organisation and account
trails side by side, digests, another service's logs and keys outside the layout, loaded into
the moto server's S3 backend directly (ten thousand PUTs over HTTP would take most of a minute).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import orjson

from tattletail.aws import AwsClients
from tests.support import Moto

ORG = "o-t3st0rg1d0"
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")


@dataclass(frozen=True)
class TrailObject:
    key: str
    account: str | None
    region: str | None
    day: date | None
    evaluated: bool  # a log or Insights file: what a backfill enqueues when its day is in range


def accounts(count: int) -> list[str]:
    return [f"{100000000000 + 7919 * n:012d}" for n in range(count)]


def log_key(
    account: str, region: str, day: date, n: int, org: bool, service: str = "CloudTrail"
) -> str:
    folder = f"AWSLogs/{ORG}/{account}" if org else f"AWSLogs/{account}"
    stamp = f"{day:%Y%m%d}T{(n * 5) // 60 % 24:02d}{(n * 5) % 60:02d}Z"
    unique = hashlib.sha256(f"{account}{region}{day}{n}".encode()).hexdigest()[:16]
    return (
        f"{folder}/{service}/{region}/{day:%Y/%m/%d}/"
        f"{account}_{service}_{region}_{stamp}_{unique}.json.gz"
    )


def generate(
    count: int, account_count: int, first: date, last: date, org_share: int = 2
) -> list[TrailObject]:
    """`count` log files spread evenly over accounts, REGIONS and the days first..last; every
    org_share-th account writes through the organisation trail. Plus a digest per account, an
    Insights file, another service's log and a key outside the layout."""
    names = accounts(account_count)
    span = (last - first).days + 1
    objects = []
    for n in range(count):
        account = names[n % account_count]
        region = REGIONS[(n // account_count) % len(REGIONS)]
        day = first + timedelta(days=(n * 7919) % span)
        key = log_key(account, region, day, n, org=n % account_count % org_share == 0)
        objects.append(TrailObject(key, account, region, day, True))
    for n, account in enumerate(names):
        day = first + timedelta(days=n % span)
        org = n % org_share == 0
        objects.append(
            TrailObject(
                log_key(account, "us-east-1", day, n, org, "CloudTrail-Digest"),
                account,
                "us-east-1",
                day,
                False,
            )
        )
    insight_day = first + timedelta(days=span // 2)
    objects.append(
        TrailObject(
            log_key(names[1], "eu-west-1", insight_day, 1, False, "CloudTrail-Insight"),
            names[1],
            "eu-west-1",
            insight_day,
            True,
        )
    )
    objects.append(
        TrailObject(
            f"AWSLogs/{names[0]}/vpcflowlogs/us-east-1/{insight_day:%Y/%m/%d}/flow.log.gz",
            names[0],
            "us-east-1",
            insight_day,
            False,
        )
    )
    objects.append(TrailObject("AWSLogs/README.txt", None, None, None, False))
    return objects


def record_for(item: TrailObject) -> dict[str, Any]:
    """One CloudTrail record for a generated file: its eventTime on the file's day (late in the
    day, as most records of a file are), its eventID derived from the key."""
    digest = hashlib.sha256(item.key.encode()).hexdigest()
    hour, minute = int(digest[2:4], 16) % 24, int(digest[4:6], 16) % 60
    event_name = ("CreateUser", "DescribeInstances", "ConsoleLogin", "PutBucketPolicy")[
        int(digest[:2], 16) % 4
    ]
    return {
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "IAMUser",
            "arn": f"arn:aws:iam::{item.account}:user/u{digest[:4]}",
        },
        "eventTime": f"{item.day:%Y-%m-%d}T{hour:02d}:{minute:02d}:00Z",
        "eventSource": "iam.amazonaws.com",
        "eventName": event_name,
        "awsRegion": item.region,
        "eventID": f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}",
        "recipientAccountId": item.account,
        "responseElements": {"user": {"userName": f"u{digest[:6]}"}},
    }


def body_for(item: TrailObject) -> bytes:
    if item.day is None or not item.key.endswith(".json.gz"):
        return b"not a log file"
    return gzip.compress(orjson.dumps({"Records": [record_for(item)]}), mtime=0)


def load(moto: Moto, bucket: str, objects: Iterable[TrailObject]) -> None:
    """Create the bucket over HTTP, then put the objects straight into moto's S3 backend."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    moto.client("s3").create_bucket(Bucket=bucket)
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for item in objects:
        backend.put_object(bucket, item.key, body_for(item))


def expected_keys(objects: Iterable[TrailObject], first: date, last: date) -> set[str]:
    """The reference selection: evaluated files whose key is dated in first..last."""
    return {o.key for o in objects if o.evaluated and o.day is not None and first <= o.day <= last}


@contextmanager
def s3_on_one_loop(moto: Moto) -> Iterator[tuple[asyncio.Runner, Any]]:
    """One event loop and one S3 client for a whole module: making a client costs half a
    second, which tests that list many times would pay each time."""
    with asyncio.Runner() as runner:
        aws = AwsClients(moto.endpoint)
        try:
            yield runner, runner.run(aws.client("s3"))
        finally:
            runner.run(aws.close())
