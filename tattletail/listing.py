"""Which log files a date range covers under an S3 prefix: every account and region, listed in
parallel, paginated.

The trail layout (`tattletail.trail_keys`) is walked from the prefix down with delimiter
listings: AWSLogs/ -> organisation folders -> accounts -> CloudTrail folders -> regions. Each
region's range is then covered by the fewest date prefixes (a whole year is one listing, a
whole month one, then single days: `TimeRange.date_prefixes`), and each such *unit* is listed
in full. Units are the grain of parallelism and of a backfill's checkpoint. Folders of other
services and digest folders are skipped and counted, never listed.
"""

from __future__ import annotations

import asyncio
import enum
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from tattletail import trail_keys
from tattletail.daterange import TimeRange
from tattletail.objects import ObjectRef

# What `tattletail scan` and a backfill read: CloudTrail writes .json.gz.
LOG_FILE_SUFFIXES = (".json", ".json.gz", ".jsonl", ".jsonl.gz")
DEFAULT_CONCURRENCY = 16
# How many folder levels above AWSLogs/ are searched for it (a trail's S3 key prefix).
ABOVE_DEPTH = 3


class ListingError(Exception):
    """The prefix is not in the trail layout, or S3 refused a listing."""


class NoAWSLogsFolder(ListingError):
    """No AWSLogs/ folder under the prefix (a bucket or prefix of copied files)."""


@dataclass
class ListingStats:
    """Counters a progress line reads while listing runs."""

    units_total: int = 0
    units_done: int = 0
    keys_seen: int = 0
    keys_selected: int = 0
    requests: int = 0
    # Objects under the units that are not selected, by reason.
    skipped_keys: Counter[str] = field(default_factory=Counter)
    # Folders met while walking the layout and not entered, by reason.
    skipped_folders: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Listed:
    key: str
    size: int
    etag: str


class _Level(enum.Enum):
    ABOVE = "above"  # above AWSLogs/ (the bucket root, a trail prefix)
    AWSLOGS = "awslogs"  # children: organisation folders and accounts
    ORG = "org"  # children: accounts
    ACCOUNT = "account"  # children: CloudTrail, CloudTrail-Digest, ..., other services
    SERVICE = "service"  # children: regions
    REGION = "region"  # children: years


def key_selected(key: str, time_range: TimeRange) -> str | None:
    """Why a listed key is not selected for the range (None: it is). Keys must be in the trail
    layout, in an evaluated CloudTrail folder, dated in range, and named like a log file."""
    if key.endswith("/"):
        return "folder"
    trail = trail_keys.parse_key(key)
    if trail is None or trail.day is None:
        return "outside_layout"
    if not trail.evaluated:
        return "digest" if trail.service == trail_keys.DIGESTS else "other_prefix"
    if not time_range.contains_day(trail.day):
        return "out_of_range"
    if not key.endswith(LOG_FILE_SUFFIXES):
        return "not_a_log_file"
    return None


class TrailLister:
    """Lists the log files of a date range under s3://bucket/prefix."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        prefix: str,
        time_range: TimeRange,
        concurrency: int = DEFAULT_CONCURRENCY,
        stats: ListingStats | None = None,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        # A prefix names a folder: "AWSLogs" and "AWSLogs/" are the same.
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.time_range = time_range
        self.stats = stats if stats is not None else ListingStats()
        self._limit = asyncio.Semaphore(concurrency)
        self._awslogs_found = False

    async def units(self) -> list[str]:
        """The date prefixes to list, sorted: one per (account, CloudTrail folder, region) and
        per covering date prefix of the range."""
        level, narrowed = _level_of(self.prefix)
        if level is None:
            raise ListingError(
                f"s3://{self.bucket}/{self.prefix} is not a folder of CloudTrail's layout "
                "([PREFIX/]AWSLogs/[o-ORGID/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/)"
            )
        if level is _Level.REGION:
            regions = [narrowed]
        else:
            regions = await self._walk(narrowed, level)
        units: set[str] = set()
        for region in regions:
            for date_prefix in self.time_range.date_prefixes():
                unit = region + date_prefix
                # A prefix below the region level (…/us-east-1/2024/03/) narrows the units.
                if unit.startswith(self.prefix):
                    units.add(unit)
                elif self.prefix.startswith(unit):
                    units.add(self.prefix)
        self.stats.units_total += len(units)
        return sorted(units)

    async def _walk(self, prefix: str, level: _Level, depth: int = 0) -> list[str]:
        """The region folders under a folder at `level`. Above AWSLogs/, folders are searched
        for it down to ABOVE_DEPTH levels (a trail's S3 key prefix: `org-trail/`, `a/b/`)."""
        children = await self._children(prefix)
        walks = []
        for child in children:
            name = child[len(prefix) : -1]
            below = _child_level(level, name)
            if below is _Level.AWSLOGS:
                self._awslogs_found = True
            if below == "outside_layout" and level is _Level.ABOVE and depth < ABOVE_DEPTH:
                walks.append(self._walk(child, _Level.ABOVE, depth + 1))
            elif isinstance(below, str):
                self.stats.skipped_folders[below] += 1
            elif below is _Level.REGION:
                walks.append(_done(child))
            else:
                walks.append(self._walk(child, below))
        found = await asyncio.gather(*walks)
        if level is _Level.ABOVE and depth == 0 and not self._awslogs_found:
            raise NoAWSLogsFolder(
                f"no AWSLogs/ folder under s3://{self.bucket}/{prefix}: give the trail's "
                "S3 key prefix (the folder that holds AWSLogs/) or a folder below it"
            )
        return [region for regions in found for region in regions]

    async def _children(self, prefix: str) -> list[str]:
        children: list[str] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/")
        async with self._limit:
            async for page in pages:
                self.stats.requests += 1
                children.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
                outside = len(page.get("Contents", []))
                if outside:
                    self.stats.skipped_keys["outside_layout"] += outside
        return children

    async def pages(self, unit: str, start_after: str | None = None) -> AsyncIterator[list[Listed]]:
        """The selected objects of one unit, a page at a time, in S3's (key) order, starting
        after `start_after` when given (a resumed backfill)."""
        paginator = self.s3.get_paginator("list_objects_v2")
        options: dict[str, Any] = {"Bucket": self.bucket, "Prefix": unit}
        if start_after:
            options["StartAfter"] = start_after
        async with self._limit:
            async for page in paginator.paginate(**options):
                self.stats.requests += 1
                selected = []
                for item in page.get("Contents", []):
                    self.stats.keys_seen += 1
                    reason = key_selected(item["Key"], self.time_range)
                    if reason is not None:
                        self.stats.skipped_keys[reason] += 1
                        continue
                    selected.append(
                        Listed(item["Key"], int(item.get("Size", 0)), str(item.get("ETag", "")))
                    )
                self.stats.keys_selected += len(selected)
                yield selected
        self.stats.units_done += 1


async def select_objects(
    s3: Any, bucket: str, prefix: str, time_range: TimeRange, stats: ListingStats | None = None
) -> list[ObjectRef]:
    """Every log file of the range under s3://bucket/prefix, sorted by key (`scan`)."""
    lister = TrailLister(s3, bucket, prefix, time_range, stats=stats)

    async def listed(unit: str) -> list[Listed]:
        return [item async for page in lister.pages(unit) for item in page]

    found = await asyncio.gather(*(listed(unit) for unit in await lister.units()))
    keys = sorted({item.key for items in found for item in items})
    return [ObjectRef(key=key, bucket=bucket) for key in keys]


async def _done(region: str) -> list[str]:
    return [region]


def _child_level(level: _Level, name: str) -> _Level | str:
    """The level of a child folder `name` of a folder at `level`, or why it is not entered."""
    if level is _Level.ABOVE:
        return _Level.AWSLOGS if name == trail_keys.AWSLOGS else "outside_layout"
    if level is _Level.AWSLOGS and trail_keys.ORG_ID.fullmatch(name):
        return _Level.ORG
    if level in (_Level.AWSLOGS, _Level.ORG):
        return _Level.ACCOUNT if trail_keys.ACCOUNT.fullmatch(name) else "other_prefix"
    if level is _Level.ACCOUNT:
        if name == trail_keys.DIGESTS:
            return "digest"
        return _Level.SERVICE if trail_keys.is_cloudtrail_service(name) else "other_prefix"
    if level is _Level.SERVICE:
        return _Level.REGION if trail_keys.REGION.fullmatch(name) else "other_prefix"
    raise AssertionError(level)


def _level_of(prefix: str) -> tuple[_Level | None, str]:
    """Where in the layout a folder prefix is, and the folder to walk from: the prefix itself,
    or (for a prefix below a region: YYYY/, YYYY/MM/, YYYY/MM/DD/) the region folder. None when
    the prefix contradicts the layout (`AWSLogs/123456789012/vpcflowlogs/`)."""
    parts = prefix.split("/")[:-1] if prefix else []
    starts = [n for n, part in enumerate(parts) if part == trail_keys.AWSLOGS]
    if not starts:
        return _Level.ABOVE, prefix
    for start in starts:
        found = _descend(parts, start)
        if found is not None:
            return found
    return None, prefix


def _descend(parts: list[str], start: int) -> tuple[_Level, str] | None:
    level = _Level.AWSLOGS
    for n in range(start + 1, len(parts)):
        if level is _Level.REGION:
            dates = parts[n:]
            shaped = (
                len(dates) <= 3
                and all(p.isascii() and p.isdigit() for p in dates)
                and len(dates[0]) == 4
                and all(len(p) == 2 for p in dates[1:])
            )
            return (level, "/".join(parts[:n]) + "/") if shaped else None
        below = _child_level(level, parts[n])
        if isinstance(below, str):
            return None
        level = below
    return level, "/".join(parts) + "/"
