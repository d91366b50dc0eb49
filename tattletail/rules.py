"""The rules stage: what it means for a record to match a rule, and evaluating a rule set.

The contract, written once here and used by every evaluation path:
  each record is tested against each rule's jq program on its own; only the first output
  counts; no output, `null`, `false` or a jq runtime error is no match; any other first output
  is a match and becomes the alert's annotation, except that an output equal to the record
  itself (a plain `select(...)`) gives no annotation, so the record is not carried twice.

libjq (through the `jq` package) defines what a rule means. The native fast path
(`tattletail.native`) answers for the records it is sure about and defers the rest to libjq.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jq
import orjson

from tattletail.native import NO_OUTPUT, Fallback, NativeProgram, compile_native

# Per rule and per object, how many runtime errors are kept with their message (all are counted).
ERROR_SAMPLES_PER_RULE = 5


class RuleRuntimeError(Exception):
    """libjq raised while evaluating a rule on a record."""


@dataclass(frozen=True)
class RuleSource:
    """What a worker needs to evaluate one rule: picklable, no compiled state."""

    name: str
    jq_match: str


def interpret(first_output: Any, record: dict[str, Any]) -> tuple[bool, Any]:
    """(matched, annotation) for a rule's first output on a record: the matching contract."""
    if first_output is NO_OUTPUT or first_output is None or first_output is False:
        return False, None
    if isinstance(first_output, dict) and first_output == record:
        return True, None
    return True, first_output


def libjq_first_output(program: Any, record_text: str) -> Any:
    """The first output of a compiled jq program on one JSON text, or NO_OUTPUT.

    Outputs are produced lazily, so an error raised after the first output is never reached,
    exactly as in the original.
    """
    outputs = iter(program.input_text(record_text))
    try:
        return next(outputs)
    except StopIteration:
        return NO_OUTPUT
    except ValueError as exc:
        raise RuleRuntimeError(" ".join(str(exc).split())) from None


@dataclass(frozen=True)
class Match:
    rule_index: int
    record: dict[str, Any]
    annotation: Any


@dataclass(frozen=True)
class RuleErrorSample:
    rule_index: int
    event_id: str
    message: str


@dataclass
class Evaluation:
    """Everything one batch of records produced, small enough to send between processes."""

    records: int = 0
    matches: list[Match] = field(default_factory=list)
    error_counts: dict[int, int] = field(default_factory=dict)
    error_samples: list[RuleErrorSample] = field(default_factory=list)

    # Rules that overran the time limit and were skipped for part of the object.
    timed_out_rules: list[int] = field(default_factory=list)
    newest_event_time: str | None = None
    seconds: float = 0.0

    @property
    def rule_errors(self) -> int:
        return sum(self.error_counts.values())

    def merge(self, other: Evaluation) -> None:
        self.records += other.records
        self.seconds += other.seconds
        if other.newest_event_time is not None and (
            self.newest_event_time is None or other.newest_event_time > self.newest_event_time
        ):
            self.newest_event_time = other.newest_event_time
        self.matches.extend(other.matches)
        for rule_index, count in other.error_counts.items():
            kept = sum(1 for s in self.error_samples if s.rule_index == rule_index)
            self.error_counts[rule_index] = self.error_counts.get(rule_index, 0) + count
            samples = [s for s in other.error_samples if s.rule_index == rule_index]
            self.error_samples.extend(samples[: max(0, ERROR_SAMPLES_PER_RULE - kept)])


class CompiledRule:
    """One rule, compiled for libjq and, where its shape allows, for the native fast path."""

    def __init__(self, index: int, source: RuleSource) -> None:
        self.index = index
        self.name = source.name
        self.program = jq.compile(source.jq_match)
        native: NativeProgram | None = compile_native(source.jq_match)
        required = dict(native.required or {}) if native is not None else {}
        # eventName is checked once per record by RuleSet's index; the rest here, per rule.
        self.required_event_names: frozenset[str] | None = required.pop(("eventName",), None)
        self._other_required = tuple(required.items())
        self._native = native if native is not None and native.evaluable else None

    def first_output(self, record: dict[str, Any], record_text: _LazyText) -> Any:
        for path, allowed in self._other_required:
            value: Any = record
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if not isinstance(value, str) or value not in allowed:
                # Provably no output and no error: the prefilter's contract.
                return NO_OUTPUT
        if self._native is not None:
            try:
                return self._native.first_output(record)
            except Fallback:
                pass
        return libjq_first_output(self.program, record_text.get())


class _LazyText:
    """A record's JSON text, made at most once and only if some rule needs libjq."""

    __slots__ = ("_record", "_text")

    def __init__(self, record: dict[str, Any]) -> None:
        self._record = record
        self._text: str | None = None

    def get(self) -> str:
        if self._text is None:
            self._text = orjson.dumps(self._record).decode()
        return self._text


class RuleSet:
    """Rules compiled once per process, with an index that skips rules a record cannot match."""

    def __init__(self, sources: Sequence[RuleSource]) -> None:
        self.rules = [CompiledRule(index, source) for index, source in enumerate(sources)]
        self._candidates_by_event_name: dict[Any, tuple[CompiledRule, ...]] = {}

    def _candidates(self, event_name: Any) -> tuple[CompiledRule, ...]:
        """The rules that may match a record with this eventName, in config order."""
        if not isinstance(event_name, str):
            event_name = None
        found = self._candidates_by_event_name.get(event_name)
        if found is None:
            found = tuple(rule for rule in self.rules if _may_match(rule, event_name))
            self._candidates_by_event_name[event_name] = found
        return found

    def evaluate(
        self, records: Sequence[dict[str, Any]], skip: frozenset[int] = frozenset()
    ) -> Evaluation:
        """Every rule on every record, record by record (the fast order)."""
        result = Evaluation(records=len(records))
        for record in records:
            text = _LazyText(record)
            for rule in self._candidates(record.get("eventName")):
                if rule.index not in skip:
                    _apply(rule, record, text, result)
        return result

    def evaluate_rule_by_rule(
        self,
        records: Sequence[dict[str, Any]],
        skip: frozenset[int],
        on_rule: Callable[[int], None],
    ) -> Evaluation:
        """The same results, rule by rule, announcing each rule before it runs, so that a
        supervisor that has to kill a runaway evaluation knows which rule it was."""
        result = Evaluation(records=len(records))
        texts = [_LazyText(record) for record in records]
        for rule in self.rules:
            if rule.index in skip:
                continue
            on_rule(rule.index)
            for record, text in zip(records, texts, strict=True):
                if rule in self._candidates(record.get("eventName")):
                    _apply(rule, record, text, result)
        # Same order as evaluate(): by record, then by rule.
        position = {id(record): n for n, record in enumerate(records)}
        result.matches.sort(key=lambda m: (position[id(m.record)], m.rule_index))
        return result


def _apply(rule: CompiledRule, record: dict[str, Any], text: _LazyText, result: Evaluation) -> None:
    try:
        output = rule.first_output(record, text)
    except RuleRuntimeError as exc:
        count = result.error_counts.get(rule.index, 0)
        result.error_counts[rule.index] = count + 1
        if count < ERROR_SAMPLES_PER_RULE:
            event_id = record.get("eventID")
            result.error_samples.append(
                RuleErrorSample(rule.index, event_id if isinstance(event_id, str) else "", str(exc))
            )
        return
    matched, annotation = interpret(output, record)
    if matched:
        result.matches.append(Match(rule.index, record, annotation))


def _may_match(rule: CompiledRule, event_name: str | None) -> bool:
    allowed = rule.required_event_names
    return allowed is None or event_name in allowed
