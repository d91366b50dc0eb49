"""The rule index: which rules a record can match, and the code that runs them on it.

RuleSet (tattletail.rules) looks each record up by its values at a few low-cardinality paths
(its index key). What the key leads to is decided once, on the first record with that key: the
rules whose prefilter and key gate let such a record through, in config order (`Candidate`s).
Those candidates then run as one *plan*: a Python function generated for that exact tuple of
candidates, with each rule's memo gate and known output written inline, so the per-record cost
is a dict lookup and one call instead of a loop over rule objects. Plans are shared by every key
with the same candidates.

Code is generated only from the shapes below and from literal path names (written with
repr()); everything a plan calls is passed in its namespace.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from tattletail.native import UNKEYED

# Record paths the index may key on: each takes few distinct values in CloudTrail, so the
# table of candidate rules per combination stays small.
INDEX_PATHS: tuple[tuple[str, ...], ...] = (
    ("eventName",),
    ("eventSource",),
    ("errorCode",),
    ("eventType",),
    ("eventCategory",),
    ("awsRegion",),
    ("recipientAccountId",),
    ("userIdentity", "type"),
    # How an instance role's credentials were delivered (IMDS version): set on every call made
    # with EC2 instance credentials, the mark of detections of stolen instance credentials.
    ("userIdentity", "sessionContext", "ec2RoleDelivery"),
)

# An index key's part for a value jq cannot read a field of (a string where an object is
# expected): never equal to a value a record holds.
NOT_AN_OBJECT = object()
# An output not known (Candidate.known; a memo's miss in tattletail.rules).
UNKNOWN = object()
# An output that is the record itself (Candidate.known; a remembered libjq outcome).
IDENTITY = object()

IndexKey = tuple[Any, ...]
Plan = Callable[[dict[str, Any], Any, Any, Any], None]


class Candidate(NamedTuple):
    """A rule as a key's plan runs it."""

    rule: Any  # tattletail.rules.CompiledRule
    first_output: Callable[[dict[str, Any], Any], Any]
    # The memo gate, when the rule has one: the value it is decided on, the decisions so far,
    # and the call that decides (and remembers) a new value.
    gate_value: Callable[[dict[str, Any]], Any] | None
    gate_memo: dict[Any, bool]
    gate_opens: Callable[[dict[str, Any]], bool]
    # The gate's one path, when it reads one: its walk is then written into the plan.
    gate_path: tuple[str, ...] | None
    # The output for every record with the key (IDENTITY: the record), or UNKNOWN.
    known: Any


def on_index(paths: Sequence[tuple[str, ...]]) -> bool:
    return all(path in INDEX_PATHS for path in paths)


def _walk(path: tuple[str, ...], var: str, get: str = "record.get") -> list[str]:
    """Lines leaving in `var` what jq reads at `path`, through objects: a missing key or null
    on the way gives None, any other non-object NOT_AN_OBJECT (jq raises an error there)."""
    lines = [f"{var} = {get}({path[0]!r})"]
    lines += [
        f"{var} = {var}.get({key!r}) if {var}.__class__ is dict"
        f" else (None if {var} is None else NOT_AN_OBJECT)"
        for key in path[1:]
    ]
    return lines


def index_key_function(paths: Sequence[tuple[str, ...]]) -> Callable[[dict[str, Any]], IndexKey]:
    """A function giving a record's values at `paths`, generated as straight-line code: it runs
    once per record, and a loop over the paths would cost more than all the rules it spares.

    A part is the value itself (two records with equal keys hold equal values there), or
    NOT_AN_OBJECT (see _walk). It raises TypeError when a value is an object or an array
    (unhashable): see slow_key.
    """
    lines = ["def index_key(record):", "    get = record.get"]
    for number, path in enumerate(paths):
        lines += [f"    {line}" for line in _walk(path, f"v{number}", "get")]
    lines.append(f"    return ({''.join(f'v{n}, ' for n in range(len(paths)))})")
    return _define("index_key", lines, {"NOT_AN_OBJECT": NOT_AN_OBJECT})


def slow_key(record: dict[str, Any], paths: Sequence[tuple[str, ...]]) -> IndexKey:
    """The key of a record holding an object or array at an index path: those parts become
    NOT_AN_OBJECT, which no prefilter or gate decision accepts."""
    parts = []
    for path in paths:
        value: Any = record
        for key in path:
            if value.__class__ is dict:
                value = value.get(key)
            elif value is not None:
                value = NOT_AN_OBJECT
                break
        parts.append(NOT_AN_OBJECT if isinstance(value, dict | list) else value)
    return tuple(parts)


def plan_function(candidates: Sequence[Candidate], helpers: Mapping[str, Any]) -> Plan:
    """The plan for these candidates: `plan(record, result, now, originals)` runs each on the
    record, in config order (`originals`: where the records' own JSON texts are, or None): a
    known output becomes a match at once; a memo gate is consulted first; the rule's
    first_output decides the rest, its runtime error counted.

    `helpers` gives NO_OUTPUT, RuleRuntimeError, LazyText, record_match and count_error. A
    memo gate on one path is decided inline: the path's value, as native's memo_value gives it
    (a string, boolean or None, else UNKEYED, which is never remembered), is looked up in the
    gate's memo, and the gate's own call decides what the memo does not know yet.
    """
    namespace: dict[str, Any] = {**helpers, "NOT_AN_OBJECT": NOT_AN_OBJECT, "UNKEYED": UNKEYED}
    lines = ["def plan(record, result, now, originals):", "    text = None"]
    for n, candidate in enumerate(candidates):
        namespace.update({f"rule{n}": candidate.rule, f"first_output{n}": candidate.first_output})
        body = [
            "if text is None:",
            "    text = LazyText(record, originals)",
        ]
        if candidate.known is not UNKNOWN:
            namespace[f"known{n}"] = candidate.known
            output = "record" if candidate.known is IDENTITY else f"known{n}"
            body.append(f"record_match(rule{n}, record, text, {output}, result, now)")
        else:
            body += [
                "try:",
                f"    output = first_output{n}(record, text)",
                "except RuleRuntimeError as exc:",
                f"    count_error(rule{n}, record, str(exc), result)",
                "else:",
                "    if not (output is NO_OUTPUT or output is None or output is False):",
                f"        record_match(rule{n}, record, text, output, result, now)",
            ]
        if candidate.gate_value is not None:
            namespace.update({f"memo{n}": candidate.gate_memo, f"opens{n}": candidate.gate_opens})
            if candidate.gate_path is not None:
                lines += [f"    {line}" for line in _walk(candidate.gate_path, "value")]
                lines += [
                    "    if not (value.__class__ is str or value is None"
                    " or value.__class__ is bool):",
                    "        value = UNKEYED",
                ]
            else:
                namespace[f"gate_value{n}"] = candidate.gate_value
                lines.append(f"    value = gate_value{n}(record)")
            lines += [
                f"    opened = memo{n}.get(value)",
                "    if opened is None:",
                f"        opened = opens{n}(record)",
                "    if opened:",
            ]
            lines += [f"        {line}" for line in body]
        else:
            lines += [f"    {line}" for line in body]
    return _define("plan", lines, namespace)


def _define(name: str, lines: list[str], namespace: dict[str, Any]) -> Any:
    exec("\n".join(lines), namespace)  # noqa: S102 - built above from literals and repr()
    return namespace[name]
