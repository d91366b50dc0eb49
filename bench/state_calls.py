"""What the rules with memory cost in DynamoDB: requests per 1,000 records.

Runs the Lambda handler in this process over log files in a local moto server (S3, SNS,
DynamoDB, reached over HTTP as in Lambda), with the rule pack (config/tattletail-pack.toml,
whose rules with memory are listed in docs/stateful-rules.md), one invocation per
`--per-invocation` files in key order, and adds up the state store's requests by operation
(RunSummary.state_calls, counted by the DynamoDB store itself).

Usage::

    python -m bench.state_calls                       # the invictus logs (../shared/data)
    python -m bench.state_calls --bundle /tmp/bundle  # a bundle from bench.generate
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

REPO = Path(__file__).resolve().parents[1]
INVICTUS = REPO.parent / "shared" / "data" / "cloudtrail" / "invictus"
PACK = REPO / "config" / "tattletail-pack.toml"
BUCKET = "trail"
TABLE = "tattletail-state"
TOPIC = "tattletail-alerts"  # the pack's default destination, in moto's default account


class Context:
    function_name = "tattletail-bench"

    def __init__(self, number: int) -> None:
        self.aws_request_id = f"bench-{number}"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def s3_event(keys: list[str]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": BUCKET}, "object": {"key": quote_plus(key, safe="/")}},
            }
            for key in keys
        ]
    }


def log_files(bundle: Path | None) -> list[tuple[str, bytes]]:
    root = bundle or INVICTUS
    paths = sorted(p for p in root.rglob("*") if p.name.endswith((".json", ".json.gz")))
    files = []
    for path in paths:
        body = path.read_bytes()
        files.append(
            (str(path.relative_to(root)), body if path.suffix == ".gz" else gzip.compress(body))
        )
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.state_calls", description=__doc__)
    parser.add_argument("--bundle", type=Path, help="a directory of log files (default: invictus)")
    parser.add_argument("--per-invocation", type=int, default=1, help="files per invocation")
    args = parser.parse_args(argv)

    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
            "TATTLETAIL_CONFIG": str(PACK),
            "TATTLETAIL_STATE_TABLE": TABLE,
            "TATTLETAIL_METRICS": "false",
            "TATTLETAIL_LOG_LEVEL": "ERROR",
        }
    )
    for name in ("S3_CONFIG_BUCKET", "S3_CONFIG_PATH", "TATTLETAIL_DEDUPE_TABLE"):
        os.environ.pop(name, None)
    try:
        aws = {
            name: boto3.client(name, endpoint_url=endpoint) for name in ("s3", "sns", "dynamodb")
        }
        aws["s3"].create_bucket(Bucket=BUCKET)
        aws["sns"].create_topic(Name=TOPIC)
        aws["dynamodb"].create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        files = log_files(args.bundle)
        for key, body in files:
            aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=body)

        from tattletail import config, lambda_handler

        pack = config.load_file(PACK)
        feeding = {
            rule.name for rule in pack.rules if rule.stateful is not None and rule.jq_match
        } | {
            step
            for rule in pack.rules
            if rule.stateful and rule.stateful.kind == "sequence"
            for step in rule.stateful.steps  # type: ignore[union-attr]
        }
        totals: Counter[str] = Counter()
        calls: Counter[str] = Counter()
        alerts: Counter[str] = Counter()
        started = time.perf_counter()
        keys = [key for key, _ in files]
        step = max(1, args.per_invocation)
        for number, start in enumerate(range(0, len(keys), step)):
            result = lambda_handler.handler(s3_event(keys[start : start + step]), Context(number))
            totals["records"] += result["records"]
            totals["invocations"] += 1
            totals["objects"] += result["objects"]
            totals["conflicts"] += result["state_conflicts"]
            totals["feeding"] += sum(
                n for name, n in result["matches_by_rule"].items() if name in feeding
            )
            calls.update(result["state_calls"])
            alerts.update(result["stateful_alerts_by_rule"])
        seconds = time.perf_counter() - started
        lambda_handler.shutdown()
        items = aws["dynamodb"].scan(TableName=TABLE, Select="COUNT")["Count"]
    finally:
        server.stop()

    records = totals["records"]
    total = sum(calls.values())
    per_thousand = 1000 * total / records if records else 0.0
    print(f"source: {args.bundle or INVICTUS} ({len(files)} files, {step} per invocation)")
    print(f"records: {records}; matches feeding rules with memory: {totals['feeding']}")
    print("| requests | BatchGetItem | GetItem | PutItem | total | per 1,000 records |")
    print("|---|---:|---:|---:|---:|---:|")
    print(
        f"| {totals['invocations']} invocations | {calls['BatchGetItem']} | {calls['GetItem']} "
        f"| {calls['PutItem']} | {total} | {per_thousand:.1f} |"
    )
    print(f"conflicts (a write retried after another invocation's): {totals['conflicts']}")
    print(f"state items in the table at the end: {items}")
    print(
        "alerts of rules with memory: " + ", ".join(f"{k}: {v}" for k, v in sorted(alerts.items()))
    )
    print(f"wall time {seconds:.1f} s (moto, not DynamoDB: not a latency figure)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
