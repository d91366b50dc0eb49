"""The scale table of deploy/README.md: a backfill of 1 GB, 100 GB and 10 TB of compressed
CloudTrail on the Lambda fleet, from measured rates and AWS's price list.

    python -m bench.scale

Every input is a named constant below with where it comes from; tests/test_scale.py checks
that deploy/README.md shows exactly what this prints.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

# Measured (bench/RESULTS.md, run A, 2026-11-27): the 50-rule pack with TATTLETAIL_WORKERS=1
# reads 49.2 MB of CloudTrail JSON a second (28,482 records/s) on one AMD EPYC core, and a
# Lambda function of 1,769 MB gets one vCPU, so one worker.
JSON_BYTES_PER_SECOND = 49.2e6
MEMORY_MB = 1769
# Measured on a real account's log files (../shared/data/cloudtrail/invictus, 55 files, 2,900
# records): 1,262 bytes of JSON and 147 bytes gzipped per record, files of 7.7 KB gzipped on
# average.
COMPRESSION = 1262 / 147
SMALL_FILE_BYTES = 7_742
# A busy account's files (the bench's are 1.7 MB gzipped): 1 MB.
BUSY_FILE_BYTES = 1_000_000
# Assumed (not measurable here): an S3 GET from Lambda in the bucket's region takes 50 ms to
# the first byte ("tens of milliseconds" for small objects: AWS's S3 performance whitepaper,
# "Timeouts and Retries for Latency-Sensitive Applications") then reads 100 MB/s.
GET_SECONDS = 0.050
GET_BYTES_PER_SECOND = 100e6
# Measured by bench/latency.py: a warm invocation's own work besides its files (dispatch,
# summary, metrics) is a few milliseconds; 20 ms allowed. A cold start (image init, one worker
# started) about 1 s here; 2 s allowed per container, once.
INVOCATION_OVERHEAD_SECONDS = 0.020
COLD_START_SECONDS = 2.0
# The backfill settings deploy/README.md recommends: SqsBatchSize 100 (with a batching window
# of 1 s) and TATTLETAIL_OBJECT_CONCURRENCY 32, so small files are fetched 32 at a time.
BATCH = 100
OBJECT_CONCURRENCY = 32
CONCURRENCIES = (100, 1000)
# AWS price list, us-east-1, x86_64, as published on aws.amazon.com/lambda/pricing and
# aws.amazon.com/s3/pricing (read 2026-12-02): $0.0000166667 per GB-second (first 6 billion
# GB-seconds a month), $0.20 per million requests; S3 Standard GET $0.0004 per 1,000.
PRICE_GB_SECOND = 0.0000166667
PRICE_REQUEST = 0.20 / 1e6
PRICE_GET = 0.0004 / 1000
SIZES = (("1 GB", 1e9), ("100 GB", 100e9), ("10 TB", 10e12))


@dataclass(frozen=True)
class Estimate:
    files: int
    invocations: int
    seconds: float  # function seconds, every container's cold start included
    gb_seconds: float
    lambda_dollars: float
    get_dollars: float
    minutes: float  # wall time, the invocations spread over the concurrency


def invocation_seconds(file_bytes: float) -> float:
    """One invocation of BATCH files: the first GET, then the rest of the GETs (32 at a time)
    overlapped with evaluation in the worker, whichever is longer, then its own overhead."""
    get = GET_SECONDS + file_bytes / GET_BYTES_PER_SECOND
    rounds = math.ceil(BATCH / OBJECT_CONCURRENCY)
    evaluate = BATCH * file_bytes * COMPRESSION / JSON_BYTES_PER_SECOND
    return get + max((rounds - 1) * get, evaluate) + INVOCATION_OVERHEAD_SECONDS


def estimate(total_bytes: float, file_bytes: float, concurrency: int) -> Estimate:
    files = math.ceil(total_bytes / file_bytes)
    invocations = math.ceil(files / BATCH)
    each = invocation_seconds(file_bytes)
    containers = min(concurrency, invocations)
    seconds = invocations * each + containers * COLD_START_SECONDS
    gb_seconds = seconds * MEMORY_MB / 1024
    wall = COLD_START_SECONDS + math.ceil(invocations / concurrency) * each
    return Estimate(
        files,
        invocations,
        seconds,
        gb_seconds,
        gb_seconds * PRICE_GB_SECOND + invocations * PRICE_REQUEST,
        files * PRICE_GET,
        wall / 60,
    )


def table(file_bytes: float) -> list[str]:
    """GB-seconds and dollars at the first concurrency (its containers' cold starts
    included), minutes at each."""
    rows = [
        "| compressed CloudTrail | files | invocations | GB-seconds | Lambda $ | S3 GET $ | "
        + " | ".join(f"minutes at {c:,}" for c in CONCURRENCIES)
        + " |",
        "|---|---:|---:|---:|---:|---:|" + "---:|" * len(CONCURRENCIES),
    ]
    for label, total in SIZES:
        at = [estimate(total, file_bytes, c) for c in CONCURRENCIES]
        first = at[0]
        rows.append(
            f"| {label} | {first.files:,} | {first.invocations:,} | {first.gb_seconds:,.0f} | "
            f"{first.lambda_dollars:,.2f} | {first.get_dollars:,.2f} | "
            + " | ".join(f"{e.minutes:,.1f}" if e.minutes >= 1 else f"{e.minutes:.2f}" for e in at)
            + " |"
        )
    return rows


def report() -> str:
    lines = [
        f"Small files ({SMALL_FILE_BYTES / 1000:.1f} KB gzipped, a quiet account's; "
        f"{invocation_seconds(SMALL_FILE_BYTES):.2f} s an invocation of {BATCH}):",
        "",
        *table(SMALL_FILE_BYTES),
        "",
        f"Busy accounts' files ({BUSY_FILE_BYTES / 1e6:.0f} MB gzipped; "
        f"{invocation_seconds(BUSY_FILE_BYTES):.1f} s an invocation of {BATCH}):",
        "",
        *table(BUSY_FILE_BYTES),
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    sys.stdout.write(report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
