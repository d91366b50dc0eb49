"""Sigma correlation rules as Tattletail's rules with memory (docs/stateful-rules.md).

JqBackend's correlation methods call `event_count`, `value_count` and `temporal`; each gives a
`Memory` (the stateful field of one `[[rule]]`) or raises SigmaFeatureNotSupportedByBackendError
naming what has no equivalent. Sigma 1's aggregations and `near` arrive here too, as the
correlation rules tattletail.sigma.legacy reads them as.

- `event_count`, `gte: N` (`gt: N`: N + 1): `threshold = { count = N, window = <timespan>,
  group_by }` over the OR of the rules;
- `value_count` with `field: f`: `distinct = { field = ".f", count, window, group_by }`;
- `temporal_ordered`: `sequence = { steps = <the rules>, within = <timespan>, group_by }`;
  `temporal`: the same with `ordered = false`.

What the specification leaves open, and the choices made (docs/sigma.md says the same to users):

- A condition maps when it means "at least N" of whole counts: `gte: N` is `count = ceil(N)`,
  `gt: N` is `count = floor(N) + 1`. `lt`, `lte`, `eq` and `neq` are refused: whether a window
  ends with fewer than N, or exactly N, is known only when it has closed, and nothing runs then
  (a rule with memory alerts on the record that decides).
- A record without a value for a group-by field belongs to no group, as in the SIEMs Sigma
  targets (`stats count by x` drops it): a threshold or distinct rule selects only records that
  have every group-by field (and, for distinct, the counted field); a sequence step without one
  is a group of its own, `{"ungrouped": <its eventID>}`, which no other record joins.
- Group and counted values are the JSON values the record holds, compared exactly (case
  matters, an array is one value), as aggregations on keyword fields do.
- Thresholds and distinct counts use tumbling windows aligned to the epoch, a restriction the
  specification asks a backend to warn about ("static time boundaries"); sequences slide.
- `temporal` needs every rule (its default condition): a condition asking for fewer of them
  ("any 2 of 3"), an extended condition other than an AND of them all, or a rule named twice is
  refused, as are `aliases` that name different fields for different rules (a sequence groups
  every step by the same expressions) and a correlation over a correlation (a rule with memory's
  alerts do not feed another).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sigma.correlations import (
    CorrelationConditionAND,
    SigmaCorrelationCondition,
    SigmaCorrelationConditionOperator,
    SigmaCorrelationRule,
    SigmaExtendedCorrelationCondition,
    SigmaRuleReference,
)
from sigma.exceptions import SigmaFeatureNotSupportedByBackendError
from sigma.rule import SigmaRule

from tattletail.config import MAX_DURATION_SECONDS, MAX_SEQUENCE_STEPS, MAX_STATE_COUNT, duration
from tattletail.sigma import jqtext
from tattletail.sigma.expr import Expr, conjunction, disjunction, field_reads
from tattletail.sigma.fields import split_field

_UNITS: Final = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_OPERATOR_NAMES: Final = {
    SigmaCorrelationConditionOperator.LT: "fewer than",
    SigmaCorrelationConditionOperator.LTE: "at most",
    SigmaCorrelationConditionOperator.EQ: "exactly",
    SigmaCorrelationConditionOperator.NEQ: "any number but",
}


@dataclass(frozen=True)
class Memory:
    """The stateful field of one `[[rule]]`: threshold, distinct or sequence."""

    kind: str
    seconds: int
    window: str  # the duration as the rule writes it
    group_fields: tuple[str, ...]  # Sigma field names (as the pipeline spells them)
    count: int = 0
    field: str | None = None  # distinct: the Sigma field whose values count
    # threshold, distinct: what a record must be to count (the rules ORed, the fields present).
    match: Expr | None = None
    steps: tuple[SigmaRule, ...] = ()  # sequence
    ordered: bool = True

    @property
    def group_by(self) -> tuple[str, ...]:
        """The group_by expressions, one per group-by field (see the module docstring)."""
        values = [jqtext.value_at(split_field(f)) for f in self.group_fields]
        if self.kind != "sequence":
            return tuple(values)
        return tuple(f'first(({value} | values), {{"ungrouped": .eventID}})' for value in values)

    @property
    def value(self) -> str | None:
        return None if self.field is None else jqtext.value_at(split_field(self.field))

    def describe(self) -> str:
        """`threshold 11 in 30m by sourceIPAddress`, `sequence of 2 in 5m, any order`."""
        by = f" by {', '.join(self.group_fields)}" if self.group_fields else ""
        if self.kind == "threshold":
            return f"threshold {self.count} in {self.window}{by}"
        if self.kind == "distinct":
            return f"distinct {self.field} {self.count} in {self.window}{by}"
        order = "in order" if self.ordered else "any order"
        return f"sequence of {len(self.steps)} in {self.window}{by}, {order}"


def event_count(rule: SigmaCorrelationRule) -> Memory:
    """`threshold`: at least N records matching any of the rules, per group and window."""
    count = _at_least(rule.condition, "events")
    seconds, window = _timespan(rule)
    groups = _group_fields(rule)
    match = _matching(rule, groups)
    return Memory("threshold", seconds, window, groups, count, match=match)


def value_count(rule: SigmaCorrelationRule) -> Memory:
    """`distinct`: at least N distinct values of the field, per group and window."""
    condition = rule.condition
    assert isinstance(condition, SigmaCorrelationCondition)  # pySigma's check for value_count
    field = condition.fieldref
    if not isinstance(field, str):
        raise _refused(f"value_count of several fields ({', '.join(field or [])}): one is counted")
    count = _at_least(condition, f"distinct values of {field}")
    seconds, window = _timespan(rule)
    groups = _group_fields(rule)
    match = _matching(rule, (*groups, field))
    return Memory("distinct", seconds, window, groups, count, field=field, match=match)


def temporal(rule: SigmaCorrelationRule, ordered: bool) -> Memory:
    """`sequence`: every rule matches for one group within the timespan (in order, or not)."""
    steps = _rules(rule)
    kind = "temporal_ordered" if ordered else "temporal"
    if not 2 <= len(steps) <= MAX_SEQUENCE_STEPS:
        raise _refused(f"{kind} of {len(steps)} rules: a sequence has 2 to {MAX_SEQUENCE_STEPS}")
    if len({id(step) for step in steps}) < len(steps):
        raise _refused(
            f"{kind} naming a rule twice: the specification counts the different rules that match"
        )
    condition = rule.condition
    if isinstance(condition, SigmaExtendedCorrelationCondition):
        if not _all_of(condition.parsed, {ref.reference for ref in rule.referenced_rules}):
            raise _refused(
                f"{kind} condition `{condition.expression}`: a sequence needs every step "
                "(only an AND of all the rules maps)"
            )
    else:
        needed = _at_least(condition, "rules")
        if needed != len(steps):
            raise _refused(
                f"{kind} condition `{_written(condition)}` over {len(steps)} rules: "
                + (
                    f"any {needed} of them; a sequence needs every step"
                    if needed < len(steps)
                    else "more rules than it names: it never holds"
                )
            )
    seconds, window = _timespan(rule)
    return Memory(
        "sequence", seconds, window, _group_fields(rule), steps=tuple(steps), ordered=ordered
    )


def _rules(rule: SigmaCorrelationRule) -> list[SigmaRule]:
    found = []
    for reference in rule.referenced_rules:
        referenced = reference.rule
        if isinstance(referenced, SigmaCorrelationRule):
            raise _refused(
                f"a correlation of the correlation rule {_name(reference)}: the alerts of a rule "
                "with memory do not feed another"
            )
        found.append(referenced)
    return found


def _matching(rule: SigmaCorrelationRule, present: Sequence[str]) -> Expr:
    """A record counts when it matches one of the rules and has every field in `present`."""
    searches = [expr for step in _rules(rule) for expr in step.get_conversion_result()]
    has = []
    for name in dict.fromkeys(present):
        path = split_field(name)
        has.append(Expr(f"{jqtext.value_at(path)} != null", field_reads(path)))
    return conjunction([disjunction(searches), *has])


def _at_least(condition: object, what: str) -> int:
    """The whole count that `gte`/`gt` means; other operators are refused."""
    if not isinstance(condition, SigmaCorrelationCondition):
        raise _refused("an extended condition on a count")
    operator, number = condition.op, condition.count
    if operator is SigmaCorrelationConditionOperator.GTE:
        needed = math.ceil(number)
    elif operator is SigmaCorrelationConditionOperator.GT:
        needed = math.floor(number) + 1
    else:
        raise _refused(
            f"condition `{_written(condition)}` ({_OPERATOR_NAMES[operator]} {number} {what} in "
            "a window): known only once the window has closed, and nothing runs then (a rule "
            "with memory alerts on the record that decides)"
        )
    if needed < 1:
        raise _refused(
            f"condition `{_written(condition)}`: every group meets it, even one with no event: "
            "there is no record to alert on"
        )
    if needed > MAX_STATE_COUNT:
        raise _refused(
            f"condition `{_written(condition)}`: a rule with memory counts up to {MAX_STATE_COUNT}"
        )
    return needed


def _timespan(rule: SigmaCorrelationRule) -> tuple[int, str]:
    seconds = rule.timespan.seconds
    if not 1 <= seconds <= MAX_DURATION_SECONDS:
        raise _refused(f"timespan {rule.timespan.spec}: windows are at most 7 days")
    written = duration(rule.timespan.spec)
    if written is not None and written.seconds == seconds:
        return seconds, written.text
    return seconds, _duration_text(seconds)


def _duration_text(seconds: int) -> str:
    """`7d`, `90m`: the largest unit that divides the duration."""
    for unit, size in _UNITS:
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise AssertionError("a second divides every whole number of seconds")


def _group_fields(rule: SigmaCorrelationRule) -> tuple[str, ...]:
    """The group-by fields, aliases resolved (when every rule's field is the same)."""
    fields = []
    for name in rule.group_by or ():
        alias = rule.aliases.aliases.get(name)
        if alias is None:
            fields.append(name)
            continue
        by_rule = {ref.reference: field for ref, field in alias.mapping.items()}
        mapped = {by_rule.get(ref.reference) for ref in rule.referenced_rules}
        if len(mapped) != 1 or None in mapped:
            raise _refused(
                f"alias `{name}` names different fields in different rules: a rule with memory "
                "groups every record by the same expressions"
            )
        fields.append(str(mapped.pop()))
    return tuple(dict.fromkeys(fields))


def _all_of(node: object, names: set[str]) -> bool:
    """Whether an extended condition is an AND of every rule (each once)."""
    seen: list[str] = []

    def walk(item: object) -> bool:
        if isinstance(item, SigmaRuleReference):
            seen.append(item.reference)
            return True
        return isinstance(item, CorrelationConditionAND) and all(walk(a) for a in item.args)

    return walk(node) and sorted(seen) == sorted(names)


def _written(condition: SigmaCorrelationCondition) -> str:
    return f"{condition.op.name.lower()}: {condition.count}"


def _name(reference: SigmaRuleReference) -> str:
    title = getattr(reference.rule, "title", None)
    return f"'{title}'" if title else f"`{reference.reference}`"


def _refused(message: str) -> SigmaFeatureNotSupportedByBackendError:
    return SigmaFeatureNotSupportedByBackendError(message)
