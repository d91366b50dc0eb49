"""What the native evaluator gained for Sigma's jq, against libjq on generated values:
`tojson` of arrays and objects (a `|contains` on an object field reads its JSON text), and
`startswith`/`endswith` of a computed string (`|fieldref|startswith`)."""

from __future__ import annotations

from typing import Any

import jq
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tattletail.native import NO_OUTPUT, Fallback, compile_native

TEXT = st.text(alphabet=st.sampled_from('ab"\\/\n\t\x00\x1f\x7f\x80é€😀 \u2028'), max_size=6)
SCALARS = st.one_of(
    TEXT,
    st.integers(min_value=-(2**53), max_value=2**53),
    st.integers(min_value=2**53 + 1, max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)
PROGRAMS = [
    "tojson",
    ".a | tojson",
    "[.a, .b] | tojson",
    ". as $r | $r.a | startswith($r.b)",
    ". as $r | $r.a | endswith($r.b)",
    '.a | startswith(.b // "x")',
    '. as $r | "prefix" | startswith($r.a)',
    ". as $r | $r.a | tojson | endswith($r.b | tojson)",
]


def libjq_first(program: str, record: Any) -> Any:
    try:
        return next(iter(jq.compile(program).input_text(orjson.dumps(record).decode())), NO_OUTPUT)
    except ValueError:
        return "<error>"


def native_first(program: str, record: Any) -> Any:
    compiled = compile_native(program)
    assert compiled is not None and compiled.evaluable, program
    try:
        return compiled.first_output(record)
    except Fallback:
        return "<unsure>"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({"a": VALUES, "b": VALUES}))
def test_tojson_and_computed_startswith_equal_libjq(record: dict[str, Any]) -> None:
    for program in PROGRAMS:
        native = native_first(program, record)
        if native != "<unsure>":
            assert native == libjq_first(program, record), (program, record)


def test_tojson_is_native_without_floats_and_unsure_with_them() -> None:
    record = {"a": {"k\x7f": ["\u2028", None, True, 2**53, {"x": []}]}, "b": [1.5]}
    assert native_first(".a | tojson", record) == libjq_first(".a | tojson", record)
    assert native_first(".b | tojson", record) == "<unsure>"
    deep: Any = "x"
    for _ in range(2000):  # deeper than Python's stack and orjson's limit
        deep = [deep]
    assert native_first(".a | tojson", {"a": deep}) == "<unsure>"


def test_startswith_of_a_non_string_is_an_error_as_in_jq() -> None:
    record = {"a": "abc", "b": 1}
    program = ". as $r | $r.a | startswith($r.b)"
    assert libjq_first(program, record) == "<error>"
    assert native_first(program, record) == "<unsure>"  # the engine asks libjq for the error
