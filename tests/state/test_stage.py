"""The state stage against a reference model: generated records, split into log files that are
delivered several times, to invocations running concurrently on one store, which fails calls,
fails deliveries and dies mid-way; each failed file is retried, as Lambda retries it. Whatever
the interleaving, every alert the records call for is delivered exactly once, and no other.

The one documented exception is checked as such: when the write recording a delivered alert
fails (after three tries), the alert may be delivered again once its claim expires.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tattletail import config
from tattletail.alerts import Alert
from tattletail.pipeline import rule_sources
from tattletail.rules import Match, RuleSet
from tattletail.state import InMemoryStore, StatePlan, StateStage
from tattletail.state import stage as stage_module
from tattletail.state.stage import WAIT_RESERVE
from tattletail.state.store import StateError, StateStore, StateUnavailable, Versioned
from tattletail.summary import RunSummary

T0 = 1_688_990_400  # 2023-07-10T12:00:00Z
COUNT = 3
WINDOW = 600
PERIOD = 900
WITHIN = 300

CONFIG = config.parse(
    f"""
[[rule]]
name = "Burst"
jq_match = 'select(.kind == "burst")'
threshold = {{ count = {COUNT}, window = "{WINDOW}s", group_by = ".g" }}
destinations = []

[[rule]]
name = "Kinds"
jq_match = 'select(.kind != null)'
distinct = {{ field = ".kind", count = 3, window = "{WINDOW}s", group_by = [".g"] }}
destinations = []

[[rule]]
name = "Once"
jq_match = 'select(.kind == "once")'
dedup = {{ key = ".g", period = "{PERIOD}s" }}
destinations = []

[[rule]]
name = "First"
jq_match = 'select(.kind == "first")'
alert = false

[[rule]]
name = "Second"
jq_match = 'select(.kind == "second")'
alert = false

[[rule]]
name = "Chain"
sequence = {{ steps = ["First", "Second"], within = "{WITHIN}s", group_by = ".g" }}
destinations = []
"""
)
PLAN = StatePlan.of(CONFIG)
RULES = RuleSet(rule_sources(CONFIG, PLAN))
KINDS = ("burst", "once", "first", "second", "other")


def iso(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


# -- the reference model ------------------------------------------------------------------------


def expected_windows(records: Sequence[dict[str, Any]]) -> tuple[set[Any], set[Any], set[Any]]:
    """Threshold windows with at least COUNT records, distinct windows with 3 kinds, and dedup
    (key, period)s with a record: each must give exactly one alert."""
    bursts: dict[Any, set[str]] = defaultdict(set)
    kinds: dict[Any, set[str]] = defaultdict(set)
    once = set()
    for record in records:
        t = record["t"]
        if record["kind"] == "burst":
            bursts[(record["g"], t - t % WINDOW)].add(record["eventID"])
        kinds[(record["g"], t - t % WINDOW)].add(record["kind"])
        if record["kind"] == "once":
            once.add((record["g"], t - t % PERIOD))
    return (
        {key for key, ids in bursts.items() if len(ids) >= COUNT},
        {key for key, found in kinds.items() if len(found) >= 3},
        once,
    )


# -- faults -------------------------------------------------------------------------------------


class Crash(Exception):
    """The invocation's process died (here: while its alerts were being sent)."""


async def switch(rng: random.Random) -> None:
    """Let other invocations run here, some of the time: a network round trip."""
    for _ in range(rng.choice([0, 0, 1, 3])):
        await asyncio.sleep(0)


class FlakyStore(StateStore):
    """The in-memory store, slow (other invocations run during a call) and failing some
    calls: before the call, or after a write went through (a time-out whose write succeeded)."""

    def __init__(self, inner: InMemoryStore, rng: random.Random, rate: float) -> None:
        self.inner = inner
        self.rng = rng
        self.rate = rate

    async def _maybe_fail(self) -> None:
        await switch(self.rng)
        if self.rng.random() < self.rate:
            raise StateUnavailable("injected: DynamoDB is unavailable")

    async def get_many(self, keys: Sequence[str], calls: Counter[str]) -> dict[str, Versioned]:
        await self._maybe_fail()
        return await self.inner.get_many(keys, calls)

    async def get(self, key: str, calls: Counter[str]) -> Versioned:
        await self._maybe_fail()
        return await self.inner.get(key, calls)

    async def put(
        self, key: str, state: dict[str, Any], version: int, expires_at: int, calls: Counter[str]
    ) -> bool:
        await self._maybe_fail()
        written = await self.inner.put(key, state, version, expires_at, calls)
        await self._maybe_fail()
        return written


@dataclass
class Receiver:
    """Every alert delivered, by its aggregate id, and how each invocation's sends go."""

    rng: random.Random
    fail_rate: float
    delivered: Counter[str] = field(default_factory=Counter)
    alerts: dict[str, Alert] = field(default_factory=dict)

    def sink(self, crash: bool, failures: list[str]) -> Any:
        async def deliver(alerts: Sequence[Alert]) -> list[bool]:
            await switch(self.rng)
            if crash:
                raise Crash
            results = []
            for alert in alerts:
                assert alert.aggregate is not None
                ok = self.rng.random() >= self.fail_rate
                if ok:
                    self.delivered[alert.aggregate.id] += 1
                    self.alerts[alert.aggregate.id] = alert
                else:
                    failures.append(alert.aggregate.id)
                results.append(ok)
            return results

        return deliver


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Clock:
    now: float = T0 + 86400.0

    def __call__(self) -> float:
        return self.now


async def invoke(
    store: StateStore,
    files: dict[str, list[Match]],
    name: str,
    receiver: Receiver,
    crash: bool,
    clock: Clock,
) -> tuple[bool, RunSummary]:
    """One invocation of one file: True when it succeeded (nothing left to retry)."""
    summary = RunSummary()
    stage = StateStage(
        CONFIG,
        PLAN,
        store,
        summary,
        retention=86400,
        lateness=3600,
        # Already inside the reserve: a claim lasts only the margin, and a wait fails at once.
        deadline=time.monotonic() + WAIT_RESERVE,
        clock=clock,
    )
    failures: list[str] = []
    try:
        await stage.process(name, files[name], receiver.sink(crash, failures))
    except (StateError, Crash):
        return False, summary
    # A delivery that failed fails the invocation (the dispatcher's DeliveryIncomplete).
    return not failures, summary


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    size = draw(st.integers(1, 40))
    records = []
    for n in range(size):
        records.append(
            {
                "eventID": f"e{n}",
                "t": T0 + draw(st.integers(0, 1800)),
                "g": draw(st.sampled_from(["a", "b"])),
                "kind": draw(st.sampled_from(KINDS)),
            }
        )
    for record in records:
        record["eventTime"] = iso(record["t"])
    files = draw(st.integers(1, 6))
    placement = [draw(st.integers(0, files - 1)) for _ in records]
    return {
        "records": records,
        "files": [
            [r for r, f in zip(records, placement, strict=True) if f == n] for n in range(files)
        ],
        "seed": draw(st.integers(0, 2**32 - 1)),
        "store_failures": draw(st.sampled_from([0.0, 0.05, 0.2])),
        "delivery_failures": draw(st.sampled_from([0.0, 0.2])),
        "crashes": draw(st.sampled_from([0.0, 0.2])),
    }


async def run_scenario(scenario: dict[str, Any]) -> tuple[Receiver, int]:
    rng = random.Random(scenario["seed"])
    store = FlakyStore(InMemoryStore(), rng, scenario["store_failures"])
    receiver = Receiver(rng, scenario["delivery_failures"])
    clock = Clock()
    files = {
        f"s3://trail/file-{n}.json.gz": RULES.evaluate(records).matches
        for n, records in enumerate(scenario["files"])
    }
    # Every file is delivered once or twice (S3 notifications are at least once).
    pending = [name for name in files for _ in range(rng.choice([1, 1, 2]))]
    settle_failures = 0
    for _ in range(400):
        if not pending:
            break
        rng.shuffle(pending)
        size = rng.randint(1, 4)
        batch, pending = pending[:size], pending[size:]
        batch_outcomes = await asyncio.gather(
            *(
                invoke(store, files, name, receiver, rng.random() < scenario["crashes"], clock)
                for name in batch
            )
        )
        for name, (ok, summary) in zip(batch, batch_outcomes, strict=True):
            settle_failures += summary.state_errors
            if not ok:
                pending.append(name)  # Lambda retries it
        # Time passes between rounds, so a retry may come while the claims of the invocation
        # that died are alive (a claim lasts ~10 s here), or after they expired.
        clock.now += rng.choice([0, 3, 10])
    assert not pending, "some file never succeeded"
    return receiver, settle_failures


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios())
def test_concurrent_retried_invocations_deliver_each_alert_exactly_once(
    scenario: dict[str, Any],
) -> None:
    receiver, settle_failures = asyncio.run(run_scenario(scenario))
    bursts, kinds, once = expected_windows(scenario["records"])

    got, chains = alerted_windows(receiver.alerts.values())
    assert got["Burst"] == bursts
    assert got["Kinds"] == kinds
    assert got["Once"] == once
    # Sequences: in order, within the time, no record in two.
    used = [step["event_id"] for steps in chains for step in steps]
    assert len(used) == len(set(used))
    for steps in chains:
        first, second = (_epoch(step["event_time"]) for step in steps)
        assert first <= second <= first + WITHIN
    # Exactly once: every alert delivered once (at least once only after a failed settle).
    duplicated = {alert_id: n for alert_id, n in receiver.delivered.items() if n > 1}
    assert not duplicated or settle_failures > 0


def alerted_windows(alerts: Iterable[Alert]) -> tuple[dict[str, set[Any]], list[Any]]:
    """What alerted, in the reference model's terms; and the sequences' chains."""
    got: dict[str, set[Any]] = defaultdict(set)
    chains = []
    for alert in alerts:
        assert alert.aggregate is not None
        info = alert.aggregate.info
        if alert.rule_name == "Burst":
            got["Burst"].add((info["group"], _epoch(info["window_start"])))
            assert info["count"] == COUNT
        elif alert.rule_name == "Kinds":
            got["Kinds"].add((info["group"][0], _epoch(info["window_start"])))
        elif alert.rule_name == "Once":
            got["Once"].add((info["key"], _epoch(info["period_start"])))
        else:
            chains.append(info["steps"])
    return got, chains


def random_records(seed: int, count: int, span: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    records = []
    for n in range(count):
        t = T0 + rng.randint(0, span)
        records.append(
            {
                "eventID": f"e{n}",
                "t": t,
                "eventTime": iso(t),
                "g": rng.choice("ab"),
                "kind": rng.choice(KINDS),
            }
        )
    return records


def _epoch(text: str) -> int:
    return int(time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone)


def test_a_scan_gives_the_same_alerts_whatever_the_order_of_its_files() -> None:
    """Locally, items are applied once, in event-time order: file order does not matter."""
    records = random_records(7, 80, 1800)
    files = [records[n::5] for n in range(5)]

    async def scan(order: list[int]) -> list[tuple[str, str]]:
        summary = RunSummary()
        stage = StateStage(
            CONFIG, PLAN, InMemoryStore(), summary, retention=1, lateness=3600, local=True
        )
        printed: list[Alert] = []

        async def sink(alerts: Sequence[Alert]) -> None:
            printed.extend(alerts)

        for n in order:
            await stage.process(f"file-{n}", RULES.evaluate(files[n]).matches, sink)
        await stage.flush(sink)
        return [(a.rule_name, a.event_id) for a in printed]

    first = asyncio.run(scan([0, 1, 2, 3, 4]))
    assert first, "the scenario should alert"
    assert asyncio.run(scan([4, 3, 2, 1, 0])) == first
    assert asyncio.run(scan([2, 0, 4, 1, 3])) == first


def test_a_long_scan_keeps_a_bounded_buffer_and_the_same_windows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stage_module, "LOCAL_BUFFER", 8)
    records = random_records(3, 300, 3600)
    records.sort(key=lambda record: record["t"])  # files come roughly in time order

    async def scan() -> list[Alert]:
        stage = StateStage(
            CONFIG, PLAN, InMemoryStore(), RunSummary(), retention=1, lateness=3600, local=True
        )
        printed: list[Alert] = []

        async def sink(alerts: Sequence[Alert]) -> None:
            printed.extend(alerts)

        for n in range(0, len(records), 10):
            await stage.process(f"file-{n}", RULES.evaluate(records[n : n + 10]).matches, sink)
            assert stage._buffered <= 8 + 10
        await stage.flush(sink)
        return printed

    printed = asyncio.run(scan())
    bursts, kinds, once = expected_windows(records)
    got, _ = alerted_windows(printed)
    assert (got["Burst"], got["Kinds"], got["Once"]) == (bursts, kinds, once)
