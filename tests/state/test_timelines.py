"""`[[rule.test]]` timelines: `tattletail test` runs a rule with memory over a list of events
(with times) and checks the alerts it decides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tattletail import config
from tattletail.cli import main
from tattletail.config import ConfigError

RULE = """
[[rule]]
name = "Denied burst"
jq_match = 'select(.errorCode == "AccessDenied") | .eventName'
title = '"denied: \\(.userIdentity.arn)"'
threshold = { count = 3, window = "10m", group_by = ".userIdentity.arn" }
destinations = []
"""
DENIED = (
    'event = { eventID = "d", eventName = "ListUsers", errorCode = "AccessDenied", '
    'userIdentity = { arn = "arn:aws:iam::1:user/x" } }'
)


def timeline(name: str, head: str, *entries: str) -> str:
    body = "".join(f"\n[[rule.test.events]]\n{entry}\n" for entry in entries)
    return f'\n[[rule.test]]\nname = "{name}"\n{head}\n{body}'


def run(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    code = main(["test", "--config", str(path)])
    return code, capsys.readouterr().out


def test_a_timeline_passes_when_the_alerts_are_those_expected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        RULE
        + timeline(
            "three in a minute",
            'alerts = [{ count = 3, event_id = "d-2", first_event_id = "d-0", '
            'group = "arn:aws:iam::1:user/x", match = "ListUsers", '
            'title = "denied: arn:aws:iam::1:user/x" }]',
            f'at = "2024-01-01T00:00:00Z"\nrepeat = 3\nevery = "20s"\n{DENIED}',
        )
        + timeline(
            "two, then one in the next window",
            "expect = false",
            f'at = "2024-01-01T00:09:00Z"\nrepeat = 2\nevery = "10s"\n{DENIED}',
            f'at = "2024-01-01T00:10:00Z"\n{DENIED}',
        )
    )
    code, out = run(tmp_path, text, capsys)
    assert code == 0, out
    assert out.splitlines()[-1] == "2 tests of 1 rule: 2 passed, 0 failed, 0 errors, 0 skipped"


def test_a_failing_timeline_says_which_alert_and_field_differ(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        RULE
        + timeline(
            "wrong count",
            'alerts = [{ count = 4, group = "arn:aws:iam::1:user/x" }]',
            f'at = "2024-01-01T00:00:00Z"\nrepeat = 5\n{DENIED}',
        )
        + timeline(
            "expects one, gets none", "expect = true", f'at = "2024-01-01T00:00:00Z"\n{DENIED}'
        )
        + timeline(
            "expects none, gets one",
            "alerts = []",
            f'at = "2024-01-01T00:00:00Z"\nrepeat = 3\n{DENIED}',
        )
    )
    code, out = run(tmp_path, text, capsys)
    assert code == 1
    assert "    alert #0: count: expected 4, got 3" in out
    assert "    expected an alert, got none" in out
    assert "    expected 0 alerts, got 1: " in out
    assert out.splitlines()[-1].endswith("0 passed, 3 failed, 0 errors, 0 skipped")


def test_a_timeline_event_that_cannot_be_read_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "no-time.json").write_text(json.dumps({"eventID": "x", "eventName": "ListUsers"}))
    text = (
        RULE
        + timeline("missing file", "expect = true", 'event_file = "gone.json"')
        + timeline("no eventTime and no at", "expect = true", 'event_file = "no-time.json"')
    )
    code, out = run(tmp_path, text, capsys)
    assert code == 1
    assert "ERROR: " in out and "gone.json" in out
    assert "the record has no eventTime with a time zone: give `at`" in out


def test_a_rule_without_memory_alerts_on_each_match_of_a_timeline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = """
[[rule]]
name = "Plain"
jq_match = 'select(.errorCode == "AccessDenied") | .eventName'
destinations = []
""" + timeline(
        "each match",
        'alerts = [{ event_id = "d-0", match = "ListUsers" }, { event_id = "d-1" }]',
        f'at = "2024-01-01T00:00:00Z"\nrepeat = 2\n{DENIED}',
    )
    code, out = run(tmp_path, text, capsys)
    assert code == 0, out


@pytest.mark.parametrize(
    ("head", "entry", "expected"),
    [
        ("", "repeat = 2", "give exactly one of 'event' (a table, or the record's JSON in a"),
        ("expect = true", f"{DENIED}\nrepeat = 0", "'repeat' must be from 1 to 10000"),
        ("expect = true", f"{DENIED}\nevery = 'soon'", "every: 'soon' is not a duration"),
        ("expect = true", f"{DENIED}\nat = 'yesterday'", "'at' must be a date-time with an offset"),
        ("expect = true", f"{DENIED}\nwhen = 1", "unknown key 'when'"),
        ("alerts = [{ cuont = 1 }]", DENIED, "alerts #0: unknown key 'cuont'"),
        ("alerts = [1]", DENIED, "'alerts' must be a list of tables"),
        ("expect = false\nalerts = [{}]", DENIED, "expect = false contradicts 'alerts'"),
        ('expect = true\nmatch = "x"', DENIED, "with 'events', check the annotation and title in"),
    ],
)
def test_a_malformed_timeline_is_a_config_error(head: str, entry: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.parse(RULE + timeline("t", head, entry))
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


def test_alerts_without_a_timeline_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'alerts' needs 'events'"):
        config.parse(RULE + f'\n[[rule.test]]\nname = "t"\n{DENIED}\nexpect = true\nalerts = []\n')
