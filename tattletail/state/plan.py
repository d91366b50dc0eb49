"""What the rules with memory need from each match: which rules feed which stateful rule, the jq
expressions the workers evaluate on a match for them, and the items a match becomes.

A stateful rule is fed by its own matches (threshold, distinct, dedup) or by its step rules'
matches (sequence). For each feeding rule, the workers evaluate a list of key programs on every
match (group_by, field, key, and a sequence's title) and send their first outputs with the match,
so the main process never runs jq (tattletail.rules, RuleSource.keys).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from tattletail.config import Config, Dedup, Distinct, Rule, Stateful, Threshold
from tattletail.config import Sequence as SequenceSpec
from tattletail.json_output import dumps
from tattletail.records import RecordJSON
from tattletail.rules import KeyFailure, Match

# The longest eventID kept as it is (others are kept as a digest).
MAX_EVENT_ID = 128


@dataclass(frozen=True)
class Consumer:
    """One stateful rule as one feeding rule's matches reach it."""

    rule: Rule
    # Positions in the feeding rule's key programs (RuleSource.keys).
    group: tuple[int, ...]
    # distinct: the field's value; dedup: the key.
    value: int | None = None
    # sequence: the sequence rule's own title, evaluated on the step's record.
    title: int | None = None
    # sequence: the steps the feeding rule fills.
    steps: tuple[int, ...] = ()

    @property
    def spec(self) -> Stateful:
        assert self.rule.stateful is not None
        return self.rule.stateful


@dataclass
class StatePlan:
    # Rule index -> the jq expressions its workers evaluate on each match.
    keys: dict[int, tuple[str, ...]] = field(default_factory=dict)
    # Rule index -> the stateful rules its matches feed.
    consumers: dict[int, tuple[Consumer, ...]] = field(default_factory=dict)

    @property
    def stateful(self) -> bool:
        return bool(self.consumers)

    @classmethod
    def of(cls, config: Config) -> StatePlan:
        by_name = {rule.name: rule for rule in config.rules}
        programs: dict[int, list[str]] = {}
        consumers: dict[int, list[Consumer]] = {}

        def position(source: Rule, program: str) -> int:
            found = programs.setdefault(source.index, [])
            if program not in found:
                found.append(program)
            return found.index(program)

        for rule in config.rules:
            spec = rule.stateful
            if spec is None or not rule.enabled:
                continue
            if isinstance(spec, SequenceSpec):
                for source_name in dict.fromkeys(spec.steps):
                    source = by_name[source_name]
                    steps = tuple(n for n, step in enumerate(spec.steps) if step == source_name)
                    group = tuple(position(source, program) for program in spec.group_by)
                    title = position(source, rule.title) if rule.title is not None else None
                    consumers.setdefault(source.index, []).append(
                        Consumer(rule, group, title=title, steps=steps)
                    )
                continue
            group_by = spec.group_by if isinstance(spec, Threshold | Distinct) else ()
            group = tuple(position(rule, program) for program in group_by)
            value = None
            if isinstance(spec, Distinct):
                value = position(rule, spec.field)
            elif isinstance(spec, Dedup):
                value = position(rule, spec.key)
            programs.setdefault(rule.index, [])
            consumers.setdefault(rule.index, []).append(Consumer(rule, group, value=value))
        return cls(
            keys={index: tuple(found) for index, found in programs.items()},
            consumers={index: tuple(found) for index, found in consumers.items()},
        )


def canonical(value: Any) -> str:
    """A JSON value as one text: equal values give equal texts (object keys sorted)."""
    return dumps(value, orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()


def epoch(event_time: str | None) -> int | None:
    """A CloudTrail eventTime (ISO 8601, UTC) as whole seconds since the epoch."""
    if event_time is None:
        return None
    try:
        moment = datetime.fromisoformat(event_time.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return int(moment.timestamp())


@dataclass(frozen=True)
class Item:
    """One match as a stateful rule counts it."""

    time: int  # eventTime, epoch seconds
    event_id: str  # the record's eventID, or a digest of the record when it has none
    source: str  # the log file it came from
    record: bytes  # the record's JSON
    annotation: Any
    title: str | None
    group: Any  # the group's value (None: no group_by)
    value: Any = None  # distinct: the field's value; dedup: the key
    steps: tuple[int, ...] = ()  # sequence: the steps it fills

    @property
    def order(self) -> tuple[int, str]:
        return (self.time, self.event_id)


@dataclass(frozen=True)
class StateKey:
    """One unit of state: a rule's group in one window (threshold, distinct), a dedup key,
    or a sequence's group. `pk` is its DynamoDB partition key."""

    kind: str
    rule: str
    group: str  # canonical JSON of the group's value (dedup: of the key)
    bucket: int | None = None  # the window's start (threshold, distinct)

    @property
    def pk(self) -> str:
        digest = hashlib.sha256(canonical([self.rule, self.group, self.bucket]).encode())
        return f"{self.kind}#{digest.hexdigest()[:40]}"


class Rejects:
    """Matches a stateful rule could not count, by reason (reported in the run summary)."""

    def __init__(self) -> None:
        self.by_reason: dict[str, int] = {}

    def add(self, reason: str) -> None:
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1


def items_of(
    plan: StatePlan, matches: Sequence[Match], source: str, rejects: Rejects
) -> dict[StateKey, tuple[Consumer, list[Item]]]:
    """The matches that feed stateful rules, as items grouped by the state they touch."""
    grouped: dict[StateKey, tuple[Consumer, list[Item]]] = {}
    for match in matches:
        for consumer in plan.consumers.get(match.rule_index, ()):
            item = _item(consumer, match, source, rejects)
            if item is None:
                continue
            key = state_key(consumer, item)
            grouped.setdefault(key, (consumer, []))[1].append(item)
    return grouped


def _item(consumer: Consumer, match: Match, source: str, rejects: Rejects) -> Item | None:
    time = epoch(match.event_time)
    if time is None:
        rejects.add("no_event_time")
        return None
    keys = match.keys
    values = [keys[n] for n in consumer.group]
    if any(isinstance(value, KeyFailure) for value in values):
        rejects.add("key_error")
        return None
    spec = consumer.spec
    as_list = isinstance(spec, Threshold | Distinct | SequenceSpec) and spec.group_by_list
    group = values if as_list else (values[0] if values else None)
    value = keys[consumer.value] if consumer.value is not None else None
    if isinstance(value, KeyFailure):
        rejects.add("key_error")
        return None
    if isinstance(spec, Distinct) and value is None:
        rejects.add("no_value")  # nothing to count
        return None
    title = match.title
    if consumer.title is not None:
        output = keys[consumer.title]
        title = output if isinstance(output, str) else None
    record = match.record
    if isinstance(record, RecordJSON):
        record_json, event_id = record.json, record.event_id
    else:
        record_json = dumps(record)
        event_id = record.get("eventID") if isinstance(record, Mapping) else None
    if not isinstance(event_id, str) or not event_id:
        # Records without an eventID (rare) are told apart by their content.
        event_id = "sha256:" + hashlib.sha256(record_json).hexdigest()[:32]
    elif len(event_id) > MAX_EVENT_ID:
        # CloudTrail's are 36 characters; a longer one would only bloat the state.
        event_id = "sha256:" + hashlib.sha256(event_id.encode()).hexdigest()[:32]
    return Item(
        time=time,
        event_id=event_id,
        source=source,
        record=record_json,
        annotation=match.annotation,
        title=title,
        group=group,
        value=value,
        steps=consumer.steps,
    )


def state_key(consumer: Consumer, item: Item) -> StateKey:
    spec = consumer.spec
    name = consumer.rule.name
    if isinstance(spec, Threshold | Distinct):
        bucket = item.time - item.time % spec.window.seconds
        return StateKey(spec.kind, name, canonical(item.group), bucket)
    if isinstance(spec, Dedup):
        return StateKey(spec.kind, name, canonical(item.value))
    return StateKey(spec.kind, name, canonical(item.group))
