"""Payload budgets: no alert fails for its size.

Every service caps a request (SNS and SQS 256 KiB, EventBridge 256 KB an entry, PagerDuty 512 KB
an event, Slack 3,000 characters a section). A CloudTrail record is usually a few KB, but some
are far larger (a RunInstances with user data, a PutBucketPolicy with a long policy), and a
rule's annotation can be anything. When a payload is over its budget the record is replaced by
a small marker that still identifies the event (`record_marker`); only if that is not enough
are the other long texts cut, each with a visible marker. Everything here is deterministic: the
same alert and budget always give the same bytes.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from tattletail.json_output import dumps
from tattletail.records import plain

TRUNCATED = "… (truncated)"
# Kept from a record that is cut: what a reader needs to find the event in CloudTrail.
MARKER_KEYS = (
    "eventID",
    "eventName",
    "eventTime",
    "eventSource",
    "awsRegion",
    "sourceIPAddress",
    "recipientAccountId",
)
# A marker's own fields are short in practice; these bounds make its size certain.
_MARKER_FIELD_CHARS = 256
_MARKER_ARN_CHARS = 2048
# Texts cut after the record, in this order: the annotation first, the rule's own words last.
_CUT_ORDER = ("match", "flood_summary", "description", "runbook", "title", "tags", "name")
_MIN_TEXT_BYTES = 64


def record_marker(record: Mapping[str, Any], original_size: int) -> dict[str, Any]:
    """What stands in for a record too large to send: its identifying fields, `truncated`,
    and the size of the record it replaces."""
    marker: dict[str, Any] = {}
    for key in MARKER_KEYS:
        value = record.get(key)
        if isinstance(value, str):
            marker[key] = value[:_MARKER_FIELD_CHARS]
    identity = record.get("userIdentity")
    arn = identity.get("arn") if isinstance(identity, dict) else None
    if isinstance(arn, str):
        marker["userIdentity"] = {"arn": arn[:_MARKER_ARN_CHARS]}
    marker["truncated"] = True
    marker["original_size_bytes"] = original_size
    marker["note"] = (
        "the record was too large for this destination; the full record is in the "
        "CloudTrail log file named by `source`"
    )
    return marker


def cut_text(text: str, max_chars: int, marker: str = TRUNCATED) -> str:
    """`text` if it has at most `max_chars` characters, else its start and the marker."""
    if len(text) <= max_chars:
        return text
    return text[: max(0, max_chars - len(marker))] + marker


def cut_utf8(text: str, max_bytes: int, marker: str = TRUNCATED) -> str:
    """`text` cut to at most `max_bytes` bytes of UTF-8 (at a character boundary) with the
    marker at the end."""
    encoded = text.encode()
    if len(encoded) <= max_bytes:
        return text
    room = max(0, max_bytes - len(marker.encode()))
    return encoded[:room].decode(errors="ignore") + marker


def _cut_json_string(text: str, max_json_bytes: int) -> str:
    """The longest cut of `text` whose JSON string encoding fits `max_json_bytes` (escapes make
    the encoding longer than the text, so search rather than compute)."""
    if len(dumps(text)) <= max_json_bytes:
        return text
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if len(dumps(cut_text(text, middle))) <= max_json_bytes:
            low = middle
        else:
            high = middle - 1
    return cut_text(text, low)


def fit_message(
    message: dict[str, Any],
    budget: int,
    wrap: Callable[[dict[str, Any]], Any] = lambda message: message,
) -> tuple[bytes, bool]:
    """Encode `wrap(message)` as JSON within `budget` bytes; return it and whether anything was
    cut. The record goes first (replaced by its marker), then, if still needed, the other texts
    in _CUT_ORDER, each cut to what the budget leaves, as a string ending in the marker."""
    body = dumps(wrap(message))
    if len(body) <= budget:
        return body, False
    fitted = dict(message)
    record = fitted.get("record")
    if isinstance(record, Mapping):
        fitted["record"] = record_marker(record, len(dumps(record)))
        body = dumps(wrap(fitted))
    for key in _CUT_ORDER:
        over = len(body) - budget
        if over <= 0:
            break
        if fitted.get(key) is None:
            continue
        value = fitted[key]
        text = value if isinstance(value, str) else dumps(value).decode()
        # The value's share of the body now (a structure is smaller than its JSON as a string).
        size = len(dumps(value))
        fitted[key] = _cut_json_string(text, max(_MIN_TEXT_BYTES, size - over))
        body = dumps(wrap(fitted))
    if len(body) > budget:
        raise ValueError(f"cannot fit the alert into {budget} bytes")
    return body, True


def fit_record_text(record: Mapping[str, Any], max_chars: int) -> tuple[str, bool]:
    """The record pretty-printed if it fits `max_chars`, else its marker pretty-printed."""
    pretty = dumps(plain(record), orjson.OPT_INDENT_2).decode()
    if len(pretty) <= max_chars:
        return pretty, False
    marker = record_marker(record, len(dumps(record)))
    return dumps(marker, orjson.OPT_INDENT_2).decode(), True


def one_line(text: str) -> str:
    """Every run of whitespace (newlines included) and control characters as one space."""
    cleaned = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in text)
    return " ".join(cleaned.split())


def ascii_line(text: str, max_chars: int) -> str:
    """One printable ASCII line of at most `max_chars` (SNS subjects): accents are dropped
    (é -> e), other non-ASCII characters removed, a cut marked with '...'."""
    folded = unicodedata.normalize("NFKD", one_line(text)).encode("ascii", "ignore").decode()
    folded = " ".join(folded.split())
    return cut_text(folded, max_chars, "...")
