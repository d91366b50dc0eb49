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

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from operator import itemgetter
from typing import Any

import jq

from tattletail.json_input import depth_allowed
from tattletail.json_output import dumps
from tattletail.native import (
    NO_OUTPUT,
    UNKEYED,
    Fallback,
    NativeProgram,
    compile_native,
    equal_to_record,
)
from tattletail.records import RecordFailure, RecordJSON
from tattletail.rule_index import (
    IDENTITY,
    INDEX_PATHS,
    UNKNOWN,
    Candidate,
    IndexKey,
    Plan,
    index_key_function,
    on_index,
    plan_function,
    slow_key,
)

# Per rule and per object, how many runtime errors are kept with their message (all are counted).
ERROR_SAMPLES_PER_RULE = 5
# Per object, how many record failures are kept with their message (all are counted).
FAILURE_SAMPLES = 20


class RuleRuntimeError(Exception):
    """libjq raised while evaluating a rule on a record."""


@dataclass(frozen=True)
class Suppression:
    """A jq expression that keeps a rule's match from alerting when its first output is truthy.

    `expires`: a date (the suppression applies through that day, UTC), an aware datetime (it
    applies until that instant), or None (it never expires).
    """

    match: str
    expires: date | None = None
    reason: str = ""

    def active(self, now: datetime) -> bool:
        """Whether it still applies at `now` (an aware datetime)."""
        if self.expires is None:
            return True
        if isinstance(self.expires, datetime):
            return now < self.expires
        return now.astimezone(UTC).date() <= self.expires


@dataclass(frozen=True)
class RuleSource:
    """What a worker needs to evaluate one rule: picklable, no compiled state."""

    name: str
    jq_match: str
    enabled: bool = True
    title: str | None = None
    suppressions: tuple[Suppression, ...] = ()
    # Matches feed a rule with memory (tattletail.state): each carries its eventTime and the
    # first outputs of `keys` (group_by, field, key: jq expressions), evaluated here, in the
    # worker, so the main process runs no jq.
    stateful: bool = False
    keys: tuple[str, ...] = ()


def interpret(
    first_output: Any, record: dict[str, Any], output_is_record: Callable[[], bool]
) -> tuple[bool, Any]:
    """(matched, annotation) for a rule's first output on a record: the matching contract.

    "Equal to the record" is jq's equality (`true` is not `1`, numbers as libjq compares them);
    where the values in hand cannot tell (see native.equal_to_record), `output_is_record` asks
    libjq.
    """
    if first_output is NO_OUTPUT or first_output is None or first_output is False:
        return False, None
    if first_output is record:
        return True, None
    if first_output.__class__ is dict:
        same = equal_to_record(first_output, record)
        if same is None:
            same = output_is_record()
        if same:
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
class KeyFailure:
    """A state key whose expression raised on the record (the error is counted and sampled
    as the rule's): the rules with memory that need it leave the match out."""

    message: str


@dataclass(frozen=True)
class Match:
    rule_index: int
    # A dict where the rules ran; a RecordJSON once it has crossed to the main process.
    record: Mapping[str, Any]
    annotation: Any
    # The first output of the rule's `title` expression, when it is a string.
    title: str | None = None
    # For a stateful source (RuleSource.stateful): the first output of each of its `keys`
    # (None for no output, a KeyFailure for an error), and the record's eventTime.
    keys: tuple[Any, ...] = ()
    event_time: str | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # Matches cross from a worker to the main process as JSON text: orjson writes a record
        # several times faster than pickle walks its dicts, and the main process decodes it
        # only if something reads a field (see RecordJSON). One RecordJSON shared by several
        # matches crosses once (pickle keeps one copy of an object it meets twice).
        record = self.record
        if not isinstance(record, RecordJSON):
            record = record_json(record)
        fields = (self.rule_index, record, self.annotation, self.title, self.keys, self.event_time)
        return (Match, fields)


def record_json(record: Mapping[str, Any], text: bytes | memoryview | None = None) -> RecordJSON:
    """A record as the JSON text that crosses to the main process: its own text where the
    file gave one (numbers as written), else as written by `dumps`."""
    event_id, event_time = record.get("eventID"), record.get("eventTime")
    return RecordJSON(
        dumps(record) if text is None else bytes(text),
        event_id if isinstance(event_id, str) else "",
        event_time if isinstance(event_time, str) else "",
    )


@dataclass(frozen=True)
class QuarantinedRule:
    """A rule taken out of evaluation for the life of the worker pool: `reason` is a short
    label (`overrun`, `slow`, `crashed`), `detail` says what it did."""

    rule_index: int
    reason: str
    detail: str


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
    # Matches a suppression held back, by rule: counted, never sent between processes.
    suppressed_counts: dict[int, int] = field(default_factory=dict)
    error_counts: dict[int, int] = field(default_factory=dict)
    error_samples: list[RuleErrorSample] = field(default_factory=list)

    # Rules quarantined while this object was evaluated (see tattletail.workers).
    quarantined: list[QuarantinedRule] = field(default_factory=list)
    newest_event_time: str | None = None
    oldest_event_time: str | None = None
    seconds: float = 0.0
    # CPU seconds each rule took, when the batch was evaluated rule by rule.
    rule_seconds: dict[int, float] = field(default_factory=dict)
    # Entries that are not JSON objects, skipped; records that could not be read or evaluated.
    records_invalid: int = 0
    records_failed: int = 0
    failure_samples: list[RecordFailure] = field(default_factory=list)
    # Records left out by an eventTime window (`scan --since/--until`), not in `records`.
    out_of_range: int = 0

    def add_failure(self, failure: RecordFailure) -> None:
        self.records_failed += 1
        if len(self.failure_samples) < FAILURE_SAMPLES:
            self.failure_samples.append(failure)

    @property
    def rule_errors(self) -> int:
        return sum(self.error_counts.values())

    def merge(self, other: Evaluation) -> None:
        self.records += other.records
        self.out_of_range += other.out_of_range
        self.quarantined.extend(other.quarantined)
        self.seconds += other.seconds
        self.records_invalid += other.records_invalid
        self.records_failed += other.records_failed
        room = FAILURE_SAMPLES - len(self.failure_samples)
        self.failure_samples.extend(other.failure_samples[: max(0, room)])
        if other.newest_event_time is not None and (
            self.newest_event_time is None or other.newest_event_time > self.newest_event_time
        ):
            self.newest_event_time = other.newest_event_time
        if other.oldest_event_time is not None and (
            self.oldest_event_time is None or other.oldest_event_time < self.oldest_event_time
        ):
            self.oldest_event_time = other.oldest_event_time
        self.matches.extend(other.matches)
        for rule_index, count in other.suppressed_counts.items():
            self.suppressed_counts[rule_index] = self.suppressed_counts.get(rule_index, 0) + count
        for rule_index, count in other.error_counts.items():
            kept = sum(1 for s in self.error_samples if s.rule_index == rule_index)
            self.error_counts[rule_index] = self.error_counts.get(rule_index, 0) + count
            samples = [s for s in other.error_samples if s.rule_index == rule_index]
            self.error_samples.extend(samples[: max(0, ERROR_SAMPLES_PER_RULE - kept)])


class _Program:
    """One jq program, compiled for libjq and, where its shape allows, for the native fast path.

    When the fast path has to defer to libjq for a record but proves which record paths decide
    the program's first output (`reads`), libjq's answer is memoised on the values at those
    paths, so a rule the fast path cannot finish runs libjq once per distinct value instead of
    once per record. (Consulting the memo before the fast path would cost more than it saves:
    native evaluation stops at the first decisive field.)

    The program's gate (see `tattletail.native`, "Gate") is what RuleSet's index decides once
    per index key when the gate reads indexed fields only (`key_gate`). A gate that reads other
    fields (`userAgent`, `userIdentity.sessionContext...`) is decided here, once per distinct
    value of those fields, before the rest of the program runs.
    """

    def __init__(self, source: str, indexed: bool = False, validated: bool = False) -> None:
        self._source = source
        native: NativeProgram | None = compile_native(source)
        # A validated program (its config compiled it with libjq already) is compiled again
        # only when a record needs libjq: the native path answers for most, and each compile
        # costs a worker about 2 ms at every cold start.
        self._libjq: Any = None
        self._equality: Any = None  # see output_is_record()
        if not validated or native is None or not native.evaluable:
            self._libjq = jq.compile(source)
        required = dict(native.required or {}) if native is not None else {}
        # With `indexed`, RuleSet's index checks the requirements on INDEX_PATHS once per record
        # (for every rule at once); the rest are checked here, per call.
        self.indexed: dict[tuple[str, ...], frozenset[str]] = {}
        self.key_gate: NativeProgram | None = None
        gate: NativeProgram | None = None
        if native is not None:
            if native.evaluable and native.reads is not None and on_index(native.reads):
                gate = native  # decided entirely by indexed fields
            elif native.gate is not None:
                gate = native.gate
            elif native.evaluable and native.reads is not None:
                # `select(c)` alone, on other fields (a converted Sigma rule on userAgent): its
                # own gate, decided once per distinct value it reads; a match runs it again.
                gate = native
        if indexed:
            for path in list(required):
                if path in INDEX_PATHS:
                    self.indexed[path] = required.pop(path)
            if gate is not None and gate.reads is not None and on_index(gate.reads):
                self.key_gate, gate = gate, None
        # The whole program is its key gate: its output is the same for every record with the
        # same index key, so the index can keep the output itself.
        self.decided_by_key = self.key_gate is not None and self.key_gate is native
        self._other_required = tuple(required.items())
        self._gate = gate
        # The hot loop decides a gate with these two alone when it can: see gate_opens().
        self.gate_value = gate.memo_value if gate is not None else None
        self.gate_memo: dict[Any, bool] = {}
        self.gate_path = (
            gate.reads[0] if gate is not None and gate.reads and len(gate.reads) == 1 else None
        )
        self._native = native if native is not None and native.evaluable else None
        self._memoised = self._native is not None and self._native.reads is not None
        self._identity_output = self._native is not None and self._native.identity_output
        self._memo: dict[tuple[Any, ...], Any] = {}

    @property
    def program(self) -> Any:
        """The program compiled by libjq."""
        if self._libjq is None:
            self._libjq = jq.compile(self._source)
        return self._libjq

    def output_is_record(self, record_text: _LazyText) -> bool:
        """libjq's `first(program) == .` on a record the program has a first output for."""
        if self._equality is None:
            try:
                self._equality = jq.compile(
                    f". as $__tattletail_record | first(({self._source}\n)) == $__tattletail_record"
                )
            except ValueError:
                self._equality = False  # cannot be nested (module directives)
        if self._equality is False:
            return True
        try:
            return libjq_first_output(self._equality, record_text.get()) is True
        except RuleRuntimeError:
            return False

    def first_output(self, record: dict[str, Any], record_text: _LazyText) -> Any:
        for path, allowed in self._other_required:
            value: Any = record
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if not isinstance(value, str) or value not in allowed:
                # Provably no output and no error: the prefilter's contract.
                return NO_OUTPUT
        native = self._native
        if native is None:
            return libjq_first_output(self.program, record_text.get())
        try:
            return native.first_output(record)
        except Fallback:
            pass
        if not self._memoised:
            return libjq_first_output(self.program, record_text.get())
        key = native.memo_key(record)
        if key is None:
            return libjq_first_output(self.program, record_text.get())
        known = self._memo.get(key, UNKNOWN)
        if known is UNKNOWN:
            known = self._libjq_outcome(record_text)
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[key] = known
        if known is IDENTITY:
            return record
        if isinstance(known, _Error):
            raise RuleRuntimeError(known.message)
        return known

    def gate_opens(self, record: dict[str, Any]) -> bool:
        """False only when the gate certainly has no output on the record, so neither has the
        program; always True without a gate. Call it before first_output()."""
        value_of = self.gate_value
        if value_of is None:
            return True
        value = value_of(record)
        known = self.gate_memo.get(value)
        if known is not None:
            return known
        assert self._gate is not None
        opens = gate_opens(self._gate, record)
        if opens is not None and value is not UNKEYED:
            if len(self.gate_memo) >= _MEMO_LIMIT:
                self.gate_memo.clear()
            self.gate_memo[value] = opens
        return opens is not False

    def _libjq_outcome(self, record_text: _LazyText) -> Any:
        """libjq's answer in a form that holds for every record with the same memo key."""
        try:
            output = libjq_first_output(self.program, record_text.get())
        except RuleRuntimeError as exc:
            # Keep the message only: the exception's traceback holds libjq's iterator.
            return _Error(str(exc))
        if self._identity_output and output is not NO_OUTPUT and output is not None:
            # libjq hands back a copy of the record; the program can only output the record.
            return output if output is False else IDENTITY
        return output


def gate_opens(gate: NativeProgram, record: dict[str, Any]) -> bool | None:
    """Whether a gate lets a record through: False when it has no output, null or false (no
    match can follow), None when the fast path is unsure."""
    try:
        output = gate.first_output(record)
    except Fallback:
        return None
    return not (output is NO_OUTPUT or output is None or output is False)


# Distinct index keys kept; past it the table restarts (it is only a cache).
_INDEX_LIMIT = 65536

_UNDECIDED = object()


def _nothing(key: Any) -> tuple[()]:
    return ()


@dataclass(frozen=True)
class _Error:
    message: str


# Distinct outcomes kept per program; a flood of unique values just restarts the memo.
_MEMO_LIMIT = 4096


class CompiledRule:
    """One rule: its jq_match, and its title and suppressions, which run only on its matches."""

    def __init__(self, index: int, source: RuleSource, validated: bool = False) -> None:
        self.index = index
        self.name = source.name
        match = _Program(source.jq_match, indexed=True, validated=validated)
        # Checked once per index key by RuleSet's index; the rest by the program.
        self.indexed = match.indexed
        self.key_gate = match.key_gate
        self.decided_by_key = match.decided_by_key
        self.gate_value = match.gate_value
        self.gate_memo = match.gate_memo
        self.gate_opens = match.gate_opens
        self.gate_path = match.gate_path
        # Bound once: the per-record hot path pays no extra call for the indirection.
        self.first_output: Callable[[dict[str, Any], _LazyText], Any] = match.first_output
        self.output_is_record = match.output_is_record
        self.title = (
            _Program(source.title, validated=validated) if source.title is not None else None
        )
        self.suppressions = tuple(
            (s, _Program(s.match, validated=validated)) for s in source.suppressions
        )
        self.stateful = source.stateful
        self.keys = tuple((key, _Program(key, validated=validated)) for key in source.keys)


class Originals:
    """The JSON texts a slice of records was decoded from, found by record when libjq needs
    one: libjq then reads the record as the file wrote it (an integer beyond 64 bits with all
    its digits, where orjson gave a double), and nothing is written again."""

    __slots__ = ("records", "texts")

    def __init__(
        self, records: Sequence[dict[str, Any]], texts: Sequence[bytes | memoryview | None]
    ) -> None:
        self.records = records
        self.texts = texts

    def text_of(self, record: dict[str, Any]) -> bytes | memoryview | None:
        # A search, not a table: it runs only for the few records that reach libjq.
        for candidate, text in zip(self.records, self.texts, strict=True):
            if candidate is record:
                return text
        return None


class _LazyText:
    """A record's JSON text, made at most once and only if some rule needs libjq."""

    __slots__ = ("_originals", "_raw", "_record", "_text")

    def __init__(
        self,
        record: dict[str, Any],
        originals: Originals | None = None,
        raw: bytes | memoryview | None = None,
    ) -> None:
        self._record = record
        self._originals = originals
        self._raw = raw
        self._text: str | None = None

    def get(self) -> str:
        if self._text is None:
            raw = self._raw
            if raw is None and self._originals is not None:
                raw = self._originals.text_of(self._record)
            # A text the lenient reader read may hold bytes that are not UTF-8: libjq reads
            # each as U+FFFD, as here.
            text = dumps(self._record) if raw is None else bytes(raw)
            self._text = text.decode("utf-8", "replace")
        return self._text


def _utc_now() -> datetime:
    return datetime.now(UTC)


class RuleSet:
    """Rules compiled once per process, with an index that skips rules a record cannot match.

    The index (see tattletail.rule_index) maps a record's values at INDEX_PATHS (those some
    rule uses) to the rules that may match it: a rule drops out for a key when its prefilter
    rules the values out, or when its key gate has no output on them (decided on the first
    record with that key, and only when every value the gate reads is a string or null, so
    every record with the key gets the same answer). The rules left run as the key's plan.

    A disabled rule keeps its index (matches name rules by their position in the config) but
    is neither compiled nor evaluated. `now` decides which suppressions have expired; it is
    read once per batch. `validated`: every program has compiled with libjq before (a loaded
    Config's have), so libjq compiles each again only when a record needs it.
    """

    def __init__(
        self,
        sources: Sequence[RuleSource],
        now: Callable[[], datetime] = _utc_now,
        validated: bool = False,
    ) -> None:
        self.rules = [
            CompiledRule(index, source, validated)
            for index, source in enumerate(sources)
            if source.enabled
        ]
        self._now = now
        # The indexed paths each rule's decision depends on: its prefilter's and its key gate's.
        reads = {
            rule: {*rule.indexed, *(rule.key_gate.reads or () if rule.key_gate else ())}
            for rule in self.rules
        }
        used = {("eventName",)}.union(*reads.values())
        self._paths = tuple(path for path in INDEX_PATHS if path in used)
        self._index_key = index_key_function(self._paths)
        # Per rule: the key's values it depends on, and its decisions (see _candidates).
        self._deciders: list[tuple[CompiledRule, Callable[[IndexKey], Any], dict[Any, Any]]] = []
        for rule in self.rules:
            positions = [n for n, path in enumerate(self._paths) if path in reads[rule]]
            project = itemgetter(*positions) if positions else _nothing
            self._deciders.append((rule, project, {}))
        self._candidates_by_key: dict[IndexKey, tuple[Candidate, ...]] = {}
        self._plans_by_key: dict[IndexKey, Plan | None] = {}
        # The same without the rules skipped (quarantined), for the last set skipped.
        self._skipped: frozenset[int] = frozenset()
        self._plans_by_key_skipping: dict[IndexKey, Plan | None] = {}
        # Plans by what they run: keys with the same candidates share one.
        self._plans: dict[tuple[Any, ...], Plan] = {}

    def _key(self, record: dict[str, Any]) -> IndexKey:
        try:
            key = self._index_key(record)
            hash(key)
        except TypeError:
            key = slow_key(record, self._paths)
        return key

    def _candidates_for(self, record: dict[str, Any]) -> tuple[Candidate, ...]:
        return self._candidates_at(self._key(record), record)

    def _candidates_at(self, key: IndexKey, record: dict[str, Any]) -> tuple[Candidate, ...]:
        found = self._candidates_by_key.get(key)
        return found if found is not None else self._candidates(key, record)

    def _candidates(self, key: IndexKey, record: dict[str, Any]) -> tuple[Candidate, ...]:
        """The rules that may match a record with this key, in config order; `record` is the
        first record seen with it. Each rule's decision depends only on the key's values at
        the paths it reads, so it is made once per distinct value of those (a new key is
        mostly lookups)."""
        found = []
        for rule, project, decisions in self._deciders:
            values = project(key)
            candidate = decisions.get(values, _UNDECIDED)
            if candidate is _UNDECIDED:
                candidate = decisions[values] = self._decide(rule, key, record)
            if candidate is not None:
                found.append(candidate)
        if len(self._candidates_by_key) >= _INDEX_LIMIT:
            self._candidates_by_key.clear()
            self._plans_by_key.clear()
            self._plans_by_key_skipping.clear()
            self._plans.clear()
            for _, _, decisions in self._deciders:
                decisions.clear()
        self._candidates_by_key[key] = candidates = tuple(found)
        return candidates

    def _decide(
        self, rule: CompiledRule, key: IndexKey, record: dict[str, Any]
    ) -> Candidate | None:
        """The rule as a candidate for records with this key, or None when it cannot match."""
        values = dict(zip(self._paths, key, strict=True))
        if not all(values[path] in allowed for path, allowed in rule.indexed.items()):
            return None
        known: Any = UNKNOWN
        gate = rule.key_gate
        if (
            gate is not None
            and gate.reads is not None
            and all(values[path] is None or type(values[path]) is str for path in gate.reads)
        ):
            try:
                output = gate.first_output(record)
            except Fallback:
                output = UNKNOWN
            if output is NO_OUTPUT or output is None or output is False:
                return None
            if rule.decided_by_key:
                if output is record:
                    known = IDENTITY
                elif output is not UNKNOWN and isinstance(output, str | int | float):
                    known = output
        return Candidate(
            rule,
            rule.first_output,
            rule.gate_value,
            rule.gate_memo,
            rule.gate_opens,
            rule.gate_path,
            known,
        )

    def _plan_for(
        self, record: dict[str, Any], skip: frozenset[int], plans: dict[IndexKey, Plan | None]
    ) -> Plan | None:
        """The plan for a record's key (None: no candidate), made and kept in `plans`."""
        key = self._key(record)
        candidates = self._candidates_at(key, record)
        if skip:
            candidates = tuple(c for c in candidates if c.rule.index not in skip)
        plan = None
        if candidates:
            # The known output's type too: a plan for True must not serve 1.
            signature = tuple((c.rule.index, type(c.known), c.known) for c in candidates)
            plan = self._plans.get(signature)
            if plan is None:
                plan = self._plans[signature] = plan_function(candidates, _PLAN_HELPERS)
        plans[key] = plan
        return plan

    def evaluate(
        self,
        records: Sequence[dict[str, Any]],
        skip: frozenset[int] = frozenset(),
        texts: Sequence[bytes | memoryview | None] | None = None,
    ) -> Evaluation:
        """Every rule on every record, record by record (the fast order); the rules in `skip`
        (by index) are left out. `texts`: each record's own JSON text, where known."""
        result = Evaluation(records=len(records))
        now = self._now()
        index_key = self._index_key
        originals = Originals(records, texts) if texts is not None else None
        plans = self._plans_by_key
        if skip:
            # Quarantined rules stay so: plans without them are kept until the set changes.
            if skip != self._skipped:
                self._skipped, self._plans_by_key_skipping = skip, {}
            plans = self._plans_by_key_skipping
        # The hot loop: one lookup and at most one call per record.
        for record in records:
            try:
                plan = plans[index_key(record)]
            except (KeyError, TypeError):
                plan = self._plan_for(record, skip, plans)
            if plan is not None:
                plan(record, result, now, originals)
        return result

    def evaluate_each(
        self,
        records: Sequence[dict[str, Any]],
        skip: frozenset[int] = frozenset(),
        texts: Sequence[bytes | memoryview | None] | None = None,
    ) -> Evaluation:
        """The same results, for records whose fast evaluation raised something other than a
        jq error (Python's recursion limit on a record nested deeper than it allows, memory):
        one record and one rule at a time, nesting allowed as deep as libjq reads. A rule that
        still raises on a record is that record's failure, naming the rule; its other rules
        and every other record are evaluated."""
        result = Evaluation(records=len(records))
        now = self._now()
        with depth_allowed():
            for record, raw in zip(records, texts or [None] * len(records), strict=True):
                text = _LazyText(record, raw=raw)
                for candidate in self._candidates_for(record):
                    if candidate.rule.index not in skip:
                        _apply_contained(candidate.rule, record, text, result, now)
        return result

    def evaluate_rule_by_rule(
        self,
        records: Sequence[dict[str, Any]],
        skip: frozenset[int],
        on_rule: Callable[[int], None],
        texts: Sequence[bytes | memoryview | None] | None = None,
    ) -> Evaluation:
        """The same results, rule by rule, announcing each rule before it runs, so that a
        supervisor that has to kill a runaway evaluation knows which rule it was."""
        result = Evaluation(records=len(records))
        now = self._now()
        raws = texts if texts is not None else [None] * len(records)
        lazy = [_LazyText(record, raw=raw) for record, raw in zip(records, raws, strict=True)]
        candidates = [
            frozenset(id(candidate[0]) for candidate in self._candidates_for(record))
            for record in records
        ]
        for rule in self.rules:
            if rule.index in skip:
                continue
            on_rule(rule.index)
            started = time.process_time()
            with depth_allowed():
                for record, text, allowed in zip(records, lazy, candidates, strict=True):
                    if id(rule) in allowed:
                        _apply_contained(rule, record, text, result, now)
            result.rule_seconds[rule.index] = time.process_time() - started
        # Same order as evaluate(): by record, then by rule.
        position = {id(record): n for n, record in enumerate(records)}
        result.matches.sort(key=lambda m: (position[id(m.record)], m.rule_index))
        return result


def _apply(
    rule: CompiledRule,
    record: dict[str, Any],
    text: _LazyText,
    result: Evaluation,
    now: datetime,
) -> None:
    if not rule.gate_opens(record):
        return
    try:
        output = rule.first_output(record, text)
    except RuleRuntimeError as exc:
        _count_error(rule, record, str(exc), result)
        return
    _record_match(rule, record, text, output, result, now)


def _apply_contained(
    rule: CompiledRule,
    record: dict[str, Any],
    text: _LazyText,
    result: Evaluation,
    now: datetime,
) -> None:
    """_apply, where anything raised but a jq error is the record's failure, naming the rule."""
    try:
        _apply(rule, record, text, result, now)
    except Exception as exc:
        event_id = record.get("eventID")
        message = f"rule {rule.name!r}: {type(exc).__name__}: {exc}"
        result.add_failure(
            RecordFailure(
                event_id if isinstance(event_id, str) else "", "not_evaluated", message[:500]
            )
        )


def _record_match(
    rule: CompiledRule,
    record: dict[str, Any],
    text: _LazyText,
    output: Any,
    result: Evaluation,
    now: datetime,
) -> None:
    """Interpret a rule's first output on a record and keep the match, unless suppressed."""
    matched, annotation = interpret(output, record, lambda: rule.output_is_record(text))
    if not matched:
        return
    if rule.suppressions and _suppressed(rule, record, text, result, now):
        result.suppressed_counts[rule.index] = result.suppressed_counts.get(rule.index, 0) + 1
        return
    title = None
    if rule.title is not None:
        try:
            output = rule.title.first_output(record, text)
        except RuleRuntimeError as exc:
            # The alert still goes out, under the rule's name; the broken title is reported.
            _count_error(rule, record, f"title: {exc}", result)
        else:
            title = output if isinstance(output, str) else None
    if not rule.stateful:
        result.matches.append(Match(rule.index, record, annotation, title))
        return
    keys = tuple(
        _key_value(rule, source, program, record, text, result) for source, program in rule.keys
    )
    event_time = record.get("eventTime")
    result.matches.append(
        Match(
            rule.index,
            record,
            annotation,
            title,
            keys,
            event_time if isinstance(event_time, str) else None,
        )
    )


def _key_value(
    rule: CompiledRule,
    source: str,
    program: _Program,
    record: dict[str, Any],
    text: _LazyText,
    result: Evaluation,
) -> Any:
    """A state key's first output on a matched record: None for no output, a KeyFailure
    (counted as the rule's error) when it raises."""
    try:
        output = program.first_output(record, text)
    except RuleRuntimeError as exc:
        _count_error(rule, record, f"state key {source}: {exc}", result)
        return KeyFailure(str(exc))
    return None if output is NO_OUTPUT else output


def _suppressed(
    rule: CompiledRule, record: dict[str, Any], text: _LazyText, result: Evaluation, now: datetime
) -> bool:
    """Whether an active suppression's first output on the record is truthy. One that raises
    does not suppress: an alert too many is better than one silently lost."""
    for suppression, program in rule.suppressions:
        if not suppression.active(now):
            continue
        try:
            output = program.first_output(record, text)
        except RuleRuntimeError as exc:
            _count_error(rule, record, f"suppress: {exc}", result)
            continue
        if output is not NO_OUTPUT and output is not None and output is not False:
            return True
    return False


def _count_error(
    rule: CompiledRule, record: dict[str, Any], message: str, result: Evaluation
) -> None:
    count = result.error_counts.get(rule.index, 0)
    result.error_counts[rule.index] = count + 1
    if count < ERROR_SAMPLES_PER_RULE:
        event_id = record.get("eventID")
        result.error_samples.append(
            RuleErrorSample(rule.index, event_id if isinstance(event_id, str) else "", message)
        )


# What every plan (tattletail.rule_index.plan_function) calls.
_PLAN_HELPERS = {
    "NO_OUTPUT": NO_OUTPUT,
    "RuleRuntimeError": RuleRuntimeError,
    "LazyText": _LazyText,
    "record_match": _record_match,
    "count_error": _count_error,
}
