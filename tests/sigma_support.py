"""What the Sigma tests share: a Sigma rule from a detection, its jq, and its verdict on a
record, through libjq (the definition) and through the native evaluator (which must agree)."""

from __future__ import annotations

from functools import cache
from typing import Any

import jq
import orjson
import yaml
from sigma.collection import SigmaCollection

from tattletail.native import NO_OUTPUT, Fallback, compile_native
from tattletail.sigma.backend import JqBackend

UUID = "5f0b9a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"


def rule_yaml(detection: dict[str, Any], **meta: Any) -> str:
    """A Sigma rule for AWS CloudTrail with this detection (condition included)."""
    document = {
        "title": meta.pop("title", "Test rule"),
        "id": meta.pop("id", UUID),
        "status": "test",
        "logsource": meta.pop("logsource", {"product": "aws", "service": "cloudtrail"}),
        "detection": detection,
        "level": meta.pop("level", "medium"),
        **meta,
    }
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def jq_of(rule: dict[str, Any] | str) -> str:
    """The jq_match JqBackend writes for a rule (a detection, or a whole YAML document)."""
    text = rule if isinstance(rule, str) else rule_yaml(rule)
    (parsed,) = SigmaCollection.from_yaml(text).rules
    return JqBackend().jq_program(parsed)


@cache
def _libjq(program: str) -> Any:
    return jq.compile(program)


def libjq_matches(program: str, record: Any) -> bool:
    """The matching contract, from libjq alone; a converted rule never raises a jq error."""
    outputs = iter(_libjq(program).input_text(orjson.dumps(record).decode()))
    first = next(outputs, NO_OUTPUT)
    return not (first is NO_OUTPUT or first is None or first is False)


@cache
def _native(program: str) -> Any:
    return compile_native(program)


def native_matches(program: str, record: Any) -> bool | None:
    """The native evaluator's verdict, or None where it defers to libjq."""
    compiled = _native(program)
    if compiled is None or not compiled.evaluable:
        return None
    try:
        first = compiled.first_output(record)
    except Fallback:
        return None
    return not (first is NO_OUTPUT or first is None or first is False)


def verdict(program: str, record: Any, native_required: bool = True) -> bool:
    """libjq's verdict, after checking that the native evaluator gives the same (and, unless
    told otherwise, that it answers without libjq)."""
    expected = libjq_matches(program, record)
    native = native_matches(program, record)
    if native_required:
        assert native is not None, f"native deferred to libjq: {program} on {record}"
    assert native in (None, expected), f"native {native}, libjq {expected}: {program} {record}"
    return expected
