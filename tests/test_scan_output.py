"""`scan --dry-run` output: one line per alert, text for people and JSON for programs, safe
whatever the record holds."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import re
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tattletail.records import RecordJSON
from tattletail.scan_output import (
    LINE_WIDTH,
    AlertPrinter,
    Format,
    colour_wanted,
    default_format,
    json_line,
    principal,
    text_line,
)
from tests.destinations.destination_support import CREATE_USER, make_alert
from tests.support import HOSTILE

SGR = re.compile(r"\x1b\[[0-9;]*m")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def visible(line: str) -> str:
    """The line without the colour codes the printer itself adds."""
    return SGR.sub("", line)


def assert_one_safe_line(line: str, width: int = LINE_WIDTH) -> None:
    assert len(line) <= width
    assert line.isprintable(), repr(line)
    assert "\x1b" not in line


def test_text_line_has_time_severity_rule_match_principal_ip_and_place() -> None:
    line = text_line(make_alert(severity="high"))
    assert_one_safe_line(line)
    record = CREATE_USER
    assert line.startswith(f"{record['eventTime']} HIGH     Create User - username: user1")
    assert f"by {record['userIdentity']['arn']}" in line
    assert f"from {record['sourceIPAddress']}" in line
    assert line.endswith(f"in {record['recipientAccountId']}/{record['awsRegion']}")


def test_principal_of_the_records_account_is_shown_without_its_arn_prefix() -> None:
    record = {
        "recipientAccountId": "123456789012",
        "userIdentity": {"arn": "arn:aws:sts::123456789012:assumed-role/Admin/alice"},
    }
    assert "  by assumed-role/Admin/alice  in 123456789012" in text_line(make_alert(record))
    # Another account's principal keeps its whole ARN: cross-account activity stands out.
    record["userIdentity"] = {"arn": "arn:aws:iam::999999999999:user/mallory"}
    assert "  by arn:aws:iam::999999999999:user/mallory  in " in text_line(make_alert(record))


def test_account_and_region_come_from_the_record_else_from_the_alert() -> None:
    """An alert carries the account and region of its log file's key or EventBridge event
    (issue 15): the line shows them when the record lacks its own, and the record's otherwise."""
    bare = {k: v for k, v in CREATE_USER.items() if k not in ("recipientAccountId", "awsRegion")}
    placed = dataclasses.replace(make_alert(bare), account="111111111111", region="eu-west-1")
    assert text_line(placed).endswith("  in 111111111111/eu-west-1")
    assert text_line(make_alert(bare)).endswith(CREATE_USER["sourceIPAddress"])
    own = dataclasses.replace(make_alert(), account="111111111111", region="eu-west-1")
    assert text_line(own).endswith(
        f"  in {CREATE_USER['recipientAccountId']}/{CREATE_USER['awsRegion']}"
    )
    # The principal's ARN is shortened against the account shown, whichever told it.
    bare["userIdentity"] = {"arn": "arn:aws:iam::111111111111:user/alice"}
    placed = dataclasses.replace(make_alert(bare), account="111111111111")
    assert "  by user/alice  " in text_line(placed)


def test_text_line_prefers_the_title_and_shows_a_structured_match_as_json() -> None:
    assert " - IAM user created: bob  by " in text_line(make_alert(title="IAM user created: bob"))
    line = text_line(make_alert(match={"user": "bob", "n": 2}))
    assert ' - {"user":"bob","n":2}  by ' in line
    assert "Create User  by " in text_line(make_alert(match=None))


def test_text_line_of_a_dry_run_names_the_destinations() -> None:
    line = text_line(make_alert(destinations=("Default SNS", "Slack")), ("Default SNS", "Slack"))
    assert line.endswith("  -> Default SNS, Slack")
    assert text_line(make_alert(), ()).endswith("  -> (no destinations)")


def test_text_line_of_a_sparse_record_leaves_out_what_it_lacks() -> None:
    line = text_line(make_alert({"eventName": "X"}, match=None, severity="low"))
    assert line == "- LOW      Create User"


def test_text_line_reads_a_record_still_in_its_json_text() -> None:
    record = RecordJSON(orjson.dumps(CREATE_USER), CREATE_USER["eventID"])
    assert text_line(make_alert(record)) == text_line(make_alert())


def test_long_values_are_cut_to_fit_200_characters_keeping_every_part() -> None:
    record = {
        **CREATE_USER,
        "userIdentity": {"arn": "arn:aws:iam::123456789012:user/" + "u" * 300 + "/end"},
        "sourceIPAddress": "x" * 300,
    }
    line = text_line(make_alert(record, name="R" * 300, match="m" * 300), ("D" * 300,))
    assert_one_safe_line(line)
    assert len(line) == LINE_WIDTH
    for part in (" - ", "  by arn:aws:iam:", "/end  from ", "  in ", "  -> "):
        assert part in line


def test_colour_marks_severity_and_rule_and_adds_no_width() -> None:
    alert = make_alert(severity="critical")
    coloured = text_line(alert, colour=True)
    assert "\x1b[1;97;41mCRITICAL\x1b[0m" in coloured and "\x1b[1mCreate User\x1b[0m" in coloured
    assert visible(coloured) == text_line(alert)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_characters_in_any_field_cannot_reach_the_terminal(hostile: str) -> None:
    evil = f"a{hostile}b"
    record = {
        "eventTime": evil,
        "sourceIPAddress": evil,
        "recipientAccountId": evil,
        "awsRegion": evil,
        "userIdentity": {"arn": evil},
    }
    alert = make_alert(record, name=evil, match=evil, severity=evil, destinations=(evil,))
    line = visible(text_line(alert, (evil,), colour=True))
    assert_one_safe_line(line)
    # The alert's own account and region (an EventBridge event's, when the record has none).
    placed = dataclasses.replace(make_alert({}), account=evil, region=evil)
    assert_one_safe_line(visible(text_line(placed, (evil,), colour=True)))
    decoded = orjson.loads(json_line(alert, (evil,)))
    assert decoded["record"] == record and decoded["destinations"] == [evil]


def field_values() -> st.SearchStrategy[Any]:
    hostile = st.sampled_from(HOSTILE)
    text = st.one_of(st.text(), st.lists(st.one_of(st.text(), hostile)).map("".join))
    numbers = st.integers(-(2**63), 2**63 - 1)  # what orjson, which decoded the record, gives
    return st.one_of(text, st.none(), numbers, st.booleans(), st.lists(text, max_size=3))


def records() -> st.SearchStrategy[dict[str, Any]]:
    identity = st.fixed_dictionaries(
        {}, optional={"arn": field_values(), "invokedBy": field_values(), "type": field_values()}
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "eventTime": field_values(),
            "sourceIPAddress": field_values(),
            "recipientAccountId": field_values(),
            "awsRegion": field_values(),
            "userIdentity": st.one_of(identity, field_values()),
            "eventName": field_values(),
        },
    )


@settings(max_examples=300, deadline=None)
@given(
    record=records(),
    name=st.text(min_size=1),
    match=st.one_of(st.none(), st.text(), st.dictionaries(st.text(), st.text(), max_size=3)),
    title=st.one_of(st.none(), st.text()),
    destinations=st.lists(st.text(), max_size=4),
    colour=st.booleans(),
    place=st.tuples(st.one_of(st.none(), st.text()), st.one_of(st.none(), st.text())),
)
def test_any_record_gives_one_printable_line_of_at_most_200_characters(
    record: dict[str, Any],
    name: str,
    match: Any,
    title: str | None,
    destinations: list[str],
    colour: bool,
    place: tuple[str | None, str | None],
) -> None:
    alert = dataclasses.replace(
        make_alert(record, name=name, match=match),
        title=title,
        destinations=tuple(destinations),
        account=place[0],
        region=place[1],
    )
    line = text_line(alert, tuple(destinations), colour=colour)
    assert_one_safe_line(visible(line))
    if not colour:
        assert "\x1b" not in line
    # JSON: one line, the same alert back, no character a terminal acts on.
    encoded = json_line(alert, tuple(destinations))
    assert encoded.endswith(b"\n") and encoded.count(b"\n") == 1
    text = encoded.decode()
    assert text[:-1].isprintable() and "\x1b" not in text
    decoded = json.loads(text)
    assert decoded["record"] == record and decoded["name"] == name
    assert decoded["destinations"] == destinations


def test_principal_falls_back_from_the_arn_to_the_acting_service() -> None:
    assert principal({"userIdentity": {"arn": "arn:x", "invokedBy": "s"}}) == "arn:x"
    assert principal(
        {"userIdentity": {"type": "AWSService", "invokedBy": "ec2.amazonaws.com"}}
    ) == ("ec2.amazonaws.com")
    assert principal({"userIdentity": "odd"}) is None
    assert principal({}) is None


def test_formats_default_to_text_on_a_terminal_and_json_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert default_format(Terminal()) is Format.TEXT
    assert default_format(io.StringIO()) is Format.JSON
    assert colour_wanted(Terminal()) and not colour_wanted(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not colour_wanted(Terminal())
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert not colour_wanted(Terminal())


def test_printer_writes_one_line_per_alert_in_either_format() -> None:
    alerts = [make_alert(), make_alert(match=None, name="Second\nrule")]
    for fmt in Format:
        stream = io.BytesIO()
        asyncio.run(AlertPrinter(stream, fmt)(alerts))
        lines = stream.getvalue().decode().splitlines()
        assert len(lines) == 2
        if fmt is Format.JSON:
            assert [json.loads(line)["destinations"] for line in lines] == [["Out"], ["Out"]]
        else:
            assert lines[1].startswith(CREATE_USER["eventTime"])
            assert "Second\\nrule" in lines[1] and lines[1].endswith("  -> Out")


def test_json_line_without_destinations_is_the_stdout_destinations_line() -> None:
    from tattletail.destinations import stdout

    alert = make_alert()
    assert json_line(alert) == stdout.render(alert)
    assert "destinations" not in orjson.loads(json_line(alert))


def test_json_line_escapes_c1_controls_and_bidi_overrides_but_keeps_other_unicode() -> None:
    alert = make_alert(match="Zoë \u202e\x9b2J 用户 \U0001f600 \U000e0041")
    line = json_line(alert).decode()
    assert "\\u202e" in line and "\\u009b" in line and "\\udb40\\udc41" in line
    assert "Zoë" in line and "用户" in line and "\U0001f600" in line
    assert json.loads(line)["match"] == alert.match
