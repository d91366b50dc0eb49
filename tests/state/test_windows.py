"""The window logic on its own: thresholds at exactly `count`, window edges, distinct values,
dedup periods and their held counts, sequences in and out of order, late records, the outbox's
claims, and applying a batch twice."""

from __future__ import annotations

import zlib
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tattletail.config import Dedup, Distinct, Duration, Sequence, Threshold
from tattletail.json_output import dumps
from tattletail.state import windows
from tattletail.state.plan import Item, StateKey, canonical
from tattletail.state.windows import Claim, Outcome

T0 = 1_688_990_400  # 2023-07-10T12:00:00Z, a multiple of 10 minutes and of an hour
MINE = Claim("me", until=T0 + 1000, now=T0)


def item(
    n: int,
    at: int,
    *,
    group: Any = "alice",
    value: Any = None,
    steps: tuple[int, ...] = (),
    source: str = "s3://b/file-1",
) -> Item:
    record = {"eventID": f"e{n}", "eventTime": windows.iso(at)}
    return Item(
        time=at,
        event_id=f"e{n}",
        source=source,
        record=orjson.dumps(record),
        annotation=f"match {n}",
        title=None,
        group=group,
        value=value,
        steps=steps,
    )


def key_for(kind: str, group: Any = "alice", bucket: int | None = None) -> StateKey:
    return StateKey(kind, "rule", canonical(group), bucket)


def run(
    spec: Any,
    key: StateKey,
    batches: list[list[Item]],
    claim: Claim = MINE,
    state: dict[str, Any] | None = None,
) -> tuple[dict[str, Any] | None, list[Outcome]]:
    """Apply batches in turn, delivering (settling) every alert at once."""
    outcomes = []
    for batch in batches:
        outcome = windows.apply(key, spec, state, batch, claim)
        if outcome.state is not None:
            state = outcome.state
        if outcome.send:
            assert state is not None
            state = windows.settle(state, {e["id"]: True for e in outcome.send}, claim.nonce)
        outcomes.append(outcome)
    return state, outcomes


def alerts(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    return [entry["alert"] for outcome in outcomes for entry in outcome.send]


TEN_MINUTES = Threshold(count=3, window=Duration(600, "10m"), group_by=(".g",))


# -- threshold ----------------------------------------------------------------------------------


def test_a_threshold_fires_on_exactly_the_count_th_match_and_once() -> None:
    key = key_for("threshold", bucket=T0)
    _, below = run(TEN_MINUTES, key, [[item(1, T0), item(2, T0 + 10)]])
    assert alerts(below) == []

    state, outcomes = run(TEN_MINUTES, key, [[item(1, T0), item(2, T0 + 10)], [item(3, T0 + 20)]])
    [alert] = alerts(outcomes)
    assert alert["event_id"] == "e3"
    assert alert["info"]["count"] == 3
    assert alert["info"]["first_event_id"] == "e1" and alert["info"]["last_event_id"] == "e3"
    assert alert["info"]["window_start"] == "2023-07-10T12:00:00Z"
    assert alert["info"]["window_end"] == "2023-07-10T12:10:00Z"
    assert alert["info"]["group"] == "alice"
    # Fired and sent: more matches in the window change nothing and send nothing.
    assert state is not None and windows.done(state)
    more = windows.apply(key, TEN_MINUTES, state, [item(n, T0 + n) for n in range(4, 40)], MINE)
    assert more.state is None and more.send == []


def test_the_same_record_twice_counts_once() -> None:
    key = key_for("threshold", bucket=T0)
    _, outcomes = run(TEN_MINUTES, key, [[item(1, T0), item(1, T0)], [item(1, T0), item(2, T0)]])
    assert alerts(outcomes) == []


def test_one_batch_crossing_the_count_fires_on_the_count_th_record_in_time_order() -> None:
    key = key_for("threshold", bucket=T0)
    batch = [item(5, T0 + 50), item(1, T0 + 10), item(3, T0 + 30), item(2, T0 + 20)]
    _, outcomes = run(TEN_MINUTES, key, [batch])
    [alert] = alerts(outcomes)
    assert alert["event_id"] == "e3" and alert["info"]["count"] == 3


@pytest.mark.parametrize(("last", "fires"), [(T0 + 599, True), (T0 + 600, False)])
def test_window_edges_are_half_open(last: int, fires: bool) -> None:
    """12:00:00 to 12:09:59 is one window; 12:10:00 starts the next (the stage keys items by
    window, so a record at the edge never reaches the earlier window's state)."""
    from tattletail.state.plan import state_key

    spec = TEN_MINUTES
    records = [item(1, T0), item(2, T0 + 300), item(3, last)]
    keys = {state_key(_consumer(spec), r) for r in records}
    assert len(keys) == (1 if fires else 2)
    fired = []
    for key in keys:
        _, outcomes = run(spec, key, [[r for r in records if _bucket(r, spec) == key.bucket]])
        fired += alerts(outcomes)
    assert len(fired) == (1 if fires else 0)


def _bucket(record: Item, spec: Threshold) -> int:
    return record.time - record.time % spec.window.seconds


def _consumer(spec: Any) -> Any:
    from tattletail.config import Rule
    from tattletail.state.plan import Consumer

    rule = Rule(0, "rule", "", "", (), stateful=spec)
    return Consumer(rule, (0,))


# -- distinct -----------------------------------------------------------------------------------


def test_distinct_counts_values_not_records() -> None:
    spec = Distinct(".eventName", 3, Duration(600, "10m"))
    key = key_for("distinct", bucket=T0)
    same = [item(n, T0 + n, value="ListUsers") for n in range(10)]
    _, outcomes = run(spec, key, [same, [item(20, T0 + 20, value={"x": 1})]])
    assert alerts(outcomes) == []
    _, outcomes = run(
        spec, key, [same, [item(20, T0 + 20, value={"x": 1}), item(21, T0 + 21, value="Other")]]
    )
    [alert] = alerts(outcomes)
    assert alert["info"]["count"] == 3
    assert alert["info"]["values"] == ["ListUsers", '{"x":1}', "Other"]
    assert alert["info"]["first_event_id"] == "e0" and alert["info"]["last_event_id"] == "e21"


# -- dedup --------------------------------------------------------------------------------------

HOURLY = Dedup('"\\(.a)"', Duration(3600, "1h"))


def test_dedup_alerts_the_first_of_a_period_and_reports_the_held_with_the_next() -> None:
    key = key_for("dedup")
    first_hour = [item(n, T0 + 60 * n) for n in range(5)]
    state, outcomes = run(HOURLY, key, [first_hour])
    [alert] = alerts(outcomes)
    assert alert["event_id"] == "e0" and alert["info"]["held_before"] == 0
    assert outcomes[0].held == 4

    # The period ends: the next match alerts again, with the count held since the last alert.
    state, outcomes = run(HOURLY, key, [[item(9, T0 + 3600 + 5)]], state=state)
    [alert] = alerts(outcomes)
    assert alert["event_id"] == "e9"
    assert alert["info"]["held_before"] == 4
    assert alert["info"]["previous_alert_event_id"] == "e0"
    assert alert["info"]["period_start"] == "2023-07-10T13:00:00Z"
    # ... and reported once: the hour after reports only what it held.
    state, outcomes = run(
        HOURLY, key, [[item(10, T0 + 3600 + 6)], [item(11, T0 + 7200)]], state=state
    )
    assert [a["info"]["held_before"] for a in alerts(outcomes)] == [1]


def test_dedup_counts_a_retried_file_once() -> None:
    key = key_for("dedup")
    batch = [item(n, T0 + n) for n in range(4)]
    state, outcomes = run(HOURLY, key, [batch, batch, list(reversed(batch))])
    assert len(alerts(outcomes)) == 1
    assert state is not None
    [period] = state["periods"].values()
    assert sum(period["held"].values()) == 3
    # Another file's matches count on their own.
    other = [item(n, T0 + n, source="s3://b/file-2") for n in range(10, 12)]
    state, _ = run(HOURLY, key, [other], state=state)
    assert state is not None
    assert sum(next(iter(state["periods"].values()))["held"].values()) == 5


def test_a_late_match_of_an_earlier_period_alerts_if_that_period_had_none() -> None:
    key = key_for("dedup")
    state, _ = run(HOURLY, key, [[item(1, T0 + 7200)]])
    state, outcomes = run(HOURLY, key, [[item(2, T0 + 10), item(3, T0 + 20)]], state=state)
    assert [a["event_id"] for a in alerts(outcomes)] == ["e2"]


# -- sequence -----------------------------------------------------------------------------------

A_THEN_B = Sequence(("A", "B"), Duration(900, "15m"), (".g",))


def a(n: int, at: int, f: int = 1, **kwargs: Any) -> Item:
    """A match of step A, in log file number `f`."""
    return item(n, at, steps=(0,), source=f"s3://b/file-{f}", **kwargs)


def b(n: int, at: int, f: int = 1, **kwargs: Any) -> Item:
    return item(n, at, steps=(1,), source=f"s3://b/file-{f}", **kwargs)


def test_a_sequence_in_order_within_the_time_alerts_once() -> None:
    key = key_for("sequence")
    _, outcomes = run(A_THEN_B, key, [[a(1, T0)], [b(2, T0 + 60, f=2)], [b(3, T0 + 61, f=3)]])
    [alert] = alerts(outcomes)
    steps = alert["info"]["steps"]
    assert [(s["rule"], s["event_id"]) for s in steps] == [("A", "e1"), ("B", "e2")]
    assert alert["event_id"] == "e2"


def test_a_sequence_out_of_order_is_not_a_sequence() -> None:
    key = key_for("sequence")
    _, outcomes = run(A_THEN_B, key, [[b(2, T0)], [a(1, T0 + 60, f=2)]])
    assert alerts(outcomes) == []


def test_a_late_first_step_still_completes_the_sequence() -> None:
    """Files arrive out of order: B's file first, then A's, whose event is earlier."""
    key = key_for("sequence")
    _, outcomes = run(A_THEN_B, key, [[b(2, T0 + 60)], [a(1, T0, f=2)]])
    [alert] = alerts(outcomes)
    assert alert["event_id"] == "e1"  # the record that completed it
    assert alert["info"]["first_event_id"] == "e1" and alert["info"]["last_event_id"] == "e2"


def test_a_sequence_longer_than_within_is_not_a_sequence() -> None:
    key = key_for("sequence")
    _, outcomes = run(A_THEN_B, key, [[a(1, T0)], [b(2, T0 + 901, f=2)]])
    assert alerts(outcomes) == []


def test_an_unordered_sequence_takes_any_order() -> None:
    spec = Sequence(("A", "B"), Duration(300, "5m"), (), ordered=False)
    key = key_for("sequence")
    _, outcomes = run(spec, key, [[b(2, T0)], [a(1, T0 + 60, f=2)]])
    assert len(alerts(outcomes)) == 1


def test_a_group_alerts_once_per_within_and_reports_the_chains_in_between() -> None:
    key = key_for("sequence")
    batch = [a(1, T0), b(2, T0 + 1), a(3, T0 + 2), b(4, T0 + 3)]
    state, outcomes = run(A_THEN_B, key, [batch, batch, batch[:2]])
    chains = [[s["event_id"] for s in x["info"]["steps"]] for x in alerts(outcomes)]
    assert chains == [["e1", "e2"]]
    assert outcomes[0].held == 1  # e3 then e4: the same group within 15 minutes
    assert [o.held for o in outcomes[1:]] == [0, 0]  # a retried file counts nothing again

    later = [a(5, T0 + 1000, f=2), b(6, T0 + 1001, f=2)]
    state, outcomes = run(A_THEN_B, key, [later], state=state)
    [alert] = alerts(outcomes)
    assert alert["info"]["held_before"] == 1


def test_each_record_is_in_one_sequence_at_most_even_from_another_file() -> None:
    key = key_for("sequence")
    batch = [a(1, T0), b(2, T0 + 1)]
    again = [a(1, T0, f=99), b(2, T0 + 1, f=99)]  # the same events, from another trail's file
    state, outcomes = run(A_THEN_B, key, [batch, [a(9, T0 + 2000, f=2)]])
    _, outcomes = run(A_THEN_B, key, [again, [b(10, T0 + 2001, f=3)]], state=state)
    chains = [[s["event_id"] for s in x["info"]["steps"]] for x in alerts(outcomes)]
    assert chains == [["e9", "e10"]]


def test_records_later_than_the_lateness_are_counted_as_late() -> None:
    key = key_for("sequence")
    state, _ = run(A_THEN_B, key, [[a(1, T0 + 10_000)]])
    outcome = windows.apply(key, A_THEN_B, state, [a(2, T0, f=2)], MINE, lateness=600)
    assert outcome.late == 1


# -- the outbox ---------------------------------------------------------------------------------


def test_an_unsettled_alert_is_sent_by_whoever_comes_after_its_claim_expires() -> None:
    key = key_for("threshold", bucket=T0)
    batch = [item(n, T0 + n) for n in range(3)]
    died = windows.apply(key, TEN_MINUTES, None, batch, Claim("first", T0 + 100, T0))
    assert len(died.send) == 1 and died.state is not None  # claimed, then the sender died

    # Another invocation with other records of the window, before the claim expires: not its
    # alert to send, and nothing to wait for.
    other = [item(9, T0 + 9)]
    early = windows.apply(key, TEN_MINUTES, died.state, other, Claim("second", T0 + 500, T0 + 50))
    assert early.send == [] and not early.waiting
    # The retry of the same file, before expiry: its records decided the alert, so it waits.
    retry = windows.apply(key, TEN_MINUTES, died.state, batch, Claim("retry", T0 + 500, T0 + 50))
    assert retry.send == [] and retry.waiting
    # After expiry, anyone takes it over, and the first claimer's settle changes nothing.
    late = windows.apply(key, TEN_MINUTES, died.state, other, Claim("third", T0 + 900, T0 + 101))
    assert [e["id"] for e in late.send] == [e["id"] for e in died.send]
    assert late.state is not None
    assert windows.settle(late.state, {died.send[0]["id"]: True}, "first") is None


def test_an_undelivered_alert_is_released_for_the_next_invocation() -> None:
    key = key_for("threshold", bucket=T0)
    batch = [item(n, T0 + n) for n in range(3)]
    first = windows.apply(key, TEN_MINUTES, None, batch, MINE)
    assert first.state is not None
    released = windows.settle(first.state, {first.send[0]["id"]: False}, MINE.nonce)
    assert released is not None and released["outbox"][0]["claim"] is None
    again = windows.apply(key, TEN_MINUTES, released, [], Claim("next", T0 + 50, T0 + 1))
    assert [e["alert"]["event_id"] for e in again.send] == ["e2"]


def test_a_long_burst_of_one_step_keeps_the_state_bounded() -> None:
    """20,000 matches of the second step, then of the first, for one group in one file: each
    step keeps its 50 most recent matches, and a chain is still found among those."""
    key = key_for("sequence")
    seconds = [b(n, T0 + n % 600) for n in range(20_000)]
    firsts = [a(100_000 + n, T0 + 300 + n % 60) for n in range(20_000)]
    assert len({x.source for x in seconds + firsts}) == 1
    outcome = windows.apply(key, A_THEN_B, None, seconds + firsts, MINE)
    assert outcome.state is not None
    assert [len(entries) for entries in outcome.state["steps"]] <= [50, 50]
    assert len(outcome.send) >= 1
    assert len(orjson.dumps(outcome.state)) < 64 * 1024


# Small to draw, large once built: hypothesis keeps its inputs small.
HOSTILE = st.one_of(
    st.text(max_size=20),
    st.builds(lambda n, k: f"{k}:" + "y" * n, st.integers(0, 20_000), st.integers()),
    st.integers(),
    st.builds(
        lambda n, k: {str(i): "z" * n for i in range(k)}, st.integers(0, 3_000), st.integers(0, 20)
    ),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.sampled_from(["threshold", "distinct", "dedup", "sequence"]),
    st.lists(
        st.tuples(st.integers(0, 7200), HOSTILE, HOSTILE, st.integers(0, 400)),
        min_size=1,
        max_size=300,
    ),
)
def test_hostile_records_keep_a_group_state_within_dynamodbs_item_limit(
    kind: str, rows: list[tuple[int, Any, Any, int]]
) -> None:
    """Huge eventIDs, values, annotations and titles, and hundreds of log files: one group's
    state, stored compressed, stays far below DynamoDB's 400 KB item limit."""
    from tattletail.state.plan import MAX_EVENT_ID

    specs: dict[str, Any] = {
        "threshold": Threshold(1000, Duration(86400, "1d")),
        "distinct": Distinct(".v", 1000, Duration(86400, "1d")),
        "dedup": Dedup(".k", Duration(60, "1m")),
        "sequence": Sequence(("A", "B"), Duration(3600, "1h"), ()),
    }
    key = key_for(kind, bucket=T0 if kind in ("threshold", "distinct") else None)
    state = None
    for n, (at, value, annotation, file) in enumerate(rows):
        event_id = f"{'x' * (n % 3) * 100}{n}"[:MAX_EVENT_ID]
        batch = [
            Item(
                time=T0 + at,
                event_id=event_id,
                source=f"s3://b/file-{file}",
                record=orjson.dumps({"eventID": event_id, "blob": str(annotation)[:40_000]}),
                annotation=annotation,
                title=str(value)[:5000],
                group="g",
                value=value,
                steps=(n % 2,),
            )
        ]
        outcome = windows.apply(key, specs[kind], state, batch, Claim(f"c{n}", T0, T0 + n))
        state = outcome.state or state
    assert state is not None
    # Written as the stores write it (a value beyond 64 bits included).
    assert len(zlib.compress(dumps(state))) < 300 * 1024
