"""The payload budget rules every JSON destination shares, and the HTTP helpers' parsing."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tattletail.destinations.budget import (
    TRUNCATED,
    ascii_line,
    cut_text,
    cut_utf8,
    fit_message,
    record_marker,
)
from tattletail.destinations.http import retry_after
from tattletail.records import RecordJSON
from tests.destinations.destination_support import (
    CREATE_USER,
    assert_is_marker,
    make_alert,
    synthetic_record,
)


def test_message_within_budget_is_untouched() -> None:
    message = make_alert().message()

    body, cut = fit_message(message, 10_000)

    assert (orjson.loads(body), cut) == (message, False)


def test_record_is_cut_first_and_alone_when_that_is_enough() -> None:
    record = synthetic_record(100_000)
    message = make_alert(record=record, match={"user": "u" * 5000}).message()

    body, cut = fit_message(message, 20_000)

    fitted = orjson.loads(body)
    assert cut and len(body) <= 20_000
    assert_is_marker(fitted["record"], record)
    assert fitted["match"] == {"user": "u" * 5000}
    assert fitted["description"] == message["description"]


def test_then_the_annotation_then_the_description_each_with_a_marker() -> None:
    message = make_alert(match={"policy": "p" * 50_000}, description="d" * 5_000).message()

    body, _ = fit_message(message, 30_000)

    fitted = orjson.loads(body)
    assert len(body) <= 30_000
    # The annotation is now its JSON text, cut; the description did not need cutting.
    assert fitted["match"].startswith('{"policy":"ppp') and fitted["match"].endswith(TRUNCATED)
    assert fitted["description"] == "d" * 5_000

    smaller, _ = fit_message(message, 3_000)
    fitted = orjson.loads(smaller)
    assert len(smaller) <= 3_000
    assert fitted["description"].endswith(TRUNCATED)
    assert fitted["name"] == "Create User"


def test_escapes_and_multibyte_characters_are_counted_as_bytes() -> None:
    message = make_alert(match='"é\\<\n' * 20_000).message()

    body, _ = fit_message(message, 12_345)

    assert len(body) <= 12_345
    # As much as fits was kept, not far less.
    assert len(body) > 12_345 - 200


def test_fitting_is_deterministic() -> None:
    message = make_alert(record=synthetic_record(), match="m" * 300_000).message()

    assert fit_message(message, 100_000) == fit_message(message, 100_000)


def test_a_budget_nothing_fits_in_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot fit"):
        fit_message(make_alert(name="n" * 1000).message(), 100)


def test_marker_keeps_the_identifying_fields_only() -> None:
    marker = record_marker(CREATE_USER, 1234)

    assert marker == {
        "eventID": CREATE_USER["eventID"],
        "eventName": "CreateUser",
        "eventTime": CREATE_USER["eventTime"],
        "eventSource": "iam.amazonaws.com",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "1.1.1.1",
        "recipientAccountId": "123456789",
        "userIdentity": {"arn": CREATE_USER["userIdentity"]["arn"]},
        "truncated": True,
        "original_size_bytes": 1234,
        "note": marker["note"],
    }
    assert record_marker({"eventName": 3}, 10) == {
        "truncated": True,
        "original_size_bytes": 10,
        "note": marker["note"],
    }


def test_cuts_are_marked_and_respect_character_boundaries() -> None:
    assert cut_text("abcdef", 6) == "abcdef"
    assert cut_text("abcdefghijklmnopq", 15) == "ab" + TRUNCATED
    cut = cut_utf8("é" * 100, 51)
    assert len(cut.encode()) <= 51 and cut.endswith(TRUNCATED)
    assert cut.startswith("é" * ((51 - len(TRUNCATED.encode())) // 2))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Tattletail: Créé", "Tattletail: Cree"),
        ("a\r\nb\tc\x00d", "a b c d"),
        ("日本 alert ✓", "alert"),
    ],
)
def test_ascii_line(text: str, expected: str) -> None:
    assert ascii_line(text, 100) == expected
    assert ascii_line("x" * 200, 100) == "x" * 97 + "..."


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("3", 3.0),
        (" 1.5 ", 1.5),
        ("-1", None),
        ("nan", None),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("Sun, 01 Jan 2034 00:00:10 GMT", 10.0),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(header: str | None, expected: Any) -> None:
    assert retry_after(header, now=lambda: 2019686400.0) == expected


def test_a_record_still_in_its_json_text_is_cut_to_its_marker_like_a_dict() -> None:
    record = synthetic_record(100_000)
    lazy = RecordJSON(orjson.dumps(record), record["eventID"])
    message = make_alert(record=lazy).message()

    body, cut = fit_message(message, 20_000)

    assert cut and len(body) <= 20_000
    assert_is_marker(orjson.loads(body)["record"], record)
    # Within the budget, the text goes out as it came.
    body, cut = fit_message(
        make_alert(record=RecordJSON(b'{"eventID":"e"}', "e")).message(), 10_000
    )
    assert not cut and orjson.loads(body)["record"] == {"eventID": "e"}
