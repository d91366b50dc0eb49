"""`s3`: an archive of every alert, whole; may also be the config's `dead_letter`.

An archive receives every alert, including those flood control holds back from the other
destinations. They are buffered during the invocation and written at its end (`flush`) as one
JSON Lines object per rule:

    <prefix>/<yyyy>/<mm>/<dd>/<rule-slug>/<yyyymmddThhmmssZ>-<uuid>.jsonl

each line the SNS message's keys plus `alert_id` and `source`, with the record never cut. The
objects' s3:// URIs are what a flood summary points to as the full list.

As the dead-letter destination it writes each dead letter at once, as its own object, so it is
kept even if the invocation dies later (and dead letters of flood summaries, which are sent
after the archive is flushed, are kept too):

    <prefix>/dead-letter/<yyyy>/<mm>/<dd>/<failed-destination-slug>/<alert_id>.json
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from botocore.exceptions import BotoCoreError, ClientError

from tattletail.alerts import Alert
from tattletail.destinations.base import (
    DeliveryContext,
    DeliveryError,
    Destination,
    DestinationConfigError,
    required_string,
)
from tattletail.json_output import dumps

DEFAULT_PREFIX = "tattletail"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_SLUG_LIMIT = 80


def slug(name: str) -> str:
    """A key-safe form of a rule or destination name: `Create User` -> `create-user`."""
    text = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return text[:_SLUG_LIMIT].strip("-") or "unnamed"


def line(alert: Alert, destination_id: str) -> bytes:
    """One JSON Lines entry: the whole alert."""
    return (
        dumps(
            {**alert.message(), "alert_id": alert.alert_id(destination_id), "source": alert.source}
        )
        + b"\n"
    )


@dataclass(frozen=True)
class S3Destination(Destination):
    type_name: ClassVar[str] = "s3"
    archive: ClassVar[bool] = True
    can_dead_letter: ClassVar[bool] = True
    bucket: str
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        # The invocation's buffer: not a field (so not a config key), and new for every copy
        # of the destination (dataclasses.replace).
        object.__setattr__(self, "_pending", {})

    @classmethod
    def from_config(cls, dest_id: str, settings: Mapping[str, Any]) -> Self:
        problems: list[str] = []
        bucket = required_string(settings, "bucket", problems)
        if bucket and not _BUCKET.match(bucket):
            problems.append("destination.bucket must be an S3 bucket name (not an s3:// URI)")
        prefix = settings.get("prefix", DEFAULT_PREFIX)
        if not isinstance(prefix, str):
            problems.append("destination.prefix must be a string")
            prefix = DEFAULT_PREFIX
        if problems:
            raise DestinationConfigError(problems)
        return cls(id=dest_id, bucket=bucket, prefix=prefix.strip("/"))

    def _key(self, *parts: str) -> str:
        return "/".join(part for part in (self.prefix, *parts) if part)

    async def send(self, alert: Alert, context: DeliveryContext) -> None:
        pending: dict[str, list[bytes]] = self._pending  # type: ignore[attr-defined]
        pending.setdefault(alert.rule_name, []).append(line(alert, self.id))

    async def flush(self, context: DeliveryContext) -> list[tuple[str, str]]:
        """Write one object per rule; return (rule name, s3:// URI) for each."""
        pending: dict[str, list[bytes]] = self._pending  # type: ignore[attr-defined]
        if not pending:
            return []
        # Taken before writing, so a failed flush is not written again by the next invocation
        # (which re-processes the log file itself when this one fails).
        object.__setattr__(self, "_pending", {})
        s3 = await context.aws.client("s3")
        now = datetime.now(UTC)
        rules = list(pending)
        results = await asyncio.gather(
            *(self._write(s3, rule, pending[rule], now) for rule in rules),
            return_exceptions=True,
        )
        written, failed = [], []
        for rule, result in zip(rules, results, strict=True):
            if isinstance(result, BaseException):
                failed.append(f"{rule!r}: {_describe(result)}")
            else:
                written.append((rule, result))
        if failed:
            raise DeliveryError(
                f"s3 archive: {len(failed)} of {len(rules)} objects not written: "
                + "; ".join(failed)
            )
        return written

    async def _write(self, s3: Any, rule: str, lines: list[bytes], now: datetime) -> str:
        key = self._key(
            f"{now:%Y/%m/%d}", slug(rule), f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex}.jsonl"
        )
        await s3.put_object(
            Bucket=self.bucket, Key=key, Body=b"".join(lines), ContentType="application/x-ndjson"
        )
        return f"s3://{self.bucket}/{key}"

    async def send_dead_letter(self, document: dict[str, Any], context: DeliveryContext) -> None:
        now = datetime.now(UTC)
        failed = slug(str(document.get("failed_destination") or "unknown"))
        # Named by the alert id: the same dead letter written again the same day replaces it.
        name = f"{document.get('alert_id') or uuid.uuid4().hex}.json"
        key = self._key("dead-letter", f"{now:%Y/%m/%d}", failed, name)
        s3 = await context.aws.client("s3")
        await s3.put_object(
            Bucket=self.bucket, Key=key, Body=dumps(document), ContentType="application/json"
        )


def _describe(error: BaseException) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "error"))
    if isinstance(error, BotoCoreError | DeliveryError):
        return str(error)
    return f"unexpected {type(error).__name__}"
