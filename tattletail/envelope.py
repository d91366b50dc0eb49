"""The envelope stage: turn whatever invoked the function into the log files to read.

Every trigger shape ends as a list of ObjectRef, so nothing after this module knows how the
function was invoked. Shapes: S3 event notifications; S3 notifications wrapped in SNS; SQS
messages carrying either (raw delivery on or off); EventBridge "Object Created"; CloudTrail's own
SNS notifications (`s3Bucket` + `s3ObjectKey`); and a manual `{"objects": ["s3://b/k", ...]}`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

import orjson

from tattletail.objects import ObjectRef


class UnrecognisedEvent(ValueError):
    """An invocation payload of no shape Tattletail knows."""


@dataclass(frozen=True)
class Envelope:
    kind: str
    refs: tuple[ObjectRef, ...] = ()
    # SQS message ids in the batch, so a partial failure names only the failed messages.
    sqs_message_ids: tuple[str, ...] = ()
    ignored: tuple[str, ...] = field(default=())


def shape(event: Any) -> str:
    """A log-safe description of an unknown event: its top-level keys, never its values."""
    if isinstance(event, dict):
        return "object with keys " + ", ".join(sorted(map(str, event))[:20])
    return type(event).__name__


def parse_s3_uri(uri: str, origin: str | None = None) -> ObjectRef:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise UnrecognisedEvent(f"not an s3://bucket/key URI: {uri!r}")
    bucket, key = uri[5:].split("/", 1)
    if not bucket or not key:
        raise UnrecognisedEvent(f"not an s3://bucket/key URI: {uri!r}")
    return ObjectRef(key=key, bucket=bucket, origin=origin)


def open_envelope(event: Any) -> Envelope:
    """Recognise an invocation payload; UnrecognisedEvent when it is of no known shape."""
    if not isinstance(event, dict):
        raise UnrecognisedEvent(f"unrecognised event: {shape(event)}")
    if "objects" in event and isinstance(event["objects"], list):
        return Envelope("manual", tuple(parse_s3_uri(str(uri)) for uri in event["objects"]))
    records = event.get("Records")
    if isinstance(records, list) and records:
        if all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records):
            return _sqs(records)
        refs: list[ObjectRef] = []
        ignored: list[str] = []
        for record in records:
            _refs_in(record, None, refs, ignored)
        return Envelope(_kind(records), tuple(refs), ignored=tuple(ignored))
    if event.get("Event") == "s3:TestEvent":
        return Envelope("s3_test_event", ignored=("s3:TestEvent",))
    if event.get("source") == "aws.s3" and isinstance(event.get("detail"), dict):
        refs = []
        ignored = []
        _refs_in(event, None, refs, ignored)
        return Envelope("eventbridge", tuple(refs), ignored=tuple(ignored))
    if "s3Bucket" in event:
        refs = []
        _cloudtrail_notification(event, None, refs)
        return Envelope("cloudtrail_sns_message", tuple(refs))
    raise UnrecognisedEvent(f"unrecognised event: {shape(event)}")


def _get(item: Any, *path: str) -> Any:
    """item[path[0]][path[1]]..., or None where a level is missing or not an object."""
    for key in path:
        if not isinstance(item, dict):
            return None
        item = item.get(key)
    return item


def _kind(records: list[Any]) -> str:
    sources = {r.get("EventSource") or r.get("eventSource") for r in records if isinstance(r, dict)}
    return "sns" if sources == {"aws:sns"} else "s3"


def _sqs(records: list[dict[str, Any]]) -> Envelope:
    refs: list[ObjectRef] = []
    ignored: list[str] = []
    ids = []
    for record in records:
        message_id = str(record.get("messageId", ""))
        ids.append(message_id)
        try:
            body = orjson.loads(record.get("body") or "")
        except orjson.JSONDecodeError:
            ignored.append(f"SQS message {message_id}: body is not JSON")
            continue
        _refs_in(body, message_id, refs, ignored)
    return Envelope("sqs", tuple(refs), sqs_message_ids=tuple(ids), ignored=tuple(ignored))


def _refs_in(item: Any, origin: str | None, refs: list[ObjectRef], ignored: list[str]) -> None:
    """Collect object refs from one notification of any nesting (SNS inside SQS, ...)."""
    if not isinstance(item, dict):
        ignored.append(f"not a notification: {shape(item)}")
        return
    if item.get("Event") == "s3:TestEvent":
        ignored.append("s3:TestEvent")
        return
    if isinstance(item.get("Records"), list):
        for record in item["Records"]:
            _refs_in(record, origin, refs, ignored)
        return
    s3 = item.get("s3")
    if isinstance(s3, dict):
        if not str(item.get("eventName", "ObjectCreated")).startswith("ObjectCreated"):
            ignored.append(f"S3 event {item.get('eventName')}")
            return
        bucket = _get(s3, "bucket", "name")
        key = _get(s3, "object", "key")
        if isinstance(bucket, str) and isinstance(key, str):
            # S3 notifications URL-encode keys (a space arrives as '+').
            refs.append(ObjectRef(key=unquote_plus(key), bucket=bucket, origin=origin))
        else:
            ignored.append("S3 record without bucket name and object key")
        return
    sns = item.get("Sns")
    if isinstance(sns, dict) or item.get("Type") == "Notification":
        message = (sns or item).get("Message") or ""
        try:
            inner = orjson.loads(message)
        except orjson.JSONDecodeError:
            ignored.append("SNS message is not JSON")
            return
        _refs_in(inner, origin, refs, ignored)
        return
    if item.get("source") == "aws.s3" and isinstance(item.get("detail"), dict):
        detail = item["detail"]
        if item.get("detail-type") != "Object Created":
            ignored.append(f"EventBridge {item.get('detail-type')}")
            return
        bucket = _get(detail, "bucket", "name")
        key = _get(detail, "object", "key")
        if isinstance(bucket, str) and isinstance(key, str):
            # EventBridge delivers keys as they are, not URL-encoded.
            refs.append(ObjectRef(key=key, bucket=bucket, origin=origin))
        else:
            ignored.append("EventBridge event without bucket name and object key")
        return
    if "s3Bucket" in item:
        _cloudtrail_notification(item, origin, refs)
        return
    ignored.append(f"unrecognised notification: {shape(item)}")


def _cloudtrail_notification(
    item: dict[str, Any], origin: str | None, refs: list[ObjectRef]
) -> None:
    bucket = item.get("s3Bucket")
    keys = item.get("s3ObjectKey") or []
    if isinstance(keys, str):
        keys = [keys]
    elif not isinstance(keys, list):
        keys = []
    for key in keys:
        if isinstance(bucket, str) and isinstance(key, str):
            refs.append(ObjectRef(key=key, bucket=bucket, origin=origin))
