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
    # isspace() stops at the first other byte; strip() would copy the whole file first.
    if not data or data.isspace():
        raise ObjectError("empty", "the object is empty (no JSON in it)")
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        lines = _json_lines(data)
        if lines is None:
            raise ObjectError("invalid_json", f"not valid JSON: {exc}") from None
        return _objects_only(lines)
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
        raise ObjectError("not_cloudtrail", f"a JSON {_json_type(document)} is not a log file")
    return _objects_only(records)


def _objects_only(records: list[Any]) -> list[dict[str, Any]]:
    bad = sum(1 for record in records if not isinstance(record, dict))
    if bad:
        raise ObjectError("not_cloudtrail", f"{bad} of {len(records)} records are not JSON objects")
    return records


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {str: "string", int: "number", float: "number", list: "array"}.get(type(value), "object")


def _json_lines(data: bytes) -> list[Any] | None:
    """Decode JSON Lines, or None when the data is not that either (so the JSON error is shown).

    Once the first line has decoded as an object, a bad line is reported by its number. A line
    that is a whole CloudTrail document (`{"Records": [...]}`) contributes its records.
    """
    records: list[Any] = []
    decoded = 0
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            if not decoded:
                return None
            message = f"not valid JSON Lines: line {number}, column {exc.colno}: {exc.msg}"
            raise ObjectError("invalid_json", message) from None
        if not isinstance(value, dict):
            if not decoded:
                return None
            raise ObjectError(
                "not_cloudtrail", f"JSON Lines: line {number} is a JSON {_json_type(value)}"
            )
        decoded += 1
        inner = value.get("Records")
        if isinstance(inner, list):
            records.extend(inner)
        else:
            records.append(value)
    return records if decoded > 1 else None
