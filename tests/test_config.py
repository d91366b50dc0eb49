"""Config: the original's format loads unchanged; every problem of a file is reported at once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tattletail import config
from tattletail.config import ConfigError
from tests.support import REPO

SEED_README = REPO.parent / "shared" / "seed" / "cloudtrail-tattletail-README.txt"
EXAMPLE_CONFIG = REPO / "config" / "tattletail.toml"
WEBHOOK = "https://hooks.slack.com/services/T0SECRET/B0SECRET/s3cr3tw3bh00kt0k3n"

VALID = f"""
[[rule]]
name = "Create User"
jq_match = 'select(.eventName == "CreateUser")'
description = "A new IAM user has been created"
destinations = ["Default SNS", "Slack", "Email"]

[[destination]]
id = "Default SNS"
type = "sns"
sns_arn = "arn:aws:sns:us-east-1:1234567890:cloudtail_alert"

[[destination]]
id = "Slack"
type = "slack_webhook"
webhook_url = "{WEBHOOK}"

[[destination]]
id = "Email"
type = "ses"
to_emails = ["security@example.com"]
from_email = "tattletail@example.com"
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config.parse(text, source="test.toml")
    return caught.value.problems


def readme_example() -> str:
    """The original README's example config, exactly as published (its addresses were
    scrambled by the page's e-mail obfuscation, so real ones are put back)."""
    text = SEED_README.read_text(encoding="utf-8")
    example = text.split("Configuration example", 1)[1].split("The configuration file can", 1)[0]
    addresses = iter(["foo@example.com", "bar@example.com", "tattletail@example.com"])
    return re.sub(r"\[email\xa0?\s*protected\]", lambda _: next(addresses), example)


# -- the original's example ---------------------------------------------------------------------


def test_original_readme_example_config_loads_unchanged() -> None:
    loaded = config.parse(readme_example(), source="README example")

    assert [rule.name for rule in loaded.rules] == [
        "Create User",
        "Create AccessKey",
        "Modifications",
    ]
    assert loaded.rules[2].destinations == ("Slack Warnings",)
    kinds = {dest_id: dest.type_name for dest_id, dest in loaded.destinations.items()}
    assert kinds == {"Default SNS": "sns", "Slack Warnings": "slack_webhook", "Email": "ses"}


def test_example_config_contains_the_original_rules_verbatim_and_loads() -> None:
    readme_rules = readme_example().split("[[destination]]", 1)[0].strip()
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    assert readme_rules in text

    loaded = config.load_file(EXAMPLE_CONFIG)

    assert len(loaded.rules) == 4
    assert [rule.name for rule in loaded.rules[:3]] == [
        "Create User",
        "Create AccessKey",
        "Modifications",
    ]
    assert loaded.rules[0].description == "A new IAM user has been created"
    assert loaded.rules[0].destinations == ("Default SNS", "Slack Warnings", "Email")
    assert sorted(dest.type_name for dest in loaded.destinations.values()) == [
        "ses",
        "slack_webhook",
        "sns",
    ]
    assert [rule.index for rule in loaded.rules] == [0, 1, 2, 3]


def test_multi_line_jq_match_of_the_original_test_loads() -> None:
    text = VALID.replace(
        "jq_match = 'select(.eventName == \"CreateUser\")'",
        "jq_match = '''\nselect(.eventName == \"CreateUser\") |\n"
        "\"username: \\(.responseElements.user.userName)\"\n'''",
    )
    loaded = config.parse(text)
    assert "\n" in loaded.rules[0].jq_match


def test_description_and_destinations_are_optional() -> None:
    loaded = config.parse("[[rule]]\nname = 'n'\njq_match = '.'\n")
    assert loaded.rules[0].description == ""
    assert loaded.rules[0].destinations == ()
    assert dict(loaded.destinations) == {}


def test_a_destination_named_twice_in_a_rule_is_kept_once() -> None:
    loaded = config.parse(VALID.replace('"Slack", "Email"]', '"Slack", "Email", "Slack"]'))
    assert loaded.rules[0].destinations == ("Default SNS", "Slack", "Email")


def test_loaded_config_cannot_be_modified() -> None:
    loaded = config.parse(VALID)
    with pytest.raises(TypeError):
        loaded.destinations["new"] = loaded.destinations["Slack"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        loaded.rules[0].jq_match = "."  # type: ignore[misc]


# -- each check the original makes, with its message --------------------------------------------

RULE_CHECKS = [
    pytest.param(
        ("jq_match = 'select(.eventName == \"CreateUser\")'", "jq_match = ''"),
        "jq_match not defined",
        id="empty-jq_match",
    ),
    pytest.param(
        ("jq_match = 'select(.eventName == \"CreateUser\")'\n", ""),
        "jq_match not defined",
        id="missing-jq_match",
    ),
    pytest.param(
        ("jq_match = 'select(.eventName == \"CreateUser\")'", "jq_match = 'select(.eventName =='"),
        "jq_match does not compile",
        id="jq-syntax-error",
    ),
    pytest.param(
        ('"Slack", "Email"]', '"Slack", "Pager"]'),
        "unknown destination 'Pager'",
        id="rule-names-missing-destination",
    ),
]


@pytest.mark.parametrize(("edit", "message"), RULE_CHECKS)
def test_rule_check_reports_its_message_with_rule_name_and_index(
    edit: tuple[str, str], message: str
) -> None:
    old, new = edit
    assert old in VALID
    problems = problems_of(VALID.replace(old, new, 1))

    assert len(problems) == 1
    assert message in problems[0]
    assert "rule #0 'Create User'" in problems[0]


def test_jq_syntax_error_carries_libjq_message_on_one_line() -> None:
    problems = problems_of(VALID.replace('select(.eventName == "CreateUser")', "select(", 1))
    assert "syntax error" in problems[0]
    assert "\n" not in problems[0]


DESTINATION_CHECKS = [
    pytest.param(
        ('type = "sns"', 'type = "carrier_pigeon"'),
        "invalid destination type 'carrier_pigeon'",
        id="unknown-type",
    ),
    pytest.param(
        ('sns_arn = "arn:aws:sns:us-east-1:1234567890:cloudtail_alert"\n', ""),
        "sns_arn must be set",
        id="missing-sns_arn",
    ),
    pytest.param(
        ('sns_arn = "arn:', 'sns_arn = "aws:'),
        "sns_arn must be a full ARN beginning with `arn:`",
        id="sns_arn-without-arn-prefix",
    ),
    pytest.param(
        (f'webhook_url = "{WEBHOOK}"\n', ""),
        "webhook_url must be set",
        id="missing-webhook_url",
    ),
    pytest.param(
        ('to_emails = ["security@example.com"]\n', ""),
        "to_emails must be set",
        id="missing-to_emails",
    ),
    pytest.param(
        ('from_email = "tattletail@example.com"\n', ""),
        "from_email must be set",
        id="missing-from_email",
    ),
    pytest.param(
        ('id = "Default SNS"\n', ""),
        "'id' must be set",
        id="missing-id",
    ),
    pytest.param(
        ('id = "Email"', 'id = "Slack"'),
        "duplicate destinations with same id 'Slack'",
        id="duplicate-id",
    ),
]


@pytest.mark.parametrize(("edit", "message"), DESTINATION_CHECKS)
def test_destination_check_reports_its_message(edit: tuple[str, str], message: str) -> None:
    old, new = edit
    assert old in VALID
    problems = problems_of(VALID.replace(old, new, 1))

    assert any(message in problem for problem in problems), problems


def test_invalid_destination_problem_names_its_index_and_id() -> None:
    problems = problems_of(VALID.replace('sns_arn = "arn:', 'sns_arn = "aws:'))
    assert problems[0].startswith("destination #0 'Default SNS':")


def test_a_rule_naming_an_invalid_destination_is_reported_at_the_destination_only() -> None:
    problems = problems_of(VALID.replace('sns_arn = "arn:', 'sns_arn = "aws:'))
    assert len(problems) == 1
    assert "unknown destination" not in problems[0]


def test_duplicate_id_is_reported_even_when_the_first_of_the_two_is_invalid() -> None:
    text = (
        VALID + '\n[[destination]]\nid = "Default SNS"\ntype = "sns"\nsns_arn = "arn:aws:sns:x"\n'
    )
    text = text.replace('sns_arn = "arn:aws:sns:us-east-1', 'sns_arn = "aws:sns:us-east-1')
    problems = problems_of(text)

    assert any("beginning with `arn:`" in p and p.startswith("destination #0") for p in problems)
    assert any("duplicate destinations with same id 'Default SNS'" in p for p in problems)
    assert any(p.startswith("destination #3") and "duplicate" in p for p in problems)


# -- unknown keys ----------------------------------------------------------------------------


def test_unknown_rule_key_is_an_error_naming_key_and_table() -> None:
    # The classic typo: `destination` for `destinations` would silently send no alert.
    problems = problems_of(VALID.replace("destinations = [", "destination = [", 1))

    assert len(problems) == 1
    assert "unknown key 'destination'" in problems[0]
    assert problems[0].startswith("rule #0 'Create User':")


def test_unknown_destination_key_is_an_error_naming_key_and_table() -> None:
    problems = problems_of(VALID.replace("sns_arn = ", "sns_topic = ", 1))

    assert any(
        "unknown key 'sns_topic'" in p and p.startswith("destination #0 'Default SNS':")
        for p in problems
    ), problems


def test_unknown_key_does_not_hide_the_destinations_other_problems() -> None:
    text = VALID.replace('type = "sns"', 'type = "sns"\nregion = "us-east-1"').replace(
        'sns_arn = "arn:', 'sns_arn = "aws:'
    )
    problems = problems_of(text)

    assert any("unknown key 'region'" in p for p in problems)
    assert any("beginning with `arn:`" in p for p in problems)


def test_unknown_top_level_table_is_an_error_naming_it() -> None:
    problems = problems_of(VALID.replace("[[rule]]", "[[rules]]"))
    assert any("unknown top-level key 'rules'" in p for p in problems)


def test_rule_written_as_a_single_table_is_an_error() -> None:
    problems = problems_of("[rule]\nname = 'x'\njq_match = '.'\n")
    assert any("[[rule]]" in p for p in problems)


# -- every problem at once -------------------------------------------------------------------

BROKEN = """
[[rule]]
name = "Empty"
jq_match = ""
destinations = ["SNS"]

[[rule]]
name = "Typo"
jq_match = 'select(.eventName == "CreateUser")'
destination = ["SNS"]

[[rule]]
name = "Does not compile"
jq_match = 'select(.eventName == '
destinations = ["Nowhere"]

[[rule]]
jq_match = '.'

[[destination]]
id = "SNS"
type = "sns"
sns_arn = "topic"

[[destination]]
id = "SNS"
type = "sns"
sns_arn = "arn:aws:sns:us-east-1:1:t"

[[destination]]
id = "Pager"
type = "carrier_pigeon"

[[destination]]
id = "Mail"
type = "ses"
sns_topic = "x"
"""

BROKEN_EXPECTED = [
    ("rule #0 'Empty'", "jq_match not defined"),
    ("rule #1 'Typo'", "unknown key 'destination'"),
    ("rule #2 'Does not compile'", "does not compile"),
    ("rule #2 'Does not compile'", "unknown destination 'Nowhere'"),
    ("rule #3", "'name' must be set"),
    ("destination #0 'SNS'", "beginning with `arn:`"),
    ("destination #1 'SNS'", "duplicate destinations with same id 'SNS'"),
    ("destination #2 'Pager'", "invalid destination type 'carrier_pigeon'"),
    ("destination #3 'Mail'", "unknown key 'sns_topic'"),
    ("destination #3 'Mail'", "to_emails must be set"),
    ("destination #3 'Mail'", "from_email must be set"),
]


def test_every_problem_of_a_file_is_reported_at_once_naming_its_table() -> None:
    with pytest.raises(ConfigError) as caught:
        config.parse(BROKEN, source="broken.toml")
    problems = caught.value.problems

    for where, what in BROKEN_EXPECTED:
        assert any(p.startswith(where + ":") and what in p for p in problems), (where, what)
    assert len(problems) == len(BROKEN_EXPECTED), problems
    message = str(caught.value)
    assert message.startswith("broken.toml:")
    assert all(problem in message for problem in problems)


# -- invalid TOML and files ------------------------------------------------------------------


def test_invalid_toml_is_one_clear_problem_with_its_position() -> None:
    problems = problems_of("[[rule]]\nname = 'x'\njq_match =\ndescription = ''\n")
    assert len(problems) == 1
    assert problems[0].startswith("invalid TOML")
    assert "line 3" in problems[0]


def test_missing_config_file_is_a_config_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as caught:
        config.load_file(missing)
    assert str(missing) in str(caught.value)
    assert "not found" in str(caught.value)


def test_non_utf8_config_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes("[[rule]]\nname = 'caf\xe9'\n".encode("latin-1"))
    with pytest.raises(ConfigError):
        config.load_file(path)


# -- the Slack webhook URL is a secret -------------------------------------------------------


def test_webhook_url_is_not_in_repr_or_str_of_config_or_destination() -> None:
    loaded = config.parse(VALID)
    destination = loaded.destinations["Slack"]

    for text in (repr(loaded), str(loaded), repr(destination), str(destination)):
        assert WEBHOOK not in text
        assert "s3cr3t" not in text
    assert destination.webhook_url.reveal() == WEBHOOK  # type: ignore[attr-defined]


SECRET_LEAKS = [
    pytest.param(('type = "slack_webhook"', 'type = "slack"'), id="wrong-type"),
    pytest.param(('type = "slack_webhook"', 'type = "slack_webhook"\nchannel = "#x"'), id="extra"),
    pytest.param((f'"{WEBHOOK}"', f'"ftp{WEBHOOK[5:]}"'), id="not-http"),
    pytest.param((f'"{WEBHOOK}"', f'["{WEBHOOK}"]'), id="not-a-string"),
    pytest.param(('id = "Email"', 'id = "Slack"'), id="duplicate"),
    pytest.param((f'"{WEBHOOK}"', f'"{WEBHOOK}'), id="unterminated-toml-string"),
    pytest.param(("[[rule]]", f'webhook = "{WEBHOOK}"\n[[rule]]'), id="top-level-key"),
]


@pytest.mark.parametrize("edit", SECRET_LEAKS)
def test_webhook_url_never_appears_in_a_config_error(edit: tuple[str, str]) -> None:
    old, new = edit
    assert old in VALID
    with pytest.raises(ConfigError) as caught:
        config.parse(VALID.replace(old, new, 1))

    assert "s3cr3t" not in str(caught.value)
    assert all("s3cr3t" not in problem for problem in caught.value.problems)


def test_typos_get_a_did_you_mean_and_strangers_the_list_of_what_is_allowed() -> None:
    problems = problems_of(
        """
dead_leter = "Queue"
default_destinations = ["Slak"]

[[rule]]
name = "Typos"
jq_match = 'select(.eventName == "CreateUser")'
destination = ["Slack"]
severty = "high"
frobnicate = 1
destinations = ["slack", "Pager"]
suppress = { match = '.x', expire = 2027-01-01 }

[[rule.test]]
name = "t"
event = { eventName = "CreateUser" }
expects = true

[[destination]]
id = "Slack"
type = "slack_webhok"

[[destination]]
id = "Queue"
type = "sqs"
queue_url = "https://sqs.us-east-1.amazonaws.com/123456789012/q"
queu_url = "x"
"""
    )
    expected = [
        "unknown top-level key 'dead_leter' (did you mean 'dead_letter'?)",
        "default_destinations: unknown destination 'Slak' (did you mean 'Slack'?)",
        "rule #0 'Typos': unknown key 'destination' (did you mean 'destinations'?)",
        "rule #0 'Typos': unknown key 'severty' (did you mean 'severity'?)",
        "rule #0 'Typos': unknown key 'frobnicate' (allowed: name, jq_match,",
        "rule #0 'Typos': unknown destination 'slack' (did you mean 'Slack'?)",
        "rule #0 'Typos': unknown destination 'Pager'",
        "rule #0 'Typos': suppress: unknown key 'expire' (did you mean 'expires'?)",
        "test #0 't': unknown key 'expects' (did you mean 'expect'?)",
        "destination #0 'Slack': invalid destination type 'slack_webhok' "
        "(did you mean 'slack_webhook'?)",
        "destination #1 'Queue': unknown key 'queu_url' for type 'sqs' (did you mean 'queue_url'?)",
    ]
    for message in expected:
        assert any(message in p for p in problems), (message, problems)
    pager = next(p for p in problems if "'Pager'" in p)
    assert pager.endswith("unknown destination 'Pager'")
