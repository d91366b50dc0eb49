"""Records: every accepted shape of a log file, and a precise reason for every bad one."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tattletail.objects import ObjectError
from tattletail.records import (
    LogFile,
    RecordJSON,
    decode_records,
    json_default,
    plain,
    record_texts,
)
from tests.support import CLOUDTRAIL, SEED_LOG

INVICTUS = sorted((CLOUDTRAIL / "invictus").glob("*.json"))
STRATUS = sorted((CLOUDTRAIL / "stratus-red-team").glob("*.json"))


def events_of(path: Path) -> list[dict[str, Any]]:
    document = orjson.loads(path.read_bytes())
    return document["Records"] if isinstance(document, dict) else document


def reason_of(data: bytes) -> ObjectError:
    with pytest.raises(ObjectError) as caught:
        decode_records(data)
    return caught.value


# -- accepted shapes -------------------------------------------------------------------------


def test_cloudtrail_document_as_delivered_to_s3_gives_its_records() -> None:
    for path in [SEED_LOG, *INVICTUS[:5]]:
        data = path.read_bytes()
        assert data.lstrip().startswith(b"{")
        assert decode_records(data) == orjson.loads(data)["Records"]


def test_json_array_of_events_gives_the_events() -> None:
    assert STRATUS
    for path in STRATUS[:5]:
        data = path.read_bytes()
        assert data.lstrip().startswith(b"[")
        assert decode_records(data) == orjson.loads(data)


def test_json_lines_give_one_record_per_line_ignoring_blank_lines_and_crlf() -> None:
    events = events_of(INVICTUS[0])
    assert len(events) > 2
    data = b"\r\n".join(orjson.dumps(event) for event in events) + b"\r\n\r\n"
    assert decode_records(data) == events

    with_blank_lines = b"\n\n".join(orjson.dumps(event) for event in events)
    assert decode_records(with_blank_lines) == events


def test_json_lines_of_cloudtrail_documents_give_every_documents_records() -> None:
    # `jq -c . *.json` over delivered files: one whole document per line.
    first, second = events_of(INVICTUS[0]), events_of(INVICTUS[1])
    data = orjson.dumps({"Records": first}) + b"\n" + orjson.dumps({"Records": second}) + b"\n"

    assert decode_records(data) == first + second


def test_single_event_object_is_one_record() -> None:
    event = events_of(SEED_LOG)[1]
    assert decode_records(orjson.dumps(event)) == [event]
    assert decode_records(orjson.dumps(event, option=orjson.OPT_INDENT_2)) == [event]


def test_documents_with_no_records_give_no_records() -> None:
    assert decode_records(b'{"Records": []}') == []
    assert decode_records(b"[]") == []


# -- precise reasons -------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"   \n\t\r\n"], ids=["zero-bytes", "whitespace"])
def test_empty_data_is_reason_empty(data: bytes) -> None:
    assert reason_of(data).reason == "empty"


@pytest.mark.parametrize(
    "data",
    [b"not json at all", b"<?xml version='1.0'?><Records/>", b"{'Records': []}", b"\x1f\x8b\x08"],
    ids=["text", "xml", "single-quotes", "gzip-bytes"],
)
def test_invalid_json_is_reason_invalid_json(data: bytes) -> None:
    error = reason_of(data)
    assert error.reason == "invalid_json"
    assert str(error).startswith("not valid JSON")


def test_truncated_document_is_invalid_json_saying_the_data_ends_early() -> None:
    data = SEED_LOG.read_bytes()
    error = reason_of(data[: len(data) // 2])

    assert error.reason == "invalid_json"
    assert "end of data" in str(error)


def test_truncated_array_is_invalid_json() -> None:
    data = STRATUS[0].read_bytes()
    assert reason_of(data[:-3]).reason == "invalid_json"


def test_truncated_last_json_line_is_reported_by_its_line_number() -> None:
    events = events_of(INVICTUS[0])[:3]
    data = b"\n".join(orjson.dumps(event) for event in events)

    error = reason_of(data[:-10])

    assert error.reason == "invalid_json"
    assert "line 3" in str(error)


def test_json_object_without_records_is_reason_not_cloudtrail() -> None:
    error = reason_of(b'{"records_": [], "foo": 1}')
    assert error.reason == "not_cloudtrail"
    assert "'Records'" in str(error)


def test_records_that_is_not_an_array_is_reason_not_cloudtrail() -> None:
    assert reason_of(b'{"Records": {"eventID": "x"}}').reason == "not_cloudtrail"
    assert reason_of(b'{"Records": null}').reason == "not_cloudtrail"


def test_non_object_records_are_reason_not_cloudtrail_with_their_count() -> None:
    error = reason_of(b'{"Records": [{"eventID": "a"}, 1, "two", null]}')
    assert error.reason == "not_cloudtrail"
    assert "3 of 4 records" in str(error)

    assert reason_of(b'[{"eventID": "a"}, [1]]').reason == "not_cloudtrail"


@pytest.mark.parametrize(
    ("data", "kind"),
    [(b"42", "number"), (b'"Records"', "string"), (b"null", "null"), (b"true", "boolean")],
)
def test_json_scalar_is_not_cloudtrail_naming_its_json_type(data: bytes, kind: str) -> None:
    error = reason_of(data)
    assert error.reason == "not_cloudtrail"
    assert f"a JSON {kind} " in str(error)


def test_json_lines_with_a_non_object_line_is_not_cloudtrail() -> None:
    error = reason_of(b'{"eventID": "a"}\n{"eventID": "b"}\n[1, 2]\n')
    assert error.reason == "not_cloudtrail"
    assert "line 3" in str(error)


def _record_json(record: dict[str, Any]) -> RecordJSON:
    return RecordJSON(orjson.dumps(record), record.get("eventID", ""))


def test_record_json_reads_like_the_record_and_decodes_only_when_read() -> None:
    record = decode_records(SEED_LOG.read_bytes())[1]
    lazy = _record_json(record)
    assert lazy.event_id == record["eventID"]
    assert lazy._decoded is None
    assert lazy == record and record == lazy
    assert lazy["eventName"] == "CreateUser" and lazy.get("missing", 7) == 7
    assert dict(lazy) == record and len(lazy) == len(record)
    assert plain(lazy) is lazy.decoded


def test_record_json_is_embedded_as_its_text_when_encoded() -> None:
    lazy = RecordJSON(b'{"eventID":"e","n":1}', "e")
    document = orjson.dumps({"record": lazy, "x": [lazy]}, default=json_default)
    assert document == b'{"record":{"eventID":"e","n":1},"x":[{"eventID":"e","n":1}]}'
    assert lazy._decoded is None
    with pytest.raises(TypeError, match="not JSON serializable"):
        orjson.dumps({"x": object()}, default=json_default)


def test_record_json_survives_pickling_without_decoding() -> None:
    lazy = RecordJSON(b'{"eventID":"e"}', "e")
    copy = pickle.loads(pickle.dumps(lazy))
    assert (copy.json, copy.event_id, copy._decoded) == (lazy.json, "e", None)


def _read_in_slices(data: bytes, size: int) -> list[dict[str, Any]]:
    log_file = LogFile(data)
    records: list[dict[str, Any]] = []
    while len(records) < len(log_file):
        records += log_file.records(len(records), len(records) + size)
    return records


@pytest.mark.parametrize("path", sorted(CLOUDTRAIL.rglob("*.json"))[:12], ids=lambda p: p.name)
def test_a_log_file_read_in_slices_gives_the_records_decode_records_gives(path: Path) -> None:
    document = orjson.loads(path.read_bytes())
    if isinstance(document, list):
        document = {"Records": document}
    data = orjson.dumps(document)  # as CloudTrail writes it: compact
    assert record_texts(data) is not None
    assert _read_in_slices(data, 7) == decode_records(data)


def test_other_layouts_are_decoded_whole() -> None:
    records = [{"eventVersion": "1.08", "eventName": "A"}, {"eventVersion": "1.08"}]
    for data in (
        orjson.dumps({"Records": records}, option=orjson.OPT_INDENT_2),
        orjson.dumps(records),
        b"\n".join(orjson.dumps(r) for r in records),
        orjson.dumps({"Records": records, "more": 1}),
    ):
        assert record_texts(data) is None
        assert _read_in_slices(data, 1) == decode_records(data)


_nested = st.recursive(
    st.one_of(st.none(), st.text(alphabet='{},:"[]\\e', max_size=6), st.integers(-9, 9)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["eventVersion", "a", "b"]), inner, max_size=3),
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries({"eventVersion": st.just("1.08")}, optional={"x": _nested}),
        min_size=1,
        max_size=6,
    ),
    st.integers(1, 4),
)
def test_records_nesting_objects_that_look_like_records_are_read_right(
    records: list[dict[str, Any]], size: int
) -> None:
    # Nested arrays of objects whose first key is eventVersion are cut wrongly at first.
    data = orjson.dumps({"Records": records})
    assert _read_in_slices(data, size) == records


def test_a_cut_inside_a_record_falls_back_without_changing_the_records_before_it() -> None:
    inner = {"eventVersion": "nested"}
    records = [{"eventVersion": "1", "n": 0}, {"eventVersion": "1", "x": [inner, inner]}]
    data = orjson.dumps({"Records": records})
    log_file = LogFile(data)
    assert len(log_file) == 3  # the nested objects were cut apart
    assert log_file.records(0, 1) == records[:1]
    assert log_file.records(1, 5) == records[1:]
    assert len(log_file) == 2


def test_a_corrupt_record_is_the_error_decode_records_reports() -> None:
    data = orjson.dumps({"Records": [{"eventVersion": "1"}, {"eventVersion": "2"}]})
    broken = data.replace(b'"2"', b'"2')
    with pytest.raises(ObjectError, match="not valid JSON"):
        LogFile(broken).records(0, 2)
