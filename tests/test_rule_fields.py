"""Rule fields beyond the original: severity, enabled, tags, runbook, title and suppress.

Config checks go through config.parse; behaviour through the engine (RuleSet, as the workers
run it) and through `tattletail scan --dry-run`, whose alerts show what destinations receive.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from tattletail import config
from tattletail.cli import main
from tattletail.config import ConfigError
from tattletail.pipeline import rule_sources
from tattletail.rules import RuleSet

pytestmark = pytest.mark.usefixtures("cli_environment")

CREATE_USER: dict[str, Any] = {
    "eventID": "e-1",
    "eventName": "CreateUser",
    "eventSource": "iam.amazonaws.com",
    "userIdentity": {"arn": "arn:aws:iam::111122223333:user/alice", "userName": "alice"},
    "userAgent": "HashiCorp/1.0 Terraform/1.5.7",
    "requestParameters": {"userName": "mallory"},
}
FROM_CONSOLE = {**CREATE_USER, "eventID": "e-2", "userAgent": "console.amazonaws.com"}

RULE = """
[[rule]]
name = "Create User"
jq_match = 'select(.eventName == "CreateUser") | .requestParameters.userName'
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config.parse(text, source="test.toml")
    return caught.value.problems


def evaluate(text: str, *records: dict[str, Any], now: datetime | None = None) -> Any:
    loaded = config.parse(text)
    sources = rule_sources(loaded)
    rule_set = RuleSet(sources) if now is None else RuleSet(sources, now=lambda: now)
    return rule_set.evaluate(list(records))


def scan_alerts(
    tmp_path: Path, text: str, records: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> tuple[list[dict[str, Any]], str]:
    """The alerts `scan --dry-run` prints for these records, and its stderr."""
    config_file = tmp_path / "tattletail.toml"
    config_file.write_text(text)
    log = tmp_path / "log.json"
    log.write_bytes(orjson.dumps({"Records": records}))
    code = main(["scan", "--dry-run", "--config", str(config_file), str(log)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return [orjson.loads(line) for line in captured.out.splitlines()], captured.err


# -- the fields, in the config ------------------------------------------------------------------


def test_rule_without_new_fields_gets_the_defaults() -> None:
    [rule] = config.parse(RULE).rules
    assert (rule.severity, rule.enabled, rule.tags, rule.runbook, rule.title) == (
        "medium",
        True,
        (),
        None,
        None,
    )
    assert rule.suppressions == () and rule.tests == ()


def test_every_new_field_is_read_into_the_rule() -> None:
    [rule] = config.parse(
        RULE
        + """severity = "critical"
enabled = false
tags = ["T1136.003", "stratus:aws.persistence.iam-create-admin-user"]
runbook = "Delete the user."
title = '"User \\(.requestParameters.userName) created"'
suppress = { match = '.userAgent | test("Terraform")', expires = 2027-01-31, reason = "IaC" }
"""
    ).rules
    assert rule.severity == "critical"
    assert rule.enabled is False
    assert rule.tags == ("T1136.003", "stratus:aws.persistence.iam-create-admin-user")
    assert rule.runbook == "Delete the user."
    assert rule.title == '"User \\(.requestParameters.userName) created"'
    [suppression] = rule.suppressions
    assert suppression.match == '.userAgent | test("Terraform")'
    assert suppression.expires == date(2027, 1, 31)
    assert suppression.reason == "IaC"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('severity = "urgent"', "'severity' must be one of info, low, medium, high, critical"),
        ('enabled = "no"', "'enabled' must be true or false"),
        ('tags = "T1078"', "'tags' must be a list of strings"),
        ("runbook = 3", "'runbook' must be a string"),
        ("title = '\"unterminated'", "title does not compile"),
        ("suppress = '.userAgent |'", "suppress does not compile"),
        ("suppress = { expires = 2027-01-31 }", "suppress: 'match' must be a jq expression"),
        ("suppress = { match = '.a', until = 2027-01-31 }", "suppress: unknown key 'until'"),
        ("suppress = { match = '.a', expires = 2027-01-31T10:00:00 }", "'expires' must be a date"),
        ("suppress = ['.a', '.b |']", "suppress #1 does not compile"),
        ("suppress = 3", "suppress: must be a jq expression or a"),
        ('severty = "high"', "unknown key 'severty'"),
    ],
)
def test_bad_field_is_a_config_error_naming_the_rule_and_the_field(
    line: str, expected: str
) -> None:
    problems = problems_of(RULE + line + "\n")
    assert len(problems) == 1, problems
    assert problems[0].startswith("rule #0 'Create User': ")
    assert expected in problems[0]


def test_every_broken_program_of_a_rule_is_reported_at_once() -> None:
    problems = problems_of(
        """
[[rule]]
name = "All broken"
jq_match = 'select(.eventName =='
title = '"\\(.a'
suppress = '.b |'
"""
    )
    assert [p.split(": ", 1)[1].split(" does not")[0] for p in problems] == [
        "jq_match",
        "title",
        "suppress",
    ]


def test_suppress_forms_string_table_and_list_all_load() -> None:
    loaded = config.parse(
        RULE
        + """suppress = [
  '.userAgent == "a"',
  { match = '.userAgent == "b"', expires = 2030-06-01T12:00:00+02:00, reason = "migration" },
]
"""
    )
    first, second = loaded.rules[0].suppressions
    assert (first.match, first.expires) == ('.userAgent == "a"', None)
    assert second.expires == datetime(2030, 6, 1, 10, 0, tzinfo=UTC)
    assert second.reason == "migration"


# -- suppress, in the engine ---------------------------------------------------------------------

SUPPRESSED = RULE + """suppress = '.userAgent | test("HashiCorp/[0-9.]+ Terraform/")'\n"""


def test_suppress_holds_back_the_matches_it_is_truthy_for_and_counts_them() -> None:
    evaluation = evaluate(SUPPRESSED, CREATE_USER, FROM_CONSOLE)

    assert [m.record["eventID"] for m in evaluation.matches] == ["e-2"]
    assert evaluation.suppressed_counts == {0: 1}


@pytest.mark.parametrize("output", ["null", "false", "empty", 'error("boom")'])
def test_suppress_that_gives_no_truthy_output_lets_the_alert_through(output: str) -> None:
    evaluation = evaluate(RULE + f"suppress = '{output}'\n", CREATE_USER)

    assert len(evaluation.matches) == 1
    assert evaluation.suppressed_counts == {}


def test_suppress_that_raises_alerts_and_reports_the_error_as_a_rule_error() -> None:
    evaluation = evaluate(RULE + "suppress = '.userAgent | test(1)'\n", CREATE_USER)

    assert len(evaluation.matches) == 1
    assert evaluation.error_counts == {0: 1}
    assert evaluation.error_samples[0].message.startswith("suppress: ")


def test_suppression_before_its_expiry_date_holds_the_alert_back() -> None:
    text = SUPPRESSED.replace("suppress = '", "suppress = { expires = 2999-12-31, match = '")
    text = text.rstrip() + " }\n"
    evaluation = evaluate(text, CREATE_USER)
    assert evaluation.matches == [] and evaluation.suppressed_counts == {0: 1}


def test_expired_suppression_no_longer_applies_so_the_alert_fires_again() -> None:
    text = SUPPRESSED.replace("suppress = '", "suppress = { expires = 2020-01-31, match = '")
    text = text.rstrip() + " }\n"
    evaluation = evaluate(text, CREATE_USER)
    assert [m.record["eventID"] for m in evaluation.matches] == ["e-1"]
    assert evaluation.suppressed_counts == {}


@pytest.mark.parametrize(
    ("now", "suppressed"),
    [
        (datetime(2027, 1, 31, 23, 59, tzinfo=UTC), True),
        (datetime(2027, 2, 1, 0, 0, tzinfo=UTC), False),
    ],
    ids=["last-day", "day-after"],
)
def test_a_date_expiry_applies_through_that_day_utc(now: datetime, suppressed: bool) -> None:
    text = RULE + "suppress = { match = 'true', expires = 2027-01-31 }\n"
    evaluation = evaluate(text, CREATE_USER, now=now)
    assert (evaluation.suppressed_counts == {0: 1}) is suppressed


def test_validate_warns_about_an_expired_suppression_and_still_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        RULE + 'destinations = []\nsuppress = { match = "true", expires = 2020-01-31 }\n'
    )
    code = main(["validate", "--config", str(path)])
    err = capsys.readouterr().err

    assert code == 0
    assert f"{path}: rule #0 'Create User': suppression 'true' expired on 2020-01-31" in err


# -- title ----------------------------------------------------------------------------------


def test_title_is_the_first_string_output_of_its_expression_on_the_record() -> None:
    text = (
        RULE
        + """title = '"\\(.userIdentity.userName) created \\(.requestParameters.userName)"'\n"""
    )
    [match] = evaluate(text, CREATE_USER).matches
    assert match.title == "alice created mallory"
    assert match.annotation == "mallory"


@pytest.mark.parametrize("title", [".requestParameters", "empty", "null", "1"])
def test_title_output_that_is_not_a_string_gives_no_title_and_no_error(title: str) -> None:
    evaluation = evaluate(RULE + f"title = '{title}'\n", CREATE_USER)
    assert [m.title for m in evaluation.matches] == [None]
    assert evaluation.error_counts == {}


def test_title_that_raises_still_alerts_without_a_title_and_counts_a_rule_error() -> None:
    evaluation = evaluate(RULE + "title = '.userAgent | test(1)'\n", CREATE_USER)
    assert [m.title for m in evaluation.matches] == [None]
    assert evaluation.error_counts == {0: 1}
    assert evaluation.error_samples[0].message.startswith("title: ")


# -- enabled -------------------------------------------------------------------------------


def test_disabled_rule_is_not_evaluated_and_the_others_keep_their_index() -> None:
    text = (
        RULE
        + "enabled = false\n"
        + RULE.replace("Create User", "Second").replace(".requestParameters.userName", '"2nd"')
    )
    evaluation = evaluate(text, CREATE_USER)
    assert [(m.rule_index, m.annotation) for m in evaluation.matches] == [(1, "2nd")]


# -- through the pipeline: alerts and the run summary ------------------------------------------


def test_alerts_carry_severity_title_tags_and_runbook_and_suppressed_are_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        SUPPRESSED
        + """severity = "high"
tags = ["T1136.003"]
runbook = "Ask alice."
title = '"IAM user \\(.requestParameters.userName) created"'
destinations = []
"""
    )
    alerts, err = scan_alerts(tmp_path, text, [CREATE_USER, FROM_CONSOLE], capsys)

    [alert] = alerts
    assert alert["record"]["eventID"] == "e-2"
    assert alert["severity"] == "high"
    assert alert["title"] == "IAM user mallory created"
    assert alert["tags"] == ["T1136.003"]
    assert alert["runbook"] == "Ask alice."
    assert "1 match, 1 suppressed" in err.splitlines()[-1]


def test_disabled_rule_never_alerts_in_a_scan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alerts, _ = scan_alerts(tmp_path, RULE + "enabled = false\n", [CREATE_USER], capsys)
    assert alerts == []
