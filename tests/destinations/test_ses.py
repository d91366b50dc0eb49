"""`ses`: the email's rendering, and real SendEmail calls to the moto server (which records
every message it accepted)."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest
from botocore.exceptions import ClientError

from tattletail.destinations import DestinationConfigError
from tattletail.destinations.ses import BODY_LIMIT, SUBJECT_LIMIT, SesDestination, render
from tests.destinations.destination_support import (
    CREATE_USER,
    assert_is_marker,
    largest_real_records,
    make_alert,
    synthetic_record,
)
from tests.destinations.destination_support import delivery as delivery_to
from tests.support import Moto

FROM_EMAIL = "cloudtrail_tattletail@example.com"
TO_EMAILS = ("foo@example.com", "bar@example.com")


def test_subject_names_the_rule() -> None:
    assert render(make_alert())["subject"] == "Tattletail alert: Create User"


def test_subject_is_one_line_whatever_the_rule_name() -> None:
    subject = render(make_alert(name="Create\nUser\r\nnow"))["subject"]

    assert subject == "Tattletail alert: Create User now"


def test_body_has_name_description_annotation_event_and_source() -> None:
    body = render(make_alert())["body"]

    assert body.startswith("Alert: Create User\n\nA new IAM user has been created\n")
    assert 'match:\n"username: user1"\n' in body
    assert "event:\n" + orjson.dumps(CREATE_USER, option=orjson.OPT_INDENT_2).decode() in body
    assert "source: s3://trail-bucket/AWSLogs/1.json.gz" in body


def test_body_of_a_plain_select_rule_has_no_match_section() -> None:
    body = render(make_alert(match=None))["body"]

    assert "match:" not in body
    assert CREATE_USER["eventID"] in body


def test_structured_annotation_is_pretty_printed() -> None:
    body = render(make_alert(match={"user": "user1", "by": "admin"}))["body"]

    assert 'match:\n{\n  "user": "user1",\n  "by": "admin"\n}\n' in body


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"from_email": FROM_EMAIL}, "destination.to_emails must be set to a list"),
        ({"from_email": FROM_EMAIL, "to_emails": "foo@example.com"}, "to_emails must be set"),
        ({"from_email": FROM_EMAIL, "to_emails": []}, "to_emails must be set"),
        ({"to_emails": list(TO_EMAILS)}, "destination.from_email must be set"),
        ({"to_emails": list(TO_EMAILS), "from_email": "nobody"}, "must be an email address"),
    ],
)
def test_config_with_bad_addresses_is_rejected(settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(DestinationConfigError) as raised:
        SesDestination.from_config("Email", settings)

    assert problem in str(raised.value)


async def test_send_emails_every_recipient_from_the_verified_sender(moto: Moto) -> None:
    moto.client("ses").verify_email_identity(EmailAddress=FROM_EMAIL)
    alert = make_alert()
    destination = SesDestination(id="Email", to_emails=TO_EMAILS, from_email=FROM_EMAIL)

    async with delivery_to(moto.endpoint) as delivery:
        await destination.send(alert, delivery)

    [email] = moto.sent_emails()
    assert email.source == FROM_EMAIL
    assert email.destinations["ToAddresses"] == list(TO_EMAILS)
    assert email.subject == render(alert)["subject"]
    assert email.body == render(alert)["body"]


async def test_send_from_an_unverified_sender_raises_the_aws_error(moto: Moto) -> None:
    destination = SesDestination(id="Email", to_emails=TO_EMAILS, from_email=FROM_EMAIL)

    async with delivery_to(moto.endpoint) as delivery:
        with pytest.raises(ClientError) as raised:
            await destination.send(make_alert(), delivery)

    assert raised.value.response["Error"]["Code"] == "MessageRejected"
    assert moto.sent_emails() == []


def test_title_severity_tags_and_runbook_are_in_the_body_and_the_title_is_the_subject() -> None:
    alert = dataclasses.replace(
        make_alert(),
        title="user1 created\nby admin",
        severity="high",
        tags=("iam", "T1136"),
        runbook="https://wiki.example.com/create-user",
    )

    email = render(alert)

    assert email["subject"] == "Tattletail alert: user1 created by admin"
    assert "Title: user1 created\nby admin\n" in email["body"]
    assert email["body"].endswith(
        "severity: high\ntags: iam, T1136\nrunbook: https://wiki.example.com/create-user\n"
    )


def test_subject_is_one_line_within_its_limit() -> None:
    subject = render(make_alert(name="x\r\n" * 500))["subject"]

    assert len(subject) <= SUBJECT_LIMIT < 998
    assert "\n" not in subject and "\r" not in subject
    assert subject.endswith("… (truncated)")


@pytest.mark.parametrize("record", largest_real_records(), ids=lambda r: r["eventName"])
def test_largest_real_records_are_in_the_body_whole(record: dict[str, Any]) -> None:
    body = render(dataclasses.replace(make_alert(), record=record))["body"]

    assert "event:\n" + orjson.dumps(record, option=orjson.OPT_INDENT_2).decode() in body


def test_an_event_over_the_body_budget_is_replaced_by_its_marker() -> None:
    record = synthetic_record(6 * 1024 * 1024)

    body = render(dataclasses.replace(make_alert(), record=record))["body"]

    assert len(body.encode()) <= BODY_LIMIT
    label = f"event (truncated: {len(orjson.dumps(record)):,} bytes, too large for an email):\n"
    assert label in body
    marker = body.split(label, 1)[1].split("\n}\n", 1)[0] + "\n}"
    assert_is_marker(orjson.loads(marker), record)
    assert 'match:\n"username: user1"\n' in body


def test_default_rate_is_the_sandboxs_one_email_a_second_shared_by_the_recipients() -> None:
    two = SesDestination.build("Email", {"to_emails": list(TO_EMAILS), "from_email": FROM_EMAIL})
    one = SesDestination.build("Email", {"to_emails": [TO_EMAILS[0]], "from_email": FROM_EMAIL})
    raised = SesDestination.build(
        "Email", {"to_emails": list(TO_EMAILS), "from_email": FROM_EMAIL, "rate_limit": 14}
    )

    assert two.rate() == (0.5, 1)
    assert one.rate() == (1.0, 1)
    assert raised.rate() == (14.0, 1)
