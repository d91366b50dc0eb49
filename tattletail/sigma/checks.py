"""What a Sigma rule needs that Tattletail cannot give, and what converts but will not do what
its author meant (`tattletail sigma check`).

`unsupported` names the construct a rule needs beyond single-record matching: an aggregation
(`| count() by x > N`), `near`, a `timeframe`. `pitfalls` reads a converted rule's conditions
(field names already spelled by the pipeline) for the known traps of CloudTrail rules:

- a field CloudTrail never writes (`status: 'success'`): the condition can never hold;
- a value that looks like a field name (`arn|contains: responseElements.accessKey.userName`):
  compared as literal text, though its author probably meant `|fieldref`;
- a `|fieldref` between an ARN field and a name field: an ARN never equals a bare name;
- a quote in a `|contains` on a whole service-specific object: that is matched within its JSON
  text, where the quotes of a nested JSON string (a policy document) are written `\\"`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Final

from sigma.conditions import ConditionFieldEqualsValueExpression, ConditionItem
from sigma.rule import SigmaRule
from sigma.types import SigmaFieldReference, SigmaString, SpecialChars

from tattletail.sigma.fields import CLOUDTRAIL_RECORD, FREE_FORM, known_field, split_field

_PIPE: Final = re.compile(r"\|\s*(?P<what>.*)$")
_FIELD_LIKE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)+")


def unsupported(rule: SigmaRule) -> str | None:
    """The construct that keeps the rule from being one jq program on one record, or None."""
    detections = rule.detection.detections
    timeframe = detections.get("timeframe")
    window = ""
    if timeframe is not None:
        values = [str(item.value[0]) for item in timeframe.detection_items if item.value]
        window = f" (timeframe: {', '.join(values)})" if values else " (timeframe)"
    for condition in rule.detection.condition:
        match = _PIPE.search(condition)
        if match is None:
            continue
        what = match.group("what").strip()
        if what.startswith("near"):
            return f"`near` (events close in time: `{condition}`){window}: {_MEMORY} (sequence)"
        return f"aggregation `{what}`{window}: counts over many records: {_MEMORY} (threshold)"
    if timeframe is not None:
        return (
            f"timeframe{window}: the condition correlates several records in a time window: "
            f"{_MEMORY} (sequence)"
        )
    return None


# Not converted (yet): a rule with memory does it, written by hand (docs/stateful-rules.md).
_MEMORY = "write it as a rule with memory"


def pitfalls(rule: SigmaRule) -> list[str]:
    """Warnings about a rule that converts (see the module docstring), in condition order."""
    found: list[str] = []
    for condition in rule.detection.parsed_condition:
        for leaf in _leaves(condition.parsed):
            for warning in _leaf_pitfalls(leaf):
                if warning not in found:
                    found.append(warning)
    return found


def _leaves(node: Any) -> Iterator[ConditionFieldEqualsValueExpression]:
    if isinstance(node, ConditionFieldEqualsValueExpression):
        yield node
    elif isinstance(node, ConditionItem):
        for arg in node.args:
            yield from _leaves(arg)


def _leaf_pitfalls(leaf: ConditionFieldEqualsValueExpression) -> Iterator[str]:
    path = split_field(leaf.field)
    value = leaf.value
    if not known_field(path):
        yield (
            f"CloudTrail records have no field `{leaf.field}`: the condition on it never "
            "matches (is the field spelled as in the record?)"
        )
    if isinstance(value, SigmaFieldReference):
        other = split_field(value.field)
        if not known_field(other):
            yield f"`|fieldref` names `{value.field}`, a field CloudTrail records do not have"
        kinds = (_kind(path), _kind(other))
        if (
            None not in kinds
            and kinds[0] != kinds[1]
            and not (value.starts_with or value.ends_with)
        ):
            yield (
                f"`{leaf.field}|fieldref: {value.field}` compares {kinds[0]} with {kinds[1]}: "
                "they are never equal (an ARN ends with the name: `|fieldref|endswith`?)"
            )
        return
    if not isinstance(value, SigmaString):
        return
    plain = "".join(part for part in value.s if isinstance(part, str))
    wildcards_only_around = (
        all(part is SpecialChars.WILDCARD_MULTI for part in value.s if not isinstance(part, str))
        and sum(isinstance(part, str) for part in value.s) == 1
    )
    if wildcards_only_around and _looks_like_a_field(plain):
        yield (
            f"`{leaf.field}` is compared with the text `{plain}`, which looks like a field name: "
            "did you mean `|fieldref`?"
        )
    if '"' in plain and len(path) == 1 and CLOUDTRAIL_RECORD.get(path[0]) == FREE_FORM:
        yield (
            f"`{leaf.field}` is an object, matched within its JSON text, where the quotes of a "
            'nested JSON string (a policy document) are written \\": a value with `"` only '
            "matches the object's own keys and values there"
        )


def _looks_like_a_field(text: str) -> bool:
    if not _FIELD_LIKE.fullmatch(text):
        return False
    top = text.split(".", 1)[0].casefold()
    return any(
        top == key.casefold() and schema is not None for key, schema in CLOUDTRAIL_RECORD.items()
    )


def _kind(path: tuple[str, ...]) -> str | None:
    """What a field holds, when its name says it: an ARN, a name, an account id, an address."""
    last = path[-1].casefold()
    if last.endswith("arn"):
        return "an ARN"
    if last.endswith("name"):
        return "a name"
    if last in ("accountid", "recipientaccountid"):
        return "an account id"
    if last == "sourceipaddress":
        return "an IP address"
    return None
