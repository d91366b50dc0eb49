"""The records stage: decode a log file's JSON into the list of CloudTrail records.

Accepted shapes: a CloudTrail document `{"Records": [...]}` (what S3 receives), a JSON array of
events (what `aws cloudtrail lookup-events` and many datasets give), or JSON Lines.
"""

from __future__ import annotations

from typing import Any

import orjson

from tattletail.objects import ObjectError


def decode_records(data: bytes) -> list[dict[str, Any]]:
    """Return the records in a log file; ObjectError with a precise reason otherwise."""
    if not data.strip():
        raise ObjectError("empty", "the object is empty (zero bytes)")
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        lines = _json_lines(data)
        if lines is None:
            raise ObjectError("invalid_json", f"not valid JSON: {exc}") from None
        return lines
    if isinstance(document, dict):
        records = document.get("Records")
        if not isinstance(records, list):
            if "Records" not in document and "eventID" in document:
                return [document]
            raise ObjectError(
                "not_cloudtrail", "a JSON object without a 'Records' array is not a CloudTrail log"
            )
    elif isinstance(document, list):
        records = document
    else:
        raise ObjectError("not_cloudtrail", f"a JSON {type(document).__name__} is not a log file")
    bad = sum(1 for record in records if not isinstance(record, dict))
    if bad:
        raise ObjectError("not_cloudtrail", f"{bad} of {len(records)} records are not JSON objects")
    return records


def _json_lines(data: bytes) -> list[dict[str, Any]] | None:
    """Decode JSON Lines, or None when the data is not that either (so the JSON error is shown)."""
    records = []
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(value, dict):
            return None
        records.append(value)
    return records if len(records) > 1 else None
