"""Inline rule tests: [[rule.test]] tables, `tattletail test`, its JUnit report, and `validate`."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tattletail import config
from tattletail.cli import main
from tattletail.config import NOT_GIVEN, ConfigError

EVENT = (
    'event = { eventName = "CreateUser", userAgent = "aws-cli/2.0", '
    'requestParameters = { userName = "mallory" }, userIdentity = { userName = "alice" } }'
)
RULE = """
[[rule]]
name = "Create User"
jq_match = 'select(.eventName == "CreateUser") | "created \\(.requestParameters.userName)"'
title = '"\\(.userIdentity.userName) created a user"'
destinations = []
"""


def case_table(name: str, body: str) -> str:
    return f'\n[[rule.test]]\nname = "{name}"\n{body}\n'


PASSING = (
    RULE
    + case_table(
        "alerts",
        f'{EVENT}\nexpect = true\nmatch = "created mallory"\ntitle = "alice created a user"',
    )
    + case_table("near miss", 'event = { eventName = "DeleteUser" }\nexpect = false')
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def run_test_command(
    path: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str, str]:
    code = main(["test", "--config", str(path), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- the tables in the config -------------------------------------------------------------------


def test_rule_tests_are_read_with_their_expectations(tmp_path: Path) -> None:
    loaded = config.parse(
        PASSING + case_table("from a file", 'event_file = "events/e.json"\nexpect = false'),
        path=tmp_path / "c.toml",
    )
    alerts, near_miss, from_file = loaded.rules[0].tests
    assert (alerts.name, alerts.expect, alerts.match, alerts.title) == (
        "alerts",
        True,
        "created mallory",
        "alice created a user",
    )
    assert alerts.event is not None and alerts.event["eventName"] == "CreateUser"
    assert (near_miss.expect, near_miss.match, near_miss.title) == (False, NOT_GIVEN, None)
    assert from_file.event_file == tmp_path / "events" / "e.json"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("expect = true", "give exactly one of 'event' (a table, or the record's JSON in a"),
        (f'{EVENT}\nevent_file = "e.json"\nexpect = true', "give exactly one of"),
        (EVENT, "'expect' must be true or false"),
        (f'{EVENT}\nexpect = false\nmatch = "x"', "'match' and 'title' can only be checked"),
        (f"{EVENT}\nexpect = true\nexpected = true", "unknown key 'expected'"),
        ("event = { eventTime = 2024-01-01T00:00:00Z }\nexpect = true", "TOML date or time"),
        ('event = "CreateUser"\nexpect = true', "'event' is not JSON"),
        ("event = '[1, 2]'\nexpect = true", "must be the JSON of one CloudTrail record"),
        ("event = 3\nexpect = true", "'event' must be a table or a string of JSON"),
    ],
)
def test_malformed_test_table_is_a_config_error_naming_rule_and_test(
    body: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config.parse(RULE + case_table("t", body))
    [problem] = caught.value.problems
    assert problem.startswith("rule #0 'Create User': test #0 't': ")
    assert expected in problem


def test_two_tests_of_a_rule_with_one_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        config.parse(RULE + case_table("t", f"{EVENT}\nexpect = true") * 2)
    assert caught.value.problems == [
        "rule #0 'Create User': test #1 't': another test of the rule has the same name"
    ]


# -- tattletail test --------------------------------------------------------------------------


def test_passing_tests_print_a_table_and_exit_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_test_command(write(tmp_path / "c.toml", PASSING), capsys)

    assert code == 0
    rows = out.splitlines()
    assert rows[0].split() == ["RESULT", "RULE", "TEST"]
    assert rows[1].split(maxsplit=1) == ["pass", "Create User  alerts"]
    assert rows[2].split(maxsplit=1) == ["pass", "Create User  near miss"]
    assert rows[-1] == "2 tests of 1 rule: 2 passed, 0 failed, 0 errors, 0 skipped"


FAILURES = [
    pytest.param(
        'event = { eventName = "DeleteUser" }\nexpect = true',
        "expected an alert, got no match",
        id="no-match",
    ),
    pytest.param(
        f'{EVENT}\nexpect = true\nmatch = "created bob"',
        'match: expected "created bob", got "created mallory"',
        id="wrong-match",
    ),
    pytest.param(
        f'{EVENT}\nexpect = true\ntitle = "bob created a user"',
        'title: expected "bob created a user", got "alice created a user"',
        id="wrong-title",
    ),
    pytest.param(
        f"{EVENT}\nexpect = false",
        'expected no alert, got an alert, match "created mallory", title "alice created a user"',
        id="unexpected-alert",
    ),
]


@pytest.mark.parametrize(("body", "detail"), FAILURES)
def test_failing_test_shows_what_the_rule_produced_against_the_expectation_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, detail: str
) -> None:
    path = write(tmp_path / "c.toml", RULE + case_table("t", body))
    code, out, _ = run_test_command(path, capsys)

    assert code == 1
    assert out.splitlines()[1].split(maxsplit=1) == ["FAIL", "Create User  t"]
    assert f"FAIL: {path}: rule #0 'Create User': test 't'\n    {detail}\n" in out
    assert out.splitlines()[-1] == "1 test of 1 rule: 0 passed, 1 failed, 0 errors, 0 skipped"


SUPPRESS_CLI = "suppress = { match = '.userAgent | startswith(\"aws-cli\")', expires = %s }\n"


def test_suppressed_match_fails_an_expect_true_test_and_passes_an_expect_false_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        RULE
        + SUPPRESS_CLI % "2999-01-01"
        + case_table("alerts", f"{EVENT}\nexpect = true")
        + case_table("suppressed", f"{EVENT}\nexpect = false")
    )
    code, out, _ = run_test_command(write(tmp_path / "c.toml", text), capsys)

    assert code == 1
    assert "expected an alert, got a match held back by suppress" in out
    assert "1 passed, 1 failed" in out


def test_expired_suppression_lets_the_test_event_alert_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = RULE + SUPPRESS_CLI % "2020-01-01" + case_table("alerts", f"{EVENT}\nexpect = true")
    code, out, _ = run_test_command(write(tmp_path / "c.toml", text), capsys)

    assert code == 0, out


def test_event_file_is_relative_to_the_file_of_the_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = {"eventName": "CreateUser", "requestParameters": {"userName": "eve"}}
    write(tmp_path / "pack" / "events" / "create.json", json.dumps(event))
    write(
        tmp_path / "pack" / "rules.toml",
        RULE
        + case_table(
            "from file", 'event_file = "events/create.json"\nexpect = true\nmatch = "created eve"'
        ),
    )
    top = write(tmp_path / "conf" / "top.toml", 'include = ["../pack/rules.toml"]\n')

    code, out, _ = run_test_command(top, capsys)

    assert code == 0, out
    assert "1 passed" in out


def test_missing_event_file_is_an_error_of_that_test_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path / "c.toml", RULE + case_table("t", 'event_file = "nope.json"\nexpect = true')
    )
    code, out, _ = run_test_command(path, capsys)

    assert code == 1
    assert out.splitlines()[1].split(maxsplit=1) == ["ERROR", "Create User  t"]
    assert f"event_file {tmp_path / 'nope.json'}: No such file or directory" in out
    assert "0 failed, 1 error," in out


def test_tests_of_a_disabled_rule_are_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = PASSING.replace("destinations = []", "destinations = []\nenabled = false")
    code, out, _ = run_test_command(write(tmp_path / "c.toml", text), capsys)

    assert code == 0
    assert out.splitlines()[-1] == "2 tests of 1 rule: 0 passed, 0 failed, 0 errors, 2 skipped"


def test_config_error_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "c.toml", RULE + "suppress = '.a |'\n")
    code, out, err = run_test_command(path, capsys)

    assert code == 2
    assert out == ""
    assert err.startswith(f"tattletail: {path}: rule #0 'Create User': suppress does not compile")
    assert len(err.strip().splitlines()) == 1


def test_config_without_tests_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_test_command(write(tmp_path / "c.toml", RULE), capsys)
    assert code == 0
    assert "no [[rule.test]]" in out


# -- JUnit ------------------------------------------------------------------------------------


def test_junit_report_parses_back_with_every_case_and_its_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path / "c.toml",
        PASSING + case_table("wrong", f'{EVENT}\nexpect = true\nmatch = "created bob"'),
    )
    report = tmp_path / "out" / "junit.xml"
    report.parent.mkdir()

    code, _, _ = run_test_command(path, capsys, "--junit", str(report))

    assert code == 1
    root = ET.parse(report).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "1", "0")
    [suite] = root.findall("testsuite")
    assert suite.get("name") == str(path)
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert list(cases) == ["alerts", "near miss", "wrong"]
    assert all(case.get("classname") == "Create User" for case in cases.values())
    assert cases["alerts"].find("failure") is None
    failure = cases["wrong"].find("failure")
    assert failure is not None
    assert failure.get("message") == 'match: expected "created bob", got "created mallory"'


def test_junit_report_marks_skipped_and_errored_tests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        RULE
        + case_table("missing", 'event_file = "nope.json"\nexpect = true')
        + RULE.replace("Create User", "Off").replace("destinations = []", "enabled = false")
        + case_table("off", f"{EVENT}\nexpect = true")
    )
    report = tmp_path / "junit.xml"
    run_test_command(write(tmp_path / "c.toml", text), capsys, "--junit", str(report))

    cases = {c.get("name"): c for c in ET.parse(report).getroot().iter("testcase")}
    assert cases["missing"].find("error") is not None
    assert cases["off"].find("skipped") is not None


def test_unwritable_junit_path_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "c.toml", PASSING)
    code, _, err = run_test_command(path, capsys, "--junit", str(tmp_path / "no" / "j.xml"))
    assert code == 2
    assert "cannot write the JUnit report" in err


# -- validate runs the tests too ----------------------------------------------------------------


def test_validate_runs_the_rule_tests_and_exits_1_when_one_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path / "c.toml",
        PASSING + case_table("wrong", 'event = { eventName = "X" }\nexpect = true'),
    )
    code = main(["validate", "--config", str(path)])
    out = capsys.readouterr().out

    assert code == 1
    assert f"{path}: OK, 1 rule, 0 destinations" in out
    assert f"FAIL: {path}: rule #0 'Create User': test 'wrong'" in out
    assert "3 tests of 1 rule: 2 passed, 1 failed" in out


def test_validate_exits_0_when_every_test_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", "--config", str(write(tmp_path / "c.toml", PASSING))]) == 0
    assert "2 tests of 1 rule: 2 passed" in capsys.readouterr().out


# -- a multi-line event, and one rule or one file at a time -------------------------------------


def test_event_may_be_multi_line_json_in_a_literal_string(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    multi_line = """event = '''
{
  "eventName": "CreateUser",
  "userAgent": "aws-cli/2.0",
  "requestParameters": {"userName": "mallory", "tags": null},
  "userIdentity": {"userName": "alice"}
}
'''
expect = true
match = "created mallory"
title = "alice created a user\""""
    path = write(tmp_path / "c.toml", RULE + case_table("pasted JSON", multi_line))
    [test] = config.load_file(path).rules[0].tests
    # JSON's null survives, which a TOML table cannot hold.
    assert test.event is not None and test.event["requestParameters"]["tags"] is None

    code, out, _ = run_test_command(path, capsys)
    assert code == 0, out
    assert out.splitlines()[-1] == "1 test of 1 rule: 1 passed, 0 failed, 0 errors, 0 skipped"


def test_event_that_is_not_json_names_the_test_and_where_the_json_breaks(tmp_path: Path) -> None:
    broken = "event = '''\n{\n  \"eventName\": \"CreateUser\",\n}\n'''\nexpect = true"
    with pytest.raises(ConfigError) as caught:
        config.parse(RULE + case_table("pasted", broken), path=tmp_path / "c.toml")
    [problem] = caught.value.problems
    assert "rule #0 'Create User': test #0 'pasted': 'event' is not JSON" in problem
    assert "trailing comma" in problem and "line 2" in problem


TWO_FILES = """
include = ["rules/*.toml"]

[[rule]]
name = "Top rule"
jq_match = 'select(.eventName == "A")'
destinations = []

[[rule.test]]
name = "a"
event = { eventName = "A" }
expect = true
"""


@pytest.fixture
def two_files(tmp_path: Path) -> Path:
    write(tmp_path / "rules" / "more.toml", PASSING)
    return write(tmp_path / "top.toml", TWO_FILES)


def test_rule_option_runs_only_that_rules_tests(
    two_files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_test_command(two_files, capsys, "--rule", "Create User")
    assert code == 0
    assert out.splitlines()[-1].startswith("2 tests of 1 rule: 2 passed")
    assert "Top rule" not in out


def test_file_option_runs_only_the_tests_of_rules_written_there(
    two_files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_test_command(two_files, capsys, "--file", str(two_files))
    assert code == 0
    assert out.splitlines()[-1].startswith("1 test of 1 rule: 1 passed")
    included = two_files.parent / "rules" / "more.toml"
    code, out, _ = run_test_command(two_files, capsys, "--file", str(included))
    assert "Create User" in out and "Top rule" not in out
    # Both: the rules written in that file with that name.
    code, out, _ = run_test_command(
        two_files, capsys, "--file", str(included), "--rule", "Top rule"
    )
    assert code == 0 and "no [[rule.test]] in the 0 selected rules" in out


def test_unknown_rule_or_file_exits_2_suggesting_the_closest(
    two_files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_test_command(two_files, capsys, "--rule", "Create user")
    assert code == 2 and out == ""
    assert "no rule named 'Create user' (did you mean 'Create User'?)" in err
    code, _, err = run_test_command(two_files, capsys, "--file", "rules/nope.toml")
    assert code == 2
    assert "no rule is written in rules/nope.toml" in err and str(two_files) in err


def test_test_without_a_config_points_at_the_config_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TATTLETAIL_CONFIG", raising=False)
    for command in ("test", "validate"):
        assert main([command]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "no config: tattletail.toml does not exist" in err
        assert f"'tattletail {command} --config PATH'" in err and "TATTLETAIL_CONFIG" in err
