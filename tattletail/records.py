"""The records stage: decode a log file's JSON into the list of CloudTrail records.

Accepted shapes: a CloudTrail document `{"Records": [...]}` (what S3 receives), a JSON array of
events (what `aws cloudtrail lookup-events` and many datasets give), or JSON Lines.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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


# How CloudTrail writes a log file: one compact document, `{"Records":[{"eventVersion":...},...]}`.
_DOCUMENT_HEAD = b'{"Records":[{"eventVersion":'
_RECORDS_START = len(b'{"Records":[')
_BETWEEN_RECORDS = b'},{"eventVersion":'
_DOCUMENT_TAIL = b"]}"


def record_texts(data: bytes) -> list[memoryview] | None:
    """Each record's JSON text, without decoding, when the file is laid out as CloudTrail
    writes it; None for any other layout (decode_records reads those).

    The file is cut wherever `},{"eventVersion":` occurs. Inside a JSON string a bare quote is
    impossible, so that is always one object, whose first key is eventVersion, following
    another in an array: records in the Records array -- or, if a record nests such objects,
    in an array inside it. A text cut inside a record does not decode (its braces do not
    close), and every text before it is a whole record: see LogFile.
    """
    if not data.startswith(_DOCUMENT_HEAD):
        return None
    end = len(data)
    while end and data[end - 1] in b" \t\r\n":
        end -= 1
    end -= len(_DOCUMENT_TAIL)
    if data[end : end + len(_DOCUMENT_TAIL)] != _DOCUMENT_TAIL:
        return None
    view = memoryview(data)
    texts = []
    start = _RECORDS_START
    cut = data.find(_BETWEEN_RECORDS, start, end)
    while cut != -1:
        texts.append(view[start : cut + 1])
        start = cut + 2
        cut = data.find(_BETWEEN_RECORDS, start, end)
    texts.append(view[start:end])
    return texts


class LogFile:
    """A log file's records, decoded a slice at a time where its layout allows (record_texts).

    Evaluating a slice of records right after decoding it finds them still in the CPU's
    caches, which makes evaluation several times cheaper than walking a whole file's records
    decoded long before; and a slice nobody keeps is freed before the next one is decoded.
    Where a text does not decode, the whole file is decoded instead (decode_records, with its
    errors) and used from that record on: the records before it were whole records, the same
    in both readings.
    """

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._texts = record_texts(data)
        self._records = decode_records(data) if self._texts is None else None

    def __len__(self) -> int:
        return len(self._records) if self._records is not None else len(self._texts or ())

    def records(self, start: int, stop: int) -> list[dict[str, Any]]:
        """Records start to stop (in file order), decoded now."""
        if self._records is None:
            assert self._texts is not None
            loads = orjson.loads
            try:
                return [loads(text) for text in self._texts[start:stop]]
            except orjson.JSONDecodeError:
                self._texts = None
                self._records = decode_records(self._data)
        return self._records[start:stop]


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


class RecordJSON(Mapping[str, Any]):
    """A record as the JSON text a rule worker sent back with a match, decoded on first read.

    Most alerts are only encoded again (printed, published, archived), and `json_default`
    lets orjson embed the text as it is, so the main process never decodes those records.
    `event_id` and `event_time` are read in the worker, for alert ids, dedupe and latency
    without a decode.
    """

    __slots__ = ("_decoded", "event_id", "event_time", "json")

    def __init__(self, json: bytes, event_id: str = "", event_time: str = "") -> None:
        self.json = json
        self.event_id = event_id
        self.event_time = event_time
        self._decoded: dict[str, Any] | None = None

    @property
    def decoded(self) -> dict[str, Any]:
        if self._decoded is None:
            self._decoded = orjson.loads(self.json)
        return self._decoded

    def __getitem__(self, key: str) -> Any:
        return self.decoded[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.decoded.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.decoded)

    def __len__(self) -> int:
        return len(self.decoded)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RecordJSON):
            return self.decoded == other.decoded
        return self.decoded == other

    __hash__ = None  # type: ignore[assignment] # a record is a dict: not hashable either

    def __reduce__(self) -> tuple[Any, ...]:
        return (RecordJSON, (self.json, self.event_id, self.event_time))

    def __repr__(self) -> str:
        return f"RecordJSON({self.json[:60]!r}..., event_id={self.event_id!r})"


def plain(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record as a dict (decoding a RecordJSON), for what orjson cannot embed as text:
    pretty-printing, sorted keys."""
    if isinstance(record, RecordJSON):
        return record.decoded
    return record if isinstance(record, dict) else dict(record)


def json_default(value: Any) -> Any:
    """orjson's `default`: a RecordJSON goes into the output as the text it already is."""
    if isinstance(value, RecordJSON):
        return orjson.Fragment(value.json)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
