"""`stdout`: one JSON line per alert, the SNS message's keys plus `source`."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace

import pytest

from tattletail.aws import AwsClients
from tattletail.destinations import DeliveryContext
from tattletail.destinations.stdout import StdoutDestination, render
from tattletail.records import RecordJSON
from tattletail.rules import RuleSet, RuleSource
from tests.destinations.destination_support import CREATE_USER, make_alert


def test_line_has_the_sns_keys_plus_source() -> None:
    line = render(make_alert(match="username: user1"))

    assert line.endswith(b"\n") and line.count(b"\n") == 1
    printed = json.loads(line)
    assert {key: printed[key] for key in ("name", "description", "record", "match", "source")} == {
        "name": "Create User",
        "description": "A new IAM user has been created",
        "record": CREATE_USER,
        "match": "username: user1",
        "source": "s3://trail-bucket/AWSLogs/1.json.gz",
    }
    assert printed == {**make_alert(match="username: user1").message(), "source": printed["source"]}


def test_line_stays_one_line_when_texts_hold_newlines() -> None:
    line = render(make_alert(description="two\nlines", match={"multi": "a\nb"}))

    assert line.count(b"\n") == 1
    assert json.loads(line)["description"] == "two\nlines"


async def test_send_writes_one_line_per_alert_to_standard_output(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    aws = AwsClients("http://127.0.0.1:9")  # never used
    context = DeliveryContext(aws, 5.0)
    destination = StdoutDestination.from_config("Print", {})

    await destination.send(make_alert(match="first"), context)
    await destination.send(make_alert(match=None), context)

    out = capsysbinary.readouterr().out
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["match"] for line in lines] == ["first", None]
    assert all(line["source"] == "s3://trail-bucket/AWSLogs/1.json.gz" for line in lines)
    await aws.close()


def test_a_match_from_a_worker_prints_the_same_line_without_decoding_its_record() -> None:
    rules = RuleSet([RuleSource("Create User", 'select(.eventName == "CreateUser")')])
    match = rules.evaluate([CREATE_USER]).matches[0]
    crossed = pickle.loads(pickle.dumps(match))  # as from a worker, through its pipe
    assert isinstance(crossed.record, RecordJSON)
    alert = replace(make_alert(match=None), record=crossed.record)

    line = render(alert)

    assert line == render(make_alert(match=None))
    assert alert.event_id == CREATE_USER["eventID"]
    assert crossed.record._decoded is None
