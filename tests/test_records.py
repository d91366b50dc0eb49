"""Records: every accepted shape of a log file, and a precise reason for every bad one."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tattletail.json_output import json_default
from tattletail.objects import ObjectError
from tattletail.records import (
    LogFile,
    RecordJSON,
    Slice,
    decode_records,
    plain,
    read_all,
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


def test_a_truncated_document_gives_the_records_before_the_cut_and_one_failure() -> None:
    data = SEED_LOG.read_bytes()
    records = orjson.loads(data)["Records"]
    # Cut inside the third record (the seed file is pretty-printed: read entry by entry).
    third = data.index(
        b'"eventVersion"', data.index(b'"eventVersion"', data.index(b"eventVersion") + 1) + 1
    )
    cut = third + 100

    read = read_all(data[:cut])

    assert read.records == records[:2]
    assert [failure.reason for failure in read.failures] == ["invalid_json"]


def test_a_truncated_array_gives_the_records_before_the_cut_and_one_failure() -> None:
    data = STRATUS[0].read_bytes()
    read = read_all(data[:-3])
    assert read.records == orjson.loads(data)[:-1]
    assert len(read.failures) == 1


def test_a_truncated_last_json_line_is_a_failure_named_by_its_line_number() -> None:
    events = events_of(INVICTUS[0])[:3]
    data = b"\n".join(orjson.dumps(event) for event in events)

    read = read_all(data[:-10])

    assert read.records == events[:2]
    [failure] = read.failures
    assert failure.reason == "invalid_json" and failure.message.startswith("line 3:")
    assert failure.event_id == events[2]["eventID"]


def test_json_object_without_records_is_reason_not_cloudtrail() -> None:
    error = reason_of(b'{"records_": [], "foo": 1}')
    assert error.reason == "not_cloudtrail"
    assert "'Records'" in str(error)


def test_records_that_is_not_an_array_is_reason_not_cloudtrail() -> None:
    assert reason_of(b'{"Records": {"eventID": "x"}}').reason == "not_cloudtrail"
    assert reason_of(b'{"Records": null}').reason == "not_cloudtrail"


@pytest.mark.parametrize("layout", ["compact", "indented", "array", "lines"])
def test_entries_that_are_not_objects_are_skipped_and_counted_and_the_rest_read(
    layout: str,
) -> None:
    good = [{"eventVersion": "1.08", "eventID": "a"}, {"eventVersion": "1.08", "eventID": "b"}]
    entries: list[Any] = [good[0], 1, "two", None, [1], True, good[1]]
    data = {
        "compact": orjson.dumps({"Records": entries}),
        "indented": orjson.dumps({"Records": entries}, option=orjson.OPT_INDENT_2),
        "array": orjson.dumps(entries),
        "lines": b"\n".join(orjson.dumps(entry) for entry in entries),
    }[layout]

    read = read_all(data)

    assert (read.records, read.invalid, read.failures) == (good, 5, [])


@pytest.mark.parametrize(
    ("data", "kind"),
    [(b"42", "number"), (b'"Records"', "string"), (b"null", "null"), (b"true", "boolean")],
)
def test_json_scalar_is_not_cloudtrail_naming_its_json_type(data: bytes, kind: str) -> None:
    error = reason_of(data)
    assert error.reason == "not_cloudtrail"
    assert f"a JSON {kind} " in str(error)


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
    while not log_file.done:
        part = log_file.read(size)
        assert part.entries == size or log_file.done
        assert not part.failures and not part.invalid
        records += part.records
    return records


def _texts(part: Slice) -> list[bytes | None]:
    return [None if text is None else bytes(text) for text in part.texts or ()]


@pytest.mark.parametrize("path", sorted(CLOUDTRAIL.rglob("*.json"))[:12], ids=lambda p: p.name)
def test_a_log_file_read_in_slices_gives_the_records_decode_records_gives(path: Path) -> None:
    document = orjson.loads(path.read_bytes())
    if isinstance(document, list):
        document = {"Records": document}
    data = orjson.dumps(document)  # as CloudTrail writes it: compact
    assert LogFile(data)._compact
    assert _read_in_slices(data, 7) == orjson.loads(data)["Records"]


def test_other_layouts_are_decoded_whole() -> None:
    records = [{"eventVersion": "1.08", "eventName": "A"}, {"eventVersion": "1.08"}]
    for data in (
        orjson.dumps({"Records": records}, option=orjson.OPT_INDENT_2),
        orjson.dumps(records),
        b"\n".join(orjson.dumps(r) for r in records),
        orjson.dumps({"Records": records, "more": 1}),
    ):
        assert not LogFile(data)._compact
        assert _read_in_slices(data, 1) == records


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


def test_a_cut_inside_a_record_is_read_past_and_each_record_keeps_its_own_text() -> None:
    inner = {"eventVersion": "nested"}
    records = [
        {"eventVersion": "1", "n": 0},
        {"eventVersion": "1", "x": [inner, inner]},
        {"eventVersion": "1", "n": 2},
    ]
    texts = [orjson.dumps(record) for record in records]
    data = orjson.dumps({"Records": records})
    log_file = LogFile(data)

    first = log_file.read(1)
    assert (first.records, _texts(first)) == (records[:1], texts[:1])
    resume_at = log_file.position
    rest = log_file.read(5)
    assert (rest.records, _texts(rest)) == (records[1:], texts[1:])
    assert log_file.done
    # A reading resumed where a batch ended goes on from the same record.
    assert LogFile(data, resume_at).read(5).records == records[1:]


@pytest.mark.parametrize("indent", [0, orjson.OPT_INDENT_2])
def test_a_corrupt_record_is_a_failure_naming_its_event_id_and_the_rest_is_read(
    indent: int,
) -> None:
    records = [{"eventVersion": "1", "eventID": f"e{n}", "v": f"v{n}"} for n in range(4)]
    data = orjson.dumps({"Records": records}, option=indent).replace(b'"v1"', b'"v1')

    read = read_all(data)

    [failure] = read.failures
    assert (failure.event_id, failure.reason) == ("e1", "invalid_json")
    assert read.records == [records[0], *records[2:]]


@pytest.mark.parametrize("indent", [0, orjson.OPT_INDENT_2])
def test_records_orjson_refuses_are_read_as_libjq_reads_them(indent: int) -> None:
    deep = "[" * 1100 + "]" * 1100
    odd = [
        b'{"eventVersion":"1","eventID":"deep","d":' + deep.encode() + b"}",
        b'{"eventVersion":"1","eventID":"huge","n":1e400,"m":-1e400}',
        b'{"eventVersion":"1","eventID":"nan","n":NaN,"i":Infinity}',
        b'{"eventVersion":"1","eventID":"bytes","s":"a\xffb\\ud800"}',
    ]
    good = orjson.dumps({"eventVersion": "1", "eventID": "good"})
    data = b'{"Records":[' + b",".join([good, *odd, good]) + b"]}"
    if indent:
        data = data.replace(b"[{", b"[\n  {")

    read = read_all(data)

    assert [r["eventID"] for r in read.records] == ["good", "deep", "huge", "nan", "bytes", "good"]
    assert read.failures == []
    largest = 1.7976931348623157e308
    assert (read.records[2]["n"], read.records[2]["m"]) == (largest, -largest)
    assert read.records[3]["i"] == largest and read.records[3]["n"] != read.records[3]["n"]
    assert read.records[4]["s"] == "a\ufffdb\ufffd"


def test_a_record_nested_deeper_than_libjq_reads_is_a_failure_and_the_rest_is_read() -> None:
    too_deep = b'{"eventVersion":"1","eventID":"x","d":' + b"[" * 10_100 + b"]" * 10_100 + b"}"
    good = orjson.dumps({"eventVersion": "1", "eventID": "good"})

    read = read_all(b'{"Records":[' + b",".join([good, too_deep, good]) + b"]}")

    assert [r["eventID"] for r in read.records] == ["good", "good"]
    [failure] = read.failures
    assert (failure.event_id, failure.reason) == ("x", "too_deep")


def test_a_reading_resumed_elsewhere_starts_where_the_last_one_stopped_however_it_reads() -> None:
    records = [{"eventVersion": "1", "eventID": f"e{n}"} for n in range(6)]
    indented = orjson.dumps({"Records": records}, option=orjson.OPT_INDENT_2)
    first = LogFile(indented)
    assert [r["eventID"] for r in first.read(2).records] == ["e0", "e1"]
    assert first.position == ("index", 2)

    class NoRoomToDecodeWhole(LogFile):
        def _open(self, data: bytes, whole: bool) -> int:
            return super()._open(data, whole=False)

    # A worker that cannot decode the file whole (memory) reads the entries before it again.
    resumed = NoRoomToDecodeWhole(indented, first.position)
    assert [r["eventID"] for r in resumed.read(2).records] == ["e2", "e3"]
    # And a reading that began entry by entry goes on that way, from its byte offset.
    assert resumed.position[0] == "byte"
    again = LogFile(indented, resumed.position)
    assert [r["eventID"] for r in again.read(5).records] == ["e4", "e5"]
