"""Where CloudTrail puts its files in S3, and what a key says about one.

A trail writes every file under

    [TRAIL-PREFIX/]AWSLogs/[o-ORGID/]ACCOUNT/SERVICE/REGION/YYYY/MM/DD/NAME

where SERVICE is `CloudTrail` (log files), `CloudTrail-Digest` (digest files) or
`CloudTrail-Insight` (Insights events); an organisation trail adds the `o-ORGID` level. Other
AWS services (VPC flow logs, ELB access logs, Config) share the `AWSLogs/ACCOUNT/` layout with
their own SERVICE folder. The date is the day CloudTrail delivered the file (UTC), which for
events in the last minutes before midnight is the next day.

A key in this layout tells the account, the region and the date; a key in no known layout
(a file copied by hand, a test fixture) is still a log file to read, just without them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

LOGS = "CloudTrail"
DIGESTS = "CloudTrail-Digest"
INSIGHTS = "CloudTrail-Insight"

ORG_ID = re.compile(r"o-[a-z0-9]{10,32}", re.ASCII)
# Account ids are 12 digits; CloudTrail's own folders also accept shorter ones, which some
# copies and fixtures use, while another service's folder is recognised only with 12 digits.
ACCOUNT = re.compile(r"[0-9]{1,12}", re.ASCII)
STRICT_ACCOUNT = re.compile(r"[0-9]{12}", re.ASCII)
REGION = re.compile(r"[a-z]{2,4}(?:-[a-z]+)+-[0-9]{1,2}", re.ASCII)
_SERVICE = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)
_YEAR = re.compile(r"[0-9]{4}", re.ASCII)
_TWO_DIGITS = re.compile(r"[0-9]{2}", re.ASCII)
AWSLOGS = "AWSLogs"


@dataclass(frozen=True)
class TrailKey:
    """What a key in the AWSLogs layout says. `region` and `day` are None when the part after
    SERVICE is not REGION/YYYY/MM/DD/NAME."""

    prefix: str  # everything before the account (or org) folder, "AWSLogs/" included
    org_id: str | None
    account: str
    service: str
    region: str | None = None
    day: date | None = None
    name: str | None = None

    @property
    def evaluated(self) -> bool:
        """A log or Insights file (or another CloudTrail-* folder's): evaluated. Digests and
        other services' files are not."""
        return is_cloudtrail_service(self.service) and self.service != DIGESTS


def is_cloudtrail_service(service: str) -> bool:
    """CloudTrail's own folders: CloudTrail, CloudTrail-Digest, CloudTrail-Insight, and any
    CloudTrail-* it may add (read as log files, failing loudly if they are not)."""
    return service.startswith(LOGS)


def parse_key(key: str) -> TrailKey | None:
    """The key's account, region and date when it is in the AWSLogs layout, else None.

    A trail prefix may itself contain an `AWSLogs` folder: the first AWSLogs folder from which
    the rest of the key reads as the layout is the one. Empty, `.` and `..` components are
    never part of the layout (S3 keeps them literally; a local path would resolve them).
    """
    parts = key.split("/")
    for start, part in enumerate(parts):
        if part == AWSLOGS:
            found = _parse_after(parts, start)
            if found is not None:
                return found
    return None


def _parse_after(parts: list[str], start: int) -> TrailKey | None:
    rest = parts[start + 1 :]
    org_id = None
    if rest and ORG_ID.fullmatch(rest[0]):
        org_id, rest = rest[0], rest[1:]
    # At least ACCOUNT, SERVICE and one more component (a file or folder under SERVICE).
    if len(rest) < 3 or not _SERVICE.fullmatch(rest[1]) or rest[1] in {".", ".."}:
        return None
    account, service, below = rest[0], rest[1], rest[2:]
    if any(part in {"", ".", ".."} for part in below):
        return None
    if not is_cloudtrail_service(service):
        if not STRICT_ACCOUNT.fullmatch(account):
            return None
    elif not ACCOUNT.fullmatch(account):
        return None
    prefix = "/".join(parts[: start + 1]) + "/"
    trail = TrailKey(prefix=prefix, org_id=org_id, account=account, service=service)
    if len(below) != 5:
        return trail
    region, year, month, day_of_month, name = below
    if not (
        REGION.fullmatch(region)
        and _YEAR.fullmatch(year)
        and _TWO_DIGITS.fullmatch(month)
        and _TWO_DIGITS.fullmatch(day_of_month)
    ):
        return trail
    try:
        day = date(int(year), int(month), int(day_of_month))
    except ValueError:
        return trail
    return TrailKey(prefix, org_id, account, service, region, day, name)


def skip_reason(key: str) -> str | None:
    """Why a key is not a log file to evaluate, from the key alone; None if it is one.

    `digest` for CloudTrail-Digest files, `other_prefix` for another service's folder in the
    AWSLogs layout (`vpcflowlogs`, `elasticloadbalancing`, ...), `folder` for a folder marker.
    Keys in no known layout are evaluated.
    """
    trail = parse_key(key)
    if trail is not None and trail.service == DIGESTS:
        return "digest"
    if trail is None and "/CloudTrail-Digest/" in f"/{key}":
        return "digest"
    if key.endswith("/"):
        return "folder"
    if trail is not None and not trail.evaluated:
        return "other_prefix"
    return None
