"""One way to write JSON: orjson's bytes where orjson can, the same text where it cannot
(deep nesting, integers beyond 64 bits, lone surrogates), numbers as libjq writes them."""

from __future__ import annotations

import json
from typing import Any

import jq
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tattletail.json_output import JSONText, _Writer, dumps
from tattletail.records import RecordJSON

OPTIONS = [0, orjson.OPT_INDENT_2, orjson.OPT_SORT_KEYS, orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS]

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=20,
)


def nested(depth: int, leaf: Any = None) -> Any:
    value: Any = [] if leaf is None else leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


@settings(max_examples=300, deadline=None)
@given(_json_values, st.sampled_from(OPTIONS))
def test_the_fallback_writer_writes_what_orjson_writes(value: Any, option: int) -> None:
    assert _Writer(option, None).write(value) == orjson.dumps(value, option=option)


@pytest.mark.parametrize("depth", [254, 300, 1024, 5000])
@pytest.mark.parametrize("option", OPTIONS)
def test_nesting_orjson_cannot_write_is_written_whole(depth: int, option: int) -> None:
    value = nested(depth, "leaf")
    written = dumps(value, option)
    if depth <= 1024:
        # Read back whole (compared as text: == on such a value would recurse too deep).
        assert dumps(orjson.loads(written), option) == written
    compact = dumps(value)
    assert compact.count(b"[") + compact.count(b"{") == depth
    assert b'"leaf"' in compact


@pytest.mark.parametrize(
    "number",
    [2**64, 10**20, -(2**63) - 1, 123456789012345678901234567890, int(1e300), -int(1e308)],
)
def test_integers_beyond_64_bits_are_written_as_libjq_writes_them(number: int) -> None:
    # What a libjq rule hands back (through the jq binding) for a number, and the text jq's
    # own writer gives for it.
    program = jq.compile(".x").input_text(json.dumps({"x": number}))
    from_libjq = program.first()
    expected = jq.compile(".x").input_text(json.dumps({"x": number})).text()

    assert dumps(from_libjq) == expected.encode()
    assert dumps({"n": [from_libjq]}) == b'{"n":[' + expected.encode() + b"]}"
    assert orjson.loads(dumps({"n": from_libjq})) == {"n": float(from_libjq)}


def test_a_lone_surrogate_is_written_as_the_replacement_character() -> None:
    written = dumps({"s": "a\ud800b", "pair": "\ud83d\ude00"})
    assert written == '{"s":"a\ufffdb","pair":"😀"}'.encode()


def test_texts_already_written_are_embedded_as_they_are_even_where_orjson_fails() -> None:
    record = RecordJSON(b'{"eventID":"e","n":1}', "e")
    annotation = JSONText(b"[1,2]")
    deep = nested(300)
    for value in ({"record": record, "match": annotation}, [record, annotation, deep, 2**70]):
        written = dumps(value)
        assert b'{"eventID":"e","n":1}' in written and b"[1,2]" in written


def test_what_is_not_json_is_still_a_type_error() -> None:
    with pytest.raises(TypeError):
        dumps({"x": object()})
    with pytest.raises(TypeError):
        dumps({"x": [object(), nested(300)]})
    with pytest.raises(TypeError):
        dumps({1: nested(300)})
    # A default, as the log formatter gives one, is honoured in both writers.
    assert dumps({"x": object, "n": 2**70}, default=str) == b'{"x":"<class \'object\'>","n":' + (
        str(2**70).encode() + b"}"
    )


def test_keys_that_are_not_strings_are_written_as_orjson_writes_them_when_asked() -> None:
    value = {7: [1], True: "t", None: 3, 1.5: {"x": 2}, "s": 0}
    for option in (orjson.OPT_NON_STR_KEYS, orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS):
        assert _Writer(option, None).write(value) == orjson.dumps(value, option=option)
    # Where orjson gives up (a big integer), the same keys still are.
    written = dumps({1: 2**70, None: nested(300)}, orjson.OPT_NON_STR_KEYS)
    assert written.startswith(b'{"1":' + str(2**70).encode() + b',"null":')
