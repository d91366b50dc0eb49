"""`eventbridge`: PutEvents to real (moto) event buses, read back through a rule that targets an
SQS queue; the 256 KB entry budget; FailedEntryCount checked (moto never refuses an entry, so
those answers come from a stub client)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tattletail.destinations import DeliveryContext, DeliveryError, DestinationConfigError
from tattletail.destinations.eventbridge import (
    DETAIL_TYPE,
    ENTRY_LIMIT,
    SOURCE,
    EventBridgeDestination,
    render,
)
from tests.destinations.destination_support import (
    assert_is_marker,
    delivery,
    largest_real_records,
    make_alert,
    synthetic_record,
)
from tests.support import Moto


def bus_to_queue(moto: Moto, bus: str = "default") -> str:
    """A rule on `bus` matching Tattletail's events, targeting a new queue; its URL."""
    sqs, events = moto.client("sqs"), moto.client("events")
    queue_url = sqs.create_queue(QueueName=f"from-{bus}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    if bus != "default":
        events.create_event_bus(Name=bus)
    events.put_rule(
        Name=f"tattletail-{bus}",
        EventBusName=bus,
        EventPattern=json.dumps({"source": [SOURCE], "detail-type": [DETAIL_TYPE]}),
    )
    events.put_targets(
        Rule=f"tattletail-{bus}", EventBusName=bus, Targets=[{"Id": "q", "Arn": queue_arn}]
    )
    return queue_url


def received_events(moto: Moto, queue_url: str) -> list[dict[str, Any]]:
    messages = moto.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
    return [json.loads(message["Body"]) for message in messages.get("Messages", [])]


async def test_alert_is_put_on_the_default_bus(moto: Moto) -> None:
    queue_url = bus_to_queue(moto)
    alert = make_alert()

    async with delivery(moto.endpoint) as context:
        await EventBridgeDestination.build("Bus", {}).send(alert, context)

    [event] = received_events(moto, queue_url)
    assert event["source"] == "tattletail"
    assert event["detail-type"] == "Tattletail Alert"
    assert event["detail"] == {
        **alert.message(),
        "alert_id": alert.alert_id("Bus"),
        "source": alert.source,
    }


@pytest.mark.parametrize("by", ["name", "arn"])
async def test_alert_is_put_on_a_named_bus_by_name_or_arn(moto: Moto, by: str) -> None:
    queue_url = bus_to_queue(moto, "security")
    bus = "security" if by == "name" else "arn:aws:events:us-east-1:123456789012:event-bus/security"

    async with delivery(moto.endpoint) as context:
        await EventBridgeDestination.build("Bus", {"event_bus": bus}).send(make_alert(), context)

    [event] = received_events(moto, queue_url)
    assert event["detail"]["name"] == "Create User"


@pytest.mark.parametrize("record", largest_real_records(), ids=lambda r: r["eventName"])
def test_largest_real_records_are_sent_whole(record: dict[str, Any]) -> None:
    entry = render(make_alert(record=record), "Bus", "default")

    assert json.loads(entry["Detail"])["record"] == record


def test_a_1_mb_record_is_cut_to_the_entry_limit() -> None:
    record = synthetic_record()

    entry = render(make_alert(record=record), "Bus", "default")

    # EventBridge's entry size: source, detail-type and detail in UTF-8.
    size = sum(len(entry[key].encode()) for key in ("Source", "DetailType", "Detail"))
    assert size < ENTRY_LIMIT
    assert_is_marker(json.loads(entry["Detail"])["record"], record)


class StubEvents:
    """An events client whose PutEvents refuses the entry as EventBridge does: HTTP 200 with
    FailedEntryCount and the entry's ErrorCode."""

    def __init__(self, code: str) -> None:
        self.code = code

    async def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        return {
            "FailedEntryCount": 1,
            "Entries": [{"ErrorCode": self.code, "ErrorMessage": f"{self.code} happened"}],
        }


class StubAws:
    def __init__(self, code: str) -> None:
        self.events = StubEvents(code)

    async def client(self, service: str) -> Any:
        assert service == "events"
        return self.events


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        ("ThrottlingException", True),
        ("InternalFailure", True),
        ("MalformedDetail", False),
        ("NotAuthorizedForSourceException", False),
    ],
)
async def test_refused_entry_is_an_error_retried_only_when_throttled(
    code: str, retryable: bool
) -> None:
    context = DeliveryContext(StubAws(code), 5.0)  # type: ignore[arg-type]

    with pytest.raises(DeliveryError) as raised:
        await EventBridgeDestination.build("Bus", {}).send(make_alert(), context)

    assert str(raised.value) == f"eventbridge refused the event: {code}: {code} happened"
    assert raised.value.retryable is retryable


def test_default_bus_and_rate() -> None:
    bus = EventBridgeDestination.build("Bus", {})

    assert bus.event_bus == "default"
    assert bus.rate() == (100.0, 100)


@pytest.mark.parametrize("value", ["", "my bus", 7, "x" * 1601])
def test_bad_event_bus_is_rejected(value: Any) -> None:
    with pytest.raises(DestinationConfigError, match="destination.event_bus must be"):
        EventBridgeDestination.from_config("Bus", {"event_bus": value})
