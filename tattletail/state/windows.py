"""The window logic: pure functions from a unit of state and a batch of items to the new state
and the alerts it decides. Every store (in memory, DynamoDB) runs exactly this code; the store
only makes each read-apply-write atomic (tattletail.state.store).

Why it is shaped this way:

- **Tumbling windows, aligned to the epoch** (a 10m window is 12:00-12:10, 12:10-12:20, ...), for
  threshold, distinct and dedup. A record's window is a function of its eventTime alone, so the
  alerts are a function of the set of records, not of the order files arrive in, which
  concurrent Lambda invocations and CloudTrail's late, out-of-order delivery make arbitrary.
  A window's state is a set (of eventIDs, of values), so adding a record twice (a retried
  invocation, the same event from two trails) changes nothing. The cost: a burst that straddles
  a boundary is split between two windows (see the docs for how to size a window).
- **One alert per window**: a threshold or distinct window that reached its count alerts once
  and then stops counting; its state shrinks to the fact that it fired.
- **Dedup periods** are the same tumbling windows; per key, each period's first match alerts
  and the others are counted per log file (the count of a file is written whole, so a retried
  file counts once). Those counts are reported with the key's next alert.
- **Sequences** keep each step's recent matches (within `within` plus the allowed lateness of
  the newest one) and look for a chain after each record, so a step that arrives late still
  completes it. A chain's records are used once (their eventIDs are remembered).
- **The outbox**: an alert is written into the state by the same atomic write that decides it,
  whole (rule, record, what it counted), with a claim: who sends it and until when (a lease
  its sender renews while it sends, see tattletail.state.stage). Whoever then sees an
  unclaimed or expired entry (a retry of the invocation that died, or any later one) sends
  it; a sender that did not finish leaves it there. So a decided alert is sent by exactly one
  invocation at a time and never lost.
"""

from __future__ import annotations

import bisect
import copy
import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from tattletail import json_input
from tattletail.config import Dedup, Distinct, Stateful, Threshold
from tattletail.config import Sequence as SequenceSpec
from tattletail.destinations.budget import record_marker
from tattletail.json_output import dumps
from tattletail.state.plan import Item, StateKey, canonical

SCHEMA = 1
# A record larger than this is kept in an outbox entry as its identifying fields only.
MAX_STORED_RECORD = 32 * 1024
# Past this size (JSON; DynamoDB's limit is 400 KB an item, compressed here), every record in
# the outbox is kept as its identifying fields only.
MAX_STATE_BYTES = 200 * 1024
# Alerts one unit of state keeps waiting to be sent: those decided beyond it in one batch (a
# pathological flood of sequences or dedup periods in one file) are counted as held instead.
OUTBOX_LIMIT = 100
# Per dedup key: the periods kept besides those with matches not yet reported.
DEDUP_PERIODS_KEPT = 16
# Per sequence step: the most recent matches kept; per sequence, the records of chains and the
# log files applied that are kept (to recognise the same event from another trail, and a
# retried file).
SEQUENCE_ENTRIES_PER_STEP = 50
SEQUENCE_USED_KEPT = 200
SEQUENCE_FILES_KEPT = 500
# Per dedup period: the log files whose counts are kept apart (a retried one counts once);
# beyond, the oldest are folded into one count.
DEDUP_FILES_KEPT = 200
FOLDED = "folded"
# A group's value or a title longer than this is kept cut.
GROUP_CHARS = 1024
# Shown in an alert: values of a distinct window, and the length of each.
DISTINCT_VALUES_SHOWN = 20
SHOWN_CHARS = 200


@dataclass(frozen=True)
class Claim:
    """Who is applying a batch: its claims on alerts last `until` (epoch seconds)."""

    nonce: str
    until: float
    now: float


@dataclass
class Outcome:
    # The state to write; None when the batch changed nothing.
    state: dict[str, Any] | None
    # Outbox entries this caller now holds the claim on: it must send them, then settle.
    send: list[dict[str, Any]] = field(default_factory=list)
    # Another caller holds a live claim on an alert these items decided: wait for it.
    waiting: bool = False
    # dedup: matches held back; sequence: matches too late to join.
    held: int = 0
    late: int = 0


def iso(epoch_seconds: int | float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_state(key: StateKey) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "kind": key.kind,
        "rule": key.rule,
        "group": _cut(key.group),
        "bucket": key.bucket,
        "outbox": [],
    }


def apply(
    key: StateKey,
    spec: Stateful,
    state: dict[str, Any] | None,
    items: Sequence[Item],
    claim: Claim,
    lateness: int = 3600,
) -> Outcome:
    """The batch applied to the state (None: no state yet). Items may be given in any order
    and any number of times: the outcome is the same."""
    current = state if state is not None else new_state(key)
    working = copy.deepcopy(current)
    ordered = sorted(items, key=lambda item: item.order)
    outcome = Outcome(None)
    if isinstance(spec, Threshold):
        decided = _threshold(working, spec, ordered, key)
    elif isinstance(spec, Distinct):
        decided = _distinct(working, spec, ordered, key)
    elif isinstance(spec, Dedup):
        decided = _dedup(working, spec, ordered, key, outcome)
    else:
        decided = _sequence(working, spec, ordered, key, outcome, lateness)
    room = max(0, OUTBOX_LIMIT - len(working["outbox"]))
    outcome.held += max(0, len(decided) - room)
    mine = {"by": claim.nonce, "until": claim.until}
    for entry in decided[:room]:
        entry["claim"] = dict(mine)
        working["outbox"].append(entry)
    if working["outbox"] and len(dumps(working)) > MAX_STATE_BYTES:
        for entry in working["outbox"]:
            alert = entry["alert"]
            alert["record"] = _marker(alert["record"].encode()).decode()
            alert["annotation"] = _shown(alert["annotation"])
    event_ids = {item.event_id for item in ordered}
    for entry in working["outbox"]:
        held_by = entry.get("claim")
        if held_by is not None and held_by["by"] == claim.nonce:
            outcome.send.append(entry)
        elif held_by is None or held_by["until"] <= claim.now:
            entry["claim"] = dict(mine)
            outcome.send.append(entry)
        elif event_ids.intersection(entry["events"]):
            outcome.waiting = True
    if state is None or working != current:
        outcome.state = working
    return outcome


def settle(state: dict[str, Any], delivered: dict[str, bool], nonce: str) -> dict[str, Any] | None:
    """After sending: the entries this caller delivered leave the outbox, the others are
    released for the next caller. None when nothing changes (the claims were taken over)."""
    outbox = []
    changed = False
    for entry in state["outbox"]:
        held_by = entry.get("claim")
        if held_by is not None and held_by["by"] == nonce and entry["id"] in delivered:
            changed = True
            if delivered[entry["id"]]:
                continue
            entry = {**entry, "claim": None}
        outbox.append(entry)
    return {**state, "outbox": outbox} if changed else None


def renew(state: dict[str, Any], nonce: str, until: float) -> dict[str, Any] | None:
    """This caller's claims extended to `until`; None when it holds none any more."""
    outbox = []
    changed = False
    for entry in state["outbox"]:
        held_by = entry.get("claim")
        if held_by is not None and held_by["by"] == nonce:
            entry = {**entry, "claim": {"by": nonce, "until": until}}
            changed = True
        outbox.append(entry)
    return {**state, "outbox": outbox} if changed else None


def done(state: dict[str, Any]) -> bool:
    """A window that fired and whose alert was sent: nothing will ever change it again."""
    return bool(state.get("fired")) and not state["outbox"]


def event_end(key: StateKey, spec: Stateful, state: dict[str, Any]) -> int:
    """The event time after which the state no longer matters (its TTL starts from there)."""
    if isinstance(spec, Threshold | Distinct):
        assert key.bucket is not None
        return key.bucket + spec.window.seconds
    if isinstance(spec, Dedup):
        starts = [int(p) for p in state.get("periods", {})]
        return max(starts, default=0) + spec.period.seconds
    return int(state.get("newest", 0)) + spec.within.seconds


# -- threshold and distinct -------------------------------------------------------------------


def _entry(item: Item) -> str:
    # Sorts by time, then eventID.
    return f"{item.time:012d}|{item.event_id}"


def _entry_fields(entry: str) -> tuple[str, str]:
    time, _, event_id = entry.partition("|")
    return event_id, iso(int(time))


def _threshold(
    state: dict[str, Any], spec: Threshold, items: Sequence[Item], key: StateKey
) -> list[dict[str, Any]]:
    if state.get("fired"):
        return []
    entries = set(state.get("entries", ()))
    for item in items:
        entry = _entry(item)
        if entry in entries:
            continue
        entries.add(entry)
        if len(entries) >= spec.count:
            state.pop("entries", None)
            state["fired"] = {"event_id": item.event_id, "count": len(entries)}
            return [_window_alert(key, spec, item, sorted(entries), {})]
    state["entries"] = sorted(entries)
    return []


def _distinct(
    state: dict[str, Any], spec: Distinct, items: Sequence[Item], key: StateKey
) -> list[dict[str, Any]]:
    if state.get("fired"):
        return []
    values: dict[str, list[str]] = state.setdefault("values", {})
    for item in items:
        text = canonical(item.value)
        digest = hashlib.sha256(text.encode()).hexdigest()[:24]
        entry = _entry(item)
        known = values.get(digest)
        if known is not None:
            # The earliest record of each value, whatever order they came in.
            known[0] = min(known[0], entry)
            continue
        # The values an alert shows are kept; the others only count.
        shown = _shown(item.value) if len(values) < DISTINCT_VALUES_SHOWN else None
        values[digest] = [entry, shown]
        if len(values) >= spec.count:
            state.pop("values")
            state["fired"] = {"event_id": item.event_id, "count": len(values)}
            firsts = sorted(values.values())
            extra = {
                "field": spec.field,
                "values": [shown for _, shown in firsts if shown is not None][
                    :DISTINCT_VALUES_SHOWN
                ],
            }
            return [_window_alert(key, spec, item, [entry for entry, _ in firsts], extra)]
    return []


def _window_alert(
    key: StateKey,
    spec: Threshold | Distinct,
    item: Item,
    entries: list[str],
    extra: dict[str, Any],
) -> dict[str, Any]:
    assert key.bucket is not None
    first_id, first_time = _entry_fields(entries[0])
    last_id, last_time = _entry_fields(entries[-1])
    info = {
        "count": len(entries),
        **extra,
        "window": spec.window.text,
        "window_start": iso(key.bucket),
        "window_end": iso(key.bucket + spec.window.seconds),
        "group": _group(key),
        "first_event_id": first_id,
        "first_event_time": first_time,
        "last_event_id": last_id,
        "last_event_time": last_time,
    }
    return _outbox_entry(key.pk, [item.event_id], key, item, info)


# -- dedup ------------------------------------------------------------------------------------


def _token(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _dedup(
    state: dict[str, Any], spec: Dedup, items: Sequence[Item], key: StateKey, outcome: Outcome
) -> list[dict[str, Any]]:
    periods: dict[str, dict[str, Any]] = state.setdefault("periods", {})
    length = spec.period.seconds
    alerts = []
    by_period: dict[int, list[Item]] = {}
    for item in items:
        by_period.setdefault(item.time - item.time % length, []).append(item)
    for start, its in sorted(by_period.items()):
        period = periods.get(str(start))
        held: Counter[str] = Counter()
        for item in its:
            if period is None:
                period = periods[str(start)] = {"alert": item.event_id, "held": {}, "reported": 0}
                alerts.append(_dedup_alert(key, spec, item, start, periods))
            elif item.event_id != period["alert"]:
                held[_token(item.source)] += 1
        # A log file's count is written whole: a retried file counts once.
        assert period is not None
        period["held"].update(held)
        _fold(period)
        outcome.held += sum(held.values())
    newest = sorted(periods, key=int)[-DEDUP_PERIODS_KEPT:]
    for start in list(periods):
        entry = periods[start]
        if start not in newest and sum(entry["held"].values()) <= entry["reported"]:
            del periods[start]
    return alerts


def _dedup_alert(
    key: StateKey, spec: Dedup, item: Item, start: int, periods: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The alert of a period's first match, with the matches held back in earlier periods
    since the key's last report (those periods are marked reported)."""
    held_before = 0
    previous = None
    for earlier in sorted((p for p in periods if int(p) < start), key=int):
        entry = periods[earlier]
        total = sum(entry["held"].values())
        held_before += total - entry["reported"]
        entry["reported"] = total
        previous = (earlier, entry["alert"])
    info = {
        "key": json_input.loads(key.group),
        "period": spec.period.text,
        "period_start": iso(start),
        "period_end": iso(start + spec.period.seconds),
        "held_before": held_before,
        "previous_alert_event_id": previous[1] if previous else None,
        "previous_period_start": iso(int(previous[0])) if previous else None,
    }
    return _outbox_entry(f"{key.pk}:{start}", [item.event_id], key, item, info)


# -- sequence ---------------------------------------------------------------------------------


def _sequence(
    state: dict[str, Any],
    spec: SequenceSpec,
    items: Sequence[Item],
    key: StateKey,
    outcome: Outcome,
    lateness: int,
) -> list[dict[str, Any]]:
    # Per step: [time, eventID, annotation] of its recent matches, in time order; the eventIDs
    # already in a chain (the same event from another trail), and the log files applied (a
    # retried file), each with its newest time.
    steps: list[list[list[Any]]] = state.setdefault("steps", [[] for _ in spec.steps])
    used: dict[str, int] = state.setdefault("used", {})
    files: dict[str, int] = state.setdefault("files", {})
    alerts = []
    applied = set(files)
    for item in items:
        token = _token(item.source)
        if token in applied:
            continue
        files[token] = max(files.get(token, item.time), item.time)
        if len(files) > SEQUENCE_FILES_KEPT:
            del files[min(files, key=lambda name: (files[name], name))]
        newest = max(int(state.get("newest", item.time)), item.time)
        state["newest"] = newest
        if item.time < newest - spec.within.seconds - lateness:
            outcome.late += 1
            continue
        if item.event_id in used:
            continue
        entry = [item.time, item.event_id, _shown(item.annotation)]
        for step in item.steps:
            entries = steps[step]
            if all(e[1] != item.event_id for e in entries):
                bisect.insort(entries, entry, key=_by_time)
                if len(entries) > SEQUENCE_ENTRIES_PER_STEP:
                    del entries[0]  # the oldest: what a long burst of one step keeps is bounded
        # A new chain must hold this record (any other was found when its last record came).
        while all(steps) and (chain := _chain(steps, spec, item.time)) is not None:
            used.update((link[1], link[0]) for link in chain)
            for entries in steps:
                entries[:] = [e for e in entries if e[1] not in used]
            # One alert per group and `within` (of event time): the chains in between are
            # counted and reported with the next alert, as a dedup does.
            last = max(link[0] for link in chain)
            previous = state.get("alerted_at")
            if previous is not None and abs(last - previous) < spec.within.seconds:
                state["held"] = state.get("held", 0) + 1
                outcome.held += 1
                continue
            state["alerted_at"] = last
            alerts.append(_sequence_alert(key, spec, item, chain, state.pop("held", 0)))
    horizon = int(state.get("newest", 0)) - spec.within.seconds - lateness
    for step, entries in enumerate(steps):
        steps[step] = [e for e in entries if e[0] >= horizon]
    recent = sorted(((t, event_id) for event_id, t in used.items() if t >= horizon), reverse=True)
    state["used"] = {event_id: t for t, event_id in recent[:SEQUENCE_USED_KEPT]}
    state["files"] = {token: t for token, t in files.items() if t >= horizon}
    return alerts


def _chain(steps: list[list[list[Any]]], spec: SequenceSpec, at: int) -> list[list[Any]] | None:
    """The chain starting earliest, among those that can hold a record at `at`: one match per
    step, all distinct records, the last at most `within` after the first, in step order when
    ordered (equal times count as in order: CloudTrail's times are to the second)."""
    within = spec.within.seconds
    lowest = [at - within, ""]
    candidates = (
        [(e, 0) for e in steps[0][bisect.bisect_left(steps[0], _by_time(lowest), key=_by_time) :]]
        if spec.ordered
        else [
            (e, step)
            for step, entries in enumerate(steps)
            for e in entries[bisect.bisect_left(entries, _by_time(lowest), key=_by_time) :]
        ]
    )
    for first, first_step in sorted(candidates, key=lambda pair: _by_time(pair[0])):
        if first[0] > at:
            break
        chain = {first_step: first}
        taken = {first[1]}
        previous = first[0]
        for step in range(len(steps)):
            if step == first_step:
                continue
            found = _earliest(steps[step], previous if spec.ordered else first[0], taken)
            if found is None or found[0] > first[0] + within:
                break
            chain[step] = found
            taken.add(found[1])
            previous = found[0]
        else:
            return [chain[step] for step in range(len(steps))]
    return None


def _earliest(entries: list[list[Any]], floor: int, taken: set[str]) -> list[Any] | None:
    """The earliest entry at or after `floor` whose record is not taken (entries are sorted)."""
    for entry in entries[bisect.bisect_left(entries, (floor, ""), key=_by_time) :]:
        if entry[1] not in taken:
            return entry
    return None


def _by_time(entry: list[Any]) -> tuple[int, str]:
    return (entry[0], entry[1])


def _sequence_alert(
    key: StateKey, spec: SequenceSpec, item: Item, chain: list[list[Any]], held_before: int
) -> dict[str, Any]:
    by_time = sorted(chain, key=_by_time)
    info = {
        "steps": [
            {"rule": name, "event_id": entry[1], "event_time": iso(entry[0]), "match": entry[2]}
            for name, entry in zip(spec.steps, chain, strict=True)
        ],
        "within": spec.within.text,
        "ordered": spec.ordered,
        "group": _group(key),
        "first_event_id": by_time[0][1],
        "first_event_time": iso(by_time[0][0]),
        "last_event_id": by_time[-1][1],
        "last_event_time": iso(by_time[-1][0]),
        "held_before": held_before,
    }
    ids = [entry[1] for entry in chain]
    digest = hashlib.sha256("\x1f".join(ids).encode()).hexdigest()[:24]
    return _outbox_entry(f"{key.pk}:{digest}", ids, key, item, info)


# -- the outbox -------------------------------------------------------------------------------


def _shown(value: Any) -> Any:
    """A value as an alert shows it: strings and numbers as they are, others as JSON, cut."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else canonical(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def _outbox_entry(
    alert_id: str, event_ids: list[str], key: StateKey, item: Item, info: dict[str, Any]
) -> dict[str, Any]:
    record = item.record if len(item.record) <= MAX_STORED_RECORD else _marker(item.record)
    return {
        "id": alert_id,
        "events": event_ids,
        "alert": {
            "kind": key.kind,
            "rule": key.rule,
            "source": item.source,
            "time": item.time,
            "record": record.decode(),
            "event_id": item.event_id,
            "annotation": item.annotation,
            "title": item.title if item.title is None else _cut(item.title),
            "info": info,
        },
        "claim": None,
    }


def _marker(record: bytes) -> bytes:
    """A record as its identifying fields (the whole record is in the log file, `source`)."""
    decoded = json_input.loads(record)
    if decoded.get("truncated") is True and "original_size_bytes" in decoded:
        return record  # a marker already
    return orjson.dumps(record_marker(decoded, len(record)))


def _cut(text: str) -> str:
    return text if len(text) <= GROUP_CHARS else text[: GROUP_CHARS - 1] + "…"


def _group(key: StateKey) -> Any:
    """The group's value as an alert shows it (cut, as text, when it is very long)."""
    return json_input.loads(key.group) if len(key.group) <= GROUP_CHARS else _cut(key.group)


def _fold(period: dict[str, Any]) -> None:
    """Keep the counts of at most DEDUP_FILES_KEPT log files apart (the rest in one total)."""
    held = period["held"]
    tokens = sorted(token for token in held if token != FOLDED)
    for token in tokens[: max(0, len(tokens) - DEDUP_FILES_KEPT)]:
        count = held.pop(token)
        held[FOLDED] = held.get(FOLDED, 0) + count
