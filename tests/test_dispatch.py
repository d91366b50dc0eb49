"""The dispatcher: every alert to each of its destinations concurrently, each destination behind
its own semaphore, every failure contained, logged without secrets and counted.

A pure unit: the destinations are counting fakes whose sends wait on gates the test opens, so
concurrency is observed directly instead of inferred from timing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Self

import orjson
import pytest
from botocore.exceptions import ClientError

from tattletail.alerts import Alert
from tattletail.aws import AwsClients
from tattletail.destinations import DeliveryContext, DeliveryError, Destination
from tattletail.dispatch import DEADLINE_RESERVE, DeliveryIncomplete, DeliveryPolicy, Dispatcher
from tattletail.logs import LOGGER_NAME, JsonFormatter
from tattletail.retry import Backoff
from tattletail.summary import RunSummary

# A bound on how long a test waits for something that must happen: reached only on failure.
SAFETY = 10.0


class Probe:
    """What one fake destination saw: sends in flight now and at most, alerts completed."""

    def __init__(
        self,
        gated: bool = False,
        error: Exception | None = None,
        first_errors: Sequence[Exception] = (),
    ) -> None:
        self.gate = asyncio.Event()
        if not gated:
            self.gate.set()
        # `error` fails every send; `first_errors` fail the first sends, one each, in order.
        self.error = error
        self.first_errors = list(first_errors)
        self.in_flight = 0
        self.max_in_flight = 0
        self.entered = 0
        self.changed = asyncio.Condition()
        self.sent: list[Alert] = []

    async def wait_entered(self, count: int) -> None:
        async def reached() -> None:
            async with self.changed:
                await self.changed.wait_for(lambda: self.entered >= count)

        await asyncio.wait_for(reached(), SAFETY)

    async def send(self, alert: Alert) -> None:
        async with self.changed:
            self.entered += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.changed.notify_all()
        try:
            await self.gate.wait()
            if self.error is not None:
                raise self.error
            if self.first_errors:
                raise self.first_errors.pop(0)
            self.sent.append(alert)
        finally:
            self.in_flight -= 1


@dataclasses.dataclass(frozen=True)
class FakeDestination(Destination):
    type_name: ClassVar[str] = "fake"
    probe: Probe

    @classmethod
    def from_config(cls, dest_id: str, settings: Mapping[str, Any]) -> Self:
        raise NotImplementedError

    async def send(self, alert: Alert, context: DeliveryContext) -> None:
        await self.probe.send(alert)


def make_alert(*destinations: str, number: int = 0) -> Alert:
    return Alert(
        rule_name="Create User",
        description="A new IAM user has been created",
        record={"eventID": f"event-{number}", "eventName": "CreateUser"},
        match=f"username: user{number}",
        source="s3://trail-bucket/AWSLogs/1.json.gz",
        destinations=destinations,
    )


@pytest.fixture
def context() -> DeliveryContext:
    # The fakes never touch it: no HTTP session or AWS client is ever made, so none to close.
    return DeliveryContext(AwsClients("http://127.0.0.1:9"), 5.0)


@pytest.fixture
def logged() -> Iterator[list[dict[str, Any]]]:
    """Tattletail's log lines, as the JSON its handler would write."""
    lines: list[dict[str, Any]] = []
    formatter = JsonFormatter()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(orjson.loads(formatter.format(record)))

    logger = logging.getLogger(LOGGER_NAME)
    handler, level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


def dispatcher(
    probes: Mapping[str, Probe],
    context: DeliveryContext,
    summary: RunSummary,
    concurrency: int = 8,
    send_timeout: float = SAFETY,
    retries: int = 0,
) -> Dispatcher:
    destinations = {name: FakeDestination(id=name, probe=probe) for name, probe in probes.items()}
    policy = DeliveryPolicy(
        concurrency=concurrency,
        send_timeout=send_timeout,
        retries=retries,
        retry_budget=SAFETY * 6,
        # Waits between retries of at most a millisecond: retries, not time, are under test.
        backoff=Backoff(base=0.001, cap=0.001),
        flood_threshold=1000,
    )
    return Dispatcher(destinations, context, summary, policy)


async def settle(*awaitables: Awaitable[Any]) -> None:
    await asyncio.wait_for(asyncio.gather(*awaitables), SAFETY)


async def test_alert_is_sent_to_all_its_destinations_at_once(context: DeliveryContext) -> None:
    probes = {"sns": Probe(gated=True), "slack": Probe(gated=True), "email": Probe(gated=True)}
    summary = RunSummary()
    delivery = asyncio.ensure_future(
        dispatcher(probes, context, summary).deliver(make_alert("sns", "slack", "email"))
    )

    # Every destination's send has started while none has finished.
    for probe in probes.values():
        await probe.wait_entered(1)
    assert [probe.in_flight for probe in probes.values()] == [1, 1, 1]
    for probe in probes.values():
        probe.gate.set()
    await settle(delivery)

    assert [len(probe.sent) for probe in probes.values()] == [1, 1, 1]
    assert (summary.alerts_sent, summary.alerts_failed) == (3, 0)


async def test_alert_goes_only_to_its_rules_destinations(context: DeliveryContext) -> None:
    probes = {"sns": Probe(), "slack": Probe()}
    summary = RunSummary()

    await dispatcher(probes, context, summary).deliver(make_alert("slack"))

    assert (len(probes["sns"].sent), len(probes["slack"].sent)) == (0, 1)
    assert summary.sent_by_destination == {"slack": 1}


@pytest.mark.parametrize("limit", [1, 3])
async def test_semaphore_bounds_sends_in_flight_to_one_destination(
    context: DeliveryContext, limit: int
) -> None:
    probe = Probe(gated=True)
    summary = RunSummary()
    send = dispatcher({"slack": probe}, context, summary, concurrency=limit).deliver
    deliveries = [asyncio.ensure_future(send(make_alert("slack", number=n))) for n in range(10)]

    await probe.wait_entered(limit)
    # Let every other delivery run as far as it can: none gets past the semaphore.
    for _ in range(20):
        await asyncio.sleep(0)
    assert probe.in_flight == limit
    assert probe.entered == limit
    probe.gate.set()
    await settle(*deliveries)

    assert probe.max_in_flight == limit
    assert len(probe.sent) == 10
    assert summary.alerts_sent == 10


async def test_each_destination_has_its_own_bound(context: DeliveryContext) -> None:
    stuck, free = Probe(gated=True), Probe()
    summary = RunSummary()
    send = dispatcher({"stuck": stuck, "free": free}, context, summary, concurrency=2).deliver
    deliveries = [
        asyncio.ensure_future(send(make_alert("stuck", "free", number=n))) for n in range(6)
    ]

    # All six reach the free destination while the stuck one holds its two slots.
    async def free_done() -> None:
        while len(free.sent) < 6:
            await asyncio.sleep(0)

    await asyncio.wait_for(free_done(), SAFETY)
    assert stuck.in_flight == 2
    assert len(stuck.sent) == 0
    stuck.gate.set()
    await settle(*deliveries)

    assert stuck.max_in_flight == 2
    assert summary.sent_by_destination == {"stuck": 6, "free": 6}


async def test_failing_destinations_do_not_stop_the_others(
    context: DeliveryContext, logged: list[dict[str, Any]]
) -> None:
    probes = {
        "slack": Probe(error=DeliveryError("slack webhook answered HTTP 500: internal_error")),
        "sns": Probe(),
        "webhook": Probe(error=RuntimeError("POST https://hooks.example/T/B/s3cr3t failed")),
        "email": Probe(),
    }
    summary = RunSummary()
    dispatch = dispatcher(probes, context, summary)

    results = await asyncio.gather(
        *(dispatch.deliver(make_alert(*probes, number=n)) for n in range(3)),
        return_exceptions=True,
    )

    # deliver never raises; each alert reached neither slack nor webhook (nor a dead letter).
    assert results == [False, False, False]
    # ... the run fails at the end, after everything else was delivered (no dead letter).
    with pytest.raises(DeliveryIncomplete, match="^6 alert deliveries failed"):
        await dispatch.finish()
    assert len(probes["sns"].sent) == len(probes["email"].sent) == 3
    assert (summary.alerts_sent, summary.alerts_failed) == (6, 6)
    assert summary.sent_by_destination == {"sns": 3, "email": 3}
    assert summary.failed_by_destination == {"slack": 3, "webhook": 3}
    failures = [line for line in logged if line["event"] == "alert_delivery_failed"]
    assert len(failures) == 6
    errors = {(line["destination"], line["error"]) for line in failures}
    assert errors == {
        ("slack", "slack webhook answered HTTP 500: internal_error"),
        # An unexpected exception may embed a URL: only its kind is logged.
        ("webhook", "unexpected RuntimeError"),
    }
    assert {line["event_id"] for line in failures} == {"event-0", "event-1", "event-2"}
    assert all(line["level"] == "ERROR" and line["rule"] == "Create User" for line in failures)
    assert all(line["destination_type"] == "fake" for line in failures)
    assert "s3cr3t" not in repr(logged)


async def test_aws_error_is_logged_with_its_code(
    context: DeliveryContext, logged: list[dict[str, Any]]
) -> None:
    error = ClientError(
        {"Error": {"Code": "NotFound", "Message": "Topic does not exist"}}, "Publish"
    )
    summary = RunSummary()

    await dispatcher({"sns": Probe(error=error)}, context, summary).deliver(make_alert("sns"))

    [failure] = [line for line in logged if line["event"] == "alert_delivery_failed"]
    assert "NotFound" in failure["error"] and "Publish" in failure["error"]
    assert summary.alerts_failed == 1


async def test_send_that_never_finishes_times_out_and_frees_its_slot(
    context: DeliveryContext, logged: list[dict[str, Any]]
) -> None:
    hung, fine = Probe(gated=True), Probe()
    summary = RunSummary()
    send = dispatcher(
        {"hung": hung, "fine": fine}, context, summary, concurrency=1, send_timeout=0.05
    ).deliver

    await settle(send(make_alert("hung", "fine", number=1)), send(make_alert("hung", number=2)))

    # Both sends to the hung destination ran (one after the other, concurrency 1) and failed.
    assert hung.entered == 2 and hung.in_flight == 0
    assert len(fine.sent) == 1
    assert (summary.alerts_sent, summary.alerts_failed) == (1, 2)
    errors = [line["error"] for line in logged if line["event"] == "alert_delivery_failed"]
    assert errors == ["timed out after 0.05 s", "timed out after 0.05 s"]


async def test_alert_without_destinations_sends_nothing(context: DeliveryContext) -> None:
    probe = Probe()
    summary = RunSummary()

    await dispatcher({"sns": probe}, context, summary).deliver(make_alert())

    assert probe.entered == 0
    assert (summary.alerts_sent, summary.alerts_failed) == (0, 0)


async def test_transient_failure_is_retried_until_delivered(
    context: DeliveryContext, logged: list[dict[str, Any]]
) -> None:
    flaky = Probe(first_errors=[DeliveryError("HTTP 503", retryable=True)] * 2)
    summary = RunSummary()
    dispatch = dispatcher({"slack": flaky}, context, summary, retries=3)

    await dispatch.deliver(make_alert("slack"))
    await dispatch.finish()

    assert flaky.entered == 3 and len(flaky.sent) == 1
    assert (summary.alerts_sent, summary.alerts_failed, summary.alerts_retried) == (1, 0, 2)
    retries = [line for line in logged if line["event"] == "alert_delivery_retry"]
    assert [(line["attempt"], line["error"]) for line in retries] == [
        (1, "HTTP 503"),
        (2, "HTTP 503"),
    ]


async def test_permanent_failure_is_not_retried(context: DeliveryContext) -> None:
    gone = Probe(error=DeliveryError("slack webhook answered HTTP 404: no_service"))
    summary = RunSummary()

    await dispatcher({"slack": gone}, context, summary, retries=3).deliver(make_alert("slack"))

    assert gone.entered == 1
    assert (summary.alerts_failed, summary.alerts_retried) == (1, 0)


async def test_transient_failure_gives_up_after_the_last_retry(
    context: DeliveryContext, logged: list[dict[str, Any]]
) -> None:
    down = Probe(error=DeliveryError("HTTP 500", retryable=True))
    ok = Probe()
    summary = RunSummary()
    dispatch = dispatcher({"slack": down, "sns": ok}, context, summary, retries=2)

    await dispatch.deliver(make_alert("slack", "sns"))

    assert down.entered == 3  # the first try and two retries
    assert len(ok.sent) == 1
    assert (summary.alerts_sent, summary.alerts_failed, summary.alerts_retried) == (1, 1, 2)
    [failure] = [line for line in logged if line["event"] == "alert_delivery_failed"]
    assert failure["destination"] == "slack" and failure["error"] == "HTTP 500"
    with pytest.raises(DeliveryIncomplete):
        await dispatch.finish()


async def test_rate_limited_sends_give_up_at_the_deadline_instead_of_running_past_it(
    context: DeliveryContext, logged: list[dict[str, Any]]
) -> None:
    # One send a second, and the invocation ends (less the reserve) in 0.3 s: the first alert
    # goes at once, the next two would wait past the end and fail instead, to be kept.
    paced = Probe()
    destinations = {"slack": FakeDestination(id="slack", probe=paced, rate_limit=1.0)}
    policy = DeliveryPolicy(
        concurrency=8,
        send_timeout=SAFETY,
        retries=3,
        retry_budget=SAFETY,
        backoff=Backoff(base=0.001, cap=0.001),
        flood_threshold=1000,
    )
    summary = RunSummary()
    deadline = time.monotonic() + DEADLINE_RESERVE + 0.3
    dispatch = Dispatcher(destinations, context, summary, policy, deadline=deadline)
    started = time.monotonic()

    await settle(*(dispatch.deliver(make_alert("slack", number=n)) for n in range(3)))

    assert time.monotonic() - started < 0.9
    assert len(paced.sent) == 1
    assert (summary.alerts_sent, summary.alerts_failed, summary.alerts_retried) == (1, 2, 0)
    errors = [line["error"] for line in logged if line["event"] == "alert_delivery_failed"]
    assert errors == ["rate limit: no send slot before the invocation's deadline"] * 2
    with pytest.raises(DeliveryIncomplete, match="^2 alert deliveries failed"):
        await dispatch.finish()


async def test_inside_the_deadline_reserve_a_free_send_slot_is_still_used(
    context: DeliveryContext,
) -> None:
    # A short Lambda timeout: less time left than the reserve from the start. The first alert
    # finds a token free and is sent; the second would have to wait for one, and is not.
    paced = Probe()
    destinations = {"slack": FakeDestination(id="slack", probe=paced, rate_limit=1.0)}
    policy = DeliveryPolicy(
        concurrency=8,
        send_timeout=SAFETY,
        retries=0,
        retry_budget=SAFETY,
        backoff=Backoff(base=0.001, cap=0.001),
        flood_threshold=1000,
    )
    summary = RunSummary()
    deadline = time.monotonic() + DEADLINE_RESERVE / 2
    dispatch = Dispatcher(destinations, context, summary, policy, deadline=deadline)

    await settle(*(dispatch.deliver(make_alert("slack", number=n)) for n in range(2)))

    assert [alert.event_id for alert in paced.sent] == ["event-0"]
    assert (summary.alerts_sent, summary.alerts_failed) == (1, 1)
