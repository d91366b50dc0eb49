"""The envelope stage: turn whatever invoked the function into the log files to read.

Every trigger shape ends as a list of ObjectRef (log files to read) and of CloudTrailEvent
(records delivered inline), so nothing after this module knows how the function was invoked.
Shapes: S3 event notifications; S3 notifications wrapped in SNS; SQS messages carrying either
(raw delivery on or off); EventBridge "Object Created"; CloudTrail's own SNS notifications
(`s3Bucket` + `s3ObjectKey`); a manual `{"objects": ["s3://b/k", ...]}`; and EventBridge's
CloudTrail events ("AWS API Call via CloudTrail", ...), alone or in SQS messages, whose `detail`
is a CloudTrail record evaluated as it is, with no S3 read.

A message may carry routing for a replay (`tattletail backfill` writes it): a top-level
`"tattletail": {"backfill": RUN-ID, "destinations": [ID, ...]}` next to the notification.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote_plus

import orjson

from tattletail.objects import ObjectRef


class UnrecognisedEvent(ValueError):
    """An invocation payload of no shape Tattletail knows."""


# EventBridge detail-types whose `detail` is one CloudTrail record. The console sign-in type is
# spelled "Sign In" in the events and "Signin" in part of AWS's documentation: both are taken.
CLOUDTRAIL_DETAIL_TYPES = frozenset(
    {
        "AWS API Call via CloudTrail",
        "AWS Console Sign In via CloudTrail",
        "AWS Console Signin via CloudTrail",
        "AWS Service Event via CloudTrail",
        "AWS Console Action via CloudTrail",
        "AWS Insight via CloudTrail",
    }
)
# The message key holding a replay's routing.
ROUTING_KEY = "tattletail"


@dataclass(frozen=True)
class CloudTrailEvent:
    """One CloudTrail record that EventBridge delivered: evaluated at once, no S3 read."""

    record: dict[str, Any]
    # The EventBridge event's id, account and region.
    event_id: str
    account: str | None = None
    region: str | None = None
    # The SQS message it came in, as ObjectRef.origin.
    origin: str | None = None

    @property
    def source(self) -> str:
        """What alerts name as their source, where a log file's alerts name its URI."""
        return f"eventbridge:{self.event_id}"


@dataclass(frozen=True)
class Envelope:
    kind: str
    refs: tuple[ObjectRef, ...] = ()
    # SQS message ids in the batch, so a partial failure names only the failed messages.
    sqs_message_ids: tuple[str, ...] = ()
    ignored: tuple[str, ...] = field(default=())
    events: tuple[CloudTrailEvent, ...] = ()
    # SQS messages refused as they are (a malformed routing field): (message id, why).
    rejected: tuple[tuple[str, str], ...] = ()


@dataclass
class _Found:
    refs: list[ObjectRef] = field(default_factory=list)
    events: list[CloudTrailEvent] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Routing:
    """A replay's routing, read from a message's `tattletail` key."""

    destinations: tuple[str, ...] | None = None
    backfill: str | None = None

    def apply(self, ref: ObjectRef) -> ObjectRef:
        return replace(ref, destinations=self.destinations, backfill=self.backfill)


def read_routing(message: Any) -> Routing:
    """The routing of a message (none when it has no `tattletail` key); ValueError when the
    key is there but malformed, so a replay never falls back to paging every destination."""
    if not isinstance(message, dict) or ROUTING_KEY not in message:
        return Routing()
    options = message[ROUTING_KEY]
    if not isinstance(options, dict):
        raise ValueError(f"'{ROUTING_KEY}' must be an object")
    unknown = sorted(set(options) - {"destinations", "backfill"})
    if unknown:
        raise ValueError(f"'{ROUTING_KEY}' has unknown keys: {', '.join(unknown)}")
    destinations = options.get("destinations")
    if destinations is not None and (
        not isinstance(destinations, list)
        or not destinations
        or not all(isinstance(d, str) and d for d in destinations)
    ):
        raise ValueError(f"'{ROUTING_KEY}.destinations' must be a non-empty list of ids")
    backfill = options.get("backfill")
    if backfill is not None and not isinstance(backfill, str):
        raise ValueError(f"'{ROUTING_KEY}.backfill' must be a string")
    return Routing(tuple(destinations) if destinations is not None else None, backfill)


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
        try:
            routing = read_routing(event)
        except ValueError as exc:
            raise UnrecognisedEvent(f"manual invocation: {exc}") from None
        refs = tuple(routing.apply(parse_s3_uri(str(uri))) for uri in event["objects"])
        return Envelope("manual", refs)
    records = event.get("Records")
    found = _Found()
    if isinstance(records, list) and records:
        if all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records):
            return _sqs(records)
        for record in records:
            _collect(record, None, found)
        return _envelope(_kind(records), found)
    if event.get("Event") == "s3:TestEvent":
        return Envelope("s3_test_event", ignored=("s3:TestEvent",))
    if _is_cloudtrail_event(event):
        _collect(event, None, found)
        return _envelope("cloudtrail_event", found)
    if event.get("source") == "aws.s3" and isinstance(event.get("detail"), dict):
        _collect(event, None, found)
        return _envelope("eventbridge", found)
    if "s3Bucket" in event:
        _cloudtrail_notification(event, None, found.refs)
        return _envelope("cloudtrail_sns_message", found)
    raise UnrecognisedEvent(f"unrecognised event: {shape(event)}")


def _envelope(kind: str, found: _Found, **more: Any) -> Envelope:
    return Envelope(
        kind,
        tuple(found.refs),
        ignored=tuple(found.ignored),
        events=tuple(found.events),
        **more,
    )


def _is_cloudtrail_event(item: dict[str, Any]) -> bool:
    """An EventBridge event whose detail is a CloudTrail record. Only AWS itself can publish a
    source starting with `aws.`, so a custom event dressed as CloudTrail's is not taken."""
    source = item.get("source")
    return (
        item.get("detail-type") in CLOUDTRAIL_DETAIL_TYPES
        and isinstance(source, str)
        and source.startswith("aws.")
        and isinstance(item.get("detail"), dict)
    )


def _cloudtrail_event(item: dict[str, Any], origin: str | None) -> CloudTrailEvent:
    account, region, event_id = item.get("account"), item.get("region"), item.get("id")
    return CloudTrailEvent(
        record=item["detail"],
        event_id=event_id if isinstance(event_id, str) else "",
        account=account if isinstance(account, str) else None,
        region=region if isinstance(region, str) else None,
        origin=origin,
    )


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
    found = _Found()
    ids = []
    rejected: list[tuple[str, str]] = []
    for record in records:
        message_id = str(record.get("messageId", ""))
        ids.append(message_id)
        try:
            body = orjson.loads(record.get("body") or "")
        except orjson.JSONDecodeError:
            found.ignored.append(f"SQS message {message_id}: body is not JSON")
            continue
        try:
            routing = read_routing(body)
        except ValueError as exc:
            rejected.append((message_id, str(exc)))
            continue
        message = _Found()
        _collect(body, message_id, message)
        found.refs.extend(routing.apply(ref) for ref in message.refs)
        found.events.extend(message.events)
        found.ignored.extend(message.ignored)
    return _envelope("sqs", found, sqs_message_ids=tuple(ids), rejected=tuple(rejected))


def _collect(item: Any, origin: str | None, found: _Found) -> None:
    """Collect object refs and CloudTrail events from one notification of any nesting (SNS
    inside SQS, ...)."""
    refs, ignored = found.refs, found.ignored
    if not isinstance(item, dict):
        ignored.append(f"not a notification: {shape(item)}")
        return
    if item.get("Event") == "s3:TestEvent":
        ignored.append("s3:TestEvent")
        return
    if isinstance(item.get("Records"), list):
        for record in item["Records"]:
            _collect(record, origin, found)
        return
    if _is_cloudtrail_event(item):
        found.events.append(_cloudtrail_event(item, origin))
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
        _collect(inner, origin, found)
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
