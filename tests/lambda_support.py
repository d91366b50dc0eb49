"""Helpers for tests that drive the Lambda handler: S3 events in AWS's documented shape and a
bucket holding the original's seed log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

from tests.conftest import REGION, SEED_LOG, Moto, gzipped

BUCKET = "trail-bucket"
CONFIG_BUCKET = "config-bucket"
SEED_KEY = "AWSLogs/123456789/CloudTrail/us-east-1/2021/07/10/123456789_CloudTrail_seed 1.json.gz"


@dataclass
class LambdaContext:
    aws_request_id: str = "req-1"
    function_name: str = "tattletail-test"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def s3_event(bucket: str, *keys: str) -> dict[str, Any]:
    """An S3 ObjectCreated notification as S3 sends it (keys URL-encoded)."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": REGION,
                "eventTime": "2021-07-10T16:50:00.000Z",
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:cloudtrail"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {"x-amz-request-id": "1", "x-amz-id-2": "2"},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "tattletail",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "A1"},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": {"key": quote_plus(key, safe="/"), "size": 1, "eTag": "e"},
                },
            }
            for key in keys
        ]
    }


def put_seed_log(moto: Moto) -> None:
    s3 = moto.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=SEED_KEY, Body=gzipped(SEED_LOG.read_bytes()))


def stdout_config(jq_match: str, name: str = "Create User") -> str:
    """A one-rule config whose alerts go to the stdout destination."""
    return f"""
[[rule]]
name = "{name}"
jq_match = '{jq_match}'
description = "test rule"
destinations = ["Out"]

[[destination]]
id = "Out"
type = "stdout"
"""
