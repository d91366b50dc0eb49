"""Sigma 1's rules with memory, read as the Sigma 2 correlation rules that replaced them.

Sigma 1 wrote memory into a rule's condition, after a pipe, with a `timeframe` beside it. Sigma 2
deprecated the pipe for correlation rules, and pySigma 2 refuses to parse it. This module parses
the one expression after the pipe, with Sigma 1.0's grammar (that of its reference converter):

    agg-function([agg-field]) [by group-field] comparison-op value    count, min, max, avg, sum;
                                                                      >, >=, <, <=, =
    near search-id [and [not] search-id]...

and builds, with pySigma, what the rule says in Sigma 2's terms: its search as a plain Sigma rule
(one per event for `near`) and a correlation rule over it, which JqBackend then converts like any
other correlation rule (tattletail.sigma.memory):

- `search | count() [by g] > N` is an `event_count` with `gt: N`; `count(f)` a `value_count` of
  `f` (the specification: "with field name it counts the distinct values in this field");
  `by a,b` groups by both (an extension: Sigma 1 names one field);
- `search | near b [and c]` is a `temporal` correlation of `search`, `b` and `c`, in any order
  (the specification: the other events "in the temporal context of the primary event");
- a `timeframe` and a condition `a and b [and c]` with no pipe is read as a `temporal` of a, b
  and c: Sigma 1 had no other way to say "these events within 5 minutes of each other", and a
  rule that splits its events into searches joined by `and` means them as separate records;
- a `timeframe` beside a condition that is one search or an OR of searches correlates nothing
  (the specification: a time frame "is often a manual setting ... not part of the generated
  query"): the rule converts as a plain rule, with a warning. Beside any other condition
  (`a and not b`, `all of x*`, ...) it is refused: which records it would relate is unclear.

What cannot mean a rule with memory is refused by raising `Refused`, naming the construct.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule

_AGGREGATION: Final = re.compile(
    r"(?P<function>[A-Za-z_]\w*)\s*\(\s*(?P<field>[^\s()]*)\s*\)"
    r"(?:\s+by\s+(?P<group>[^\s<>=!,]+(?:\s*,\s*[^\s<>=!,]+)*))?"
    r"\s*(?P<op>>=|<=|==|!=|>|<|=)\s*(?P<value>[-+]?\d+(?:\.\d+)?)"
)
# Sigma 1's comparison operators (and `==`, `!=`, which some rules write) as Sigma 2's.
_OPERATORS: Final = {
    ">": "gt",
    ">=": "gte",
    "<": "lt",
    "<=": "lte",
    "=": "eq",
    "==": "eq",
    "!=": "neq",
}
_WORDS: Final = re.compile(r"[()]|[^\s()]+")
_SUMMARIES: Final = ("min", "max", "avg", "sum")


class Refused(Exception):
    """A Sigma 1 construct that no rule with memory means (the message names it, and why)."""


@dataclass(frozen=True)
class Expansion:
    """A Sigma 1 rule with memory in Sigma 2's terms."""

    # The rule's searches as plain Sigma rules: one, or one per event a `near` relates.
    searches: tuple[SigmaRule, ...]
    # The correlation over them; None when one record decides (a timeframe that is ignored).
    correlation: SigmaCorrelationRule | None
    # The Sigma 1 construct, as `sigma check` and the table's comments name it.
    construct: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Written:
    """The rule as pySigma read it, and its detection apart from `timeframe` and `condition`."""

    rule: SigmaRule
    document: dict[str, Any]
    detection: dict[str, Any]
    timeframe: str | None


def has_memory(rule: SigmaRule) -> bool:
    """Whether the rule uses Sigma 1's memory: a pipe in its condition, or a `timeframe`."""
    detection = rule.detection
    return "timeframe" in detection.detections or any("|" in c for c in detection.condition)


def expand(rule: SigmaRule) -> Expansion:
    """The rule (see has_memory) as plain Sigma rules and a correlation; Refused otherwise."""
    document = rule.to_dict()
    detection = dict(document["detection"])
    raw_timeframe = detection.pop("timeframe", None)
    timeframe = None if raw_timeframe is None else str(raw_timeframe)
    condition = detection.pop("condition")
    conditions = [condition] if isinstance(condition, str) else [str(c) for c in condition]
    written = _Written(rule, document, detection, timeframe)
    frame = f" (timeframe: {timeframe})" if timeframe else ""
    piped = [c for c in conditions if "|" in c]
    if piped:
        if len(conditions) > 1:
            raise Refused(
                f"`{piped[0]}` among {len(conditions)} conditions{frame}: an aggregation "
                "applies to one condition"
            )
        search, _, expression = conditions[0].partition("|")
        search, expression = search.strip(), " ".join(expression.split())
        if expression.split(" ", 1)[0] == "near":
            return _near(written, search, expression)
        return _aggregation(written, search, expression)
    return _timeframe_only(written, conditions)


def _aggregation(written: _Written, search: str, expression: str) -> Expansion:
    timeframe = written.timeframe
    construct = f"aggregation `{expression}`" + (f" (timeframe: {timeframe})" if timeframe else "")
    found = _AGGREGATION.fullmatch(expression)
    if found is None:
        raise Refused(f"{construct}: not Sigma 1's `count([field]) [by field] > N`")
    function = found["function"]
    if function in _SUMMARIES:
        raise Refused(
            f"{construct}: {function}() of a field's values: rules with memory count matches "
            "(threshold) and distinct values (distinct), they do not compute min, max, avg or sum"
        )
    if function != "count":
        raise Refused(f"{construct}: Sigma 1 has no aggregation function {function}()")
    if timeframe is None:
        raise Refused(
            f"{construct} without a `timeframe`: a count needs the window it counts in "
            "(add `timeframe: 10m`, say)"
        )
    value = found["value"]
    condition: dict[str, Any] = {
        _OPERATORS[found["op"]]: float(value) if "." in value else int(value)
    }
    if found["field"]:
        condition["field"] = found["field"]
    correlation: dict[str, Any] = {
        "type": "value_count" if found["field"] else "event_count",
        "timespan": timeframe,
        "condition": condition,
    }
    if found["group"]:
        correlation["group-by"] = [g.strip() for g in found["group"].split(",")]
    return _build(written, [search], correlation, construct)


def _near(written: _Written, search: str, expression: str) -> Expansion:
    timeframe = written.timeframe
    construct = f"`near` (`{search} | {expression}`" + (
        f", timeframe: {timeframe})" if timeframe else ")"
    )
    words = expression.split()[1:]
    events: list[str] = []
    expect_search = True
    for word in words:
        if expect_search and word == "not":
            raise Refused(
                f"{construct}: `and not`: that an event did not happen near another is known "
                "only once the time has passed, and nothing runs then (a sequence alerts on the "
                "record that completes it)"
            )
        if expect_search:
            events.append(word)
        elif word != "and":
            raise Refused(f"{construct}: not Sigma 1's `near search [and search]...`")
        expect_search = not expect_search
    if expect_search or not events:
        raise Refused(f"{construct}: not Sigma 1's `near search [and search]...`")
    if timeframe is None:
        raise Refused(
            f"{construct} without a `timeframe`: how near the events must be is not said "
            "(add `timeframe: 15m`, say)"
        )
    for event in events:
        if event not in written.detection:
            raise Refused(f"{construct}: the rule has no search `{event}`")
    correlation = {"type": "temporal", "timespan": timeframe}
    return _build(written, [search, *events], correlation, construct)


def _timeframe_only(written: _Written, conditions: list[str]) -> Expansion:
    rule, detection, timeframe = written.rule, written.detection, written.timeframe
    words = [_WORDS.findall(condition) for condition in conditions]
    shown = " / ".join(conditions)
    construct = f"timeframe ({timeframe}) with the condition `{shown}`"
    searches = words[0][0::2]
    joined = words[0][1::2]
    if (
        len(conditions) == 1
        and len(searches) >= 2
        and len(words[0]) % 2 == 1
        and all(word == "and" for word in joined)
        and all(search in detection for search in searches)
        and len(set(searches)) == len(searches)
    ):
        warning = (
            f"`{shown}` with `timeframe: {timeframe}` and no aggregation: read as the events "
            f"of {_listed(searches)} within {timeframe} of each other, in any order (a Sigma "
            "`temporal` correlation): the rule puts them in separate searches, so they are "
            "separate records; one record matching all of them is not enough"
        )
        correlation = {"type": "temporal", "timespan": timeframe}
        return _build(written, searches, correlation, construct, (warning,))
    keywords = {"and", "not", "all"}
    if all(not keywords & {word.lower() for word in condition} for condition in words):
        warning = (
            f"`timeframe: {timeframe}` is ignored: the condition `{shown}` is decided on one "
            "record, so there is nothing for a time frame to relate"
        )
        document = {**written.document, "detection": {**detection, "condition": conditions}}
        try:
            plain = SigmaRule.from_dict(document, collect_errors=True, source=rule.source)
        except SigmaError as exc:
            raise Refused(f"{construct}: {' '.join(str(exc).split())}") from None
        return Expansion((plain,), None, construct, (warning,))
    raise Refused(
        f"{construct} and no aggregation: Sigma 1 gives a time frame a meaning only with an "
        "aggregation or `near`, and this condition does not say which records it would relate "
        "(write it as a Sigma correlation rule)"
    )


def _build(
    written: _Written,
    conditions: list[str],
    correlation: dict[str, Any],
    construct: str,
    warnings: tuple[str, ...] = (),
) -> Expansion:
    """The searches (one Sigma rule per condition) and the correlation rule over them, which
    keeps the rule's metadata (title, id, author, level, tags...) and generates no rule of its
    own for its searches (Sigma 1 had none)."""
    rule, document, detection = written.rule, written.document, written.detection
    key = str(rule.id) if rule.id else " ".join(str(rule.title).split())
    searches = []
    try:
        for number, condition in enumerate(conditions):
            search = {
                k: v for k, v in document.items() if k not in ("id", "name", "related", "fields")
            }
            search["name"] = f"{key}#{number}"
            if len(conditions) > 1:
                search["title"] = f"{rule.title} ({condition})"
            search["detection"] = {**detection, "condition": condition}
            searches.append(SigmaRule.from_dict(search, collect_errors=True, source=rule.source))
        meta = {k: v for k, v in document.items() if k not in ("logsource", "detection")}
        meta["correlation"] = {
            **correlation,
            "rules": [search.name for search in searches],
            "generate": False,
        }
        merged = SigmaCorrelationRule.from_dict(meta, source=rule.source)
    except SigmaError as exc:
        raise Refused(f"{construct}: {' '.join(str(exc).split())}") from None
    return Expansion(tuple(searches), merged, construct, warnings)


def _listed(names: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in names[:-1]) + f" and `{names[-1]}`"
