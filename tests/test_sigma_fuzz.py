"""Attacking the Sigma backend: generated detections (values with wildcards, escapes and
unicode, modifiers, conditions) and generated records; the converted jq's verdict, through libjq
and through the native evaluator, must be what an independent evaluator of Sigma's semantics
(written here from the specification and docs/sigma.md, sharing no code with the backend or with
pySigma) says."""

from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass
from typing import Any

import orjson
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.sigma_support import UUID, jq_of, libjq_matches, native_matches

# -- the reference evaluator ----------------------------------------------------------------------

FIXED_OBJECTS = ("userIdentity", "tlsDetails")


def flatten(value: Any) -> list[Any]:
    if not isinstance(value, list):
        return [value]
    return [leaf for item in value for leaf in flatten(item)]


def reached(record: dict[str, Any], path: tuple[str, ...]) -> list[Any]:
    """Values a dotted name reaches (present keys, nulls included), before the last step's
    arrays are expanded."""
    walks = path[0] not in FIXED_OBJECTS
    current: list[Any] = [record]
    for depth, key in enumerate(path):
        following = []
        for value in current:
            candidates = flatten(value) if depth > 0 and walks else [value]
            following += [c[key] for c in candidates if isinstance(c, dict) and key in c]
        current = following
    return current


def field_values(record: dict[str, Any], path: tuple[str, ...]) -> list[Any]:
    return [v for value in reached(record, path) for v in flatten(value) if v is not None]


def field_exists(record: dict[str, Any], path: tuple[str, ...]) -> bool:
    if len(path) == 1:
        return path[0] in record
    walks = path[0] not in FIXED_OBJECTS
    parents = reached(record, path[:-1])
    if walks:
        parents = [p for value in parents for p in flatten(value)]
    return any(isinstance(p, dict) and path[-1] in p for p in parents)


def json_text(value: Any) -> str:
    """jq's tojson: compact, keys as read, U+007F escaped."""
    return orjson.dumps(value).decode().replace("\x7f", "\\u007f")


def text_of(value: Any) -> str:
    return value if isinstance(value, str) else json_text(value)


def fold(text: str) -> str:
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


@dataclass(frozen=True)
class Wild:
    kind: str  # "*" or "?"


def parse_sigma_string(raw: str) -> list[str | Wild]:
    """Specification, "Escape Character": `\\` escapes `*`, `?` and itself; before anything
    else it is a plain backslash."""
    out: list[str | Wild] = []
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == "\\" and i + 1 < len(raw) and raw[i + 1] in "*?\\":
            out.append(raw[i + 1])
            i += 2
        elif c in "*?":
            out.append(Wild(c))
            i += 1
        else:
            out.append(c)
            i += 1
    return out


def glob_matches(pattern: list[str | Wild], text: str, cased: bool) -> bool:
    regex = "".join(
        (".*" if p.kind == "*" else ".")
        if isinstance(p, Wild)
        else re.escape(p if cased else fold(p))
        for p in pattern
    )
    return re.fullmatch(regex, text if cased else fold(text), re.DOTALL) is not None


def with_modifiers(pattern: list[str | Wild], modifiers: set[str]) -> list[str | Wild]:
    if "contains" in modifiers or "startswith" in modifiers:
        pattern = [*pattern, Wild("*")]
    if "contains" in modifiers or "endswith" in modifiers:
        pattern = [Wild("*"), *pattern]
    return pattern


def base64_variants(data: bytes) -> list[str]:
    """The parts of base64(x + data + y) that depend on data alone, for the 3 alignments."""
    variants = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + data + b"\0\0\0").decode()
        first = -(-8 * shift // 6)  # the first character made of data bits only
        last = 8 * (shift + len(data)) // 6  # one past the last
        variants.append(encoded[first:last])
    return variants


def in_network(text: Any, network: str) -> bool:
    if not isinstance(text, str) or not text.isascii() or "%" in text:
        return False
    try:
        return ipaddress.ip_address(text) in ipaddress.ip_network(network)
    except ValueError:
        return False


@dataclass(frozen=True)
class Item:
    """One `field|modifiers: value(s)` of a selection."""

    field: str
    modifiers: tuple[str, ...]
    value: Any  # a value or a list of values

    @property
    def key(self) -> str:
        return "|".join([self.field, *self.modifiers])


def value_matches(item: Item, value: Any, record: dict[str, Any]) -> bool:
    """Does the whole item hold on the record, for one of its values (`value`)?"""
    path = tuple(item.field.split("."))
    modifiers = set(item.modifiers)
    values = field_values(record, path)
    if "exists" in modifiers:
        return field_exists(record, path) is value
    if value is None:
        return not values
    if "fieldref" in modifiers:
        others = [fold(text_of(v)) for v in field_values(record, tuple(value.split(".")))]
        for mine in (fold(text_of(v)) for v in values):
            for other in others:
                if "contains" in modifiers and other in mine:
                    return True
                if (
                    "startswith" in modifiers
                    and "contains" not in modifiers
                    and mine.startswith(other)
                ):
                    return True
                if "endswith" in modifiers and "contains" not in modifiers and mine.endswith(other):
                    return True
                if not modifiers & {"contains", "startswith", "endswith"} and mine == other:
                    return True
        return False
    compare = modifiers & {"gt", "gte", "lt", "lte"}
    if compare:
        op = compare.pop()
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        return any(
            {"gt": n > value, "gte": n >= value, "lt": n < value, "lte": n <= value}[op]
            for n in numbers
        )
    if "cidr" in modifiers:
        return any(in_network(v, value) for v in values)
    if "re" in modifiers:
        flags = re.IGNORECASE if "i" in modifiers else 0
        return any(re.search(value, text_of(v), flags) is not None for v in values)
    if "base64offset" in modifiers:
        needles = [fold(n) for n in base64_variants(value.encode())]
        return any(n in fold(text_of(v)) for v in values for n in needles)
    if "base64" in modifiers:
        encoded = base64.b64encode(value.encode()).decode()
        pattern = with_modifiers(list(encoded), modifiers)
        return any(glob_matches(pattern, text_of(v), False) for v in values)
    if isinstance(value, bool):
        value = "true" if value else "false"
    pattern = with_modifiers(parse_sigma_string(str(value)), modifiers)
    cased = "cased" in modifiers
    return any(glob_matches(pattern, text_of(v), cased) for v in values)


def item_matches(item: Item, record: dict[str, Any]) -> bool:
    values = item.value if isinstance(item.value, list) else [item.value]
    results = [value_matches(item, value, record) for value in values]
    return all(results) if "all" in item.modifiers else any(results)


@dataclass(frozen=True)
class Keywords:
    """A selection of values bound to no field."""

    values: tuple[str, ...]


def keyword_matches(keyword: str, record: dict[str, Any]) -> bool:
    pattern = [Wild("*"), *parse_sigma_string(keyword), Wild("*")]
    return glob_matches(pattern, json_text(record), False)


def evaluate(condition: Any, selections: dict[str, Any], record: dict[str, Any]) -> bool:
    match condition:
        case ("and", a, b):
            return evaluate(a, selections, record) and evaluate(b, selections, record)
        case ("or", a, b):
            return evaluate(a, selections, record) or evaluate(b, selections, record)
        case ("not", a):
            return not evaluate(a, selections, record)
        case (("1" | "all") as quantifier, pattern):
            names = [n for n in selections if pattern == "them" or n.startswith(pattern[:-1])]
            results = [evaluate(n, selections, record) for n in names]
            return any(results) if quantifier == "1" else all(results)
        case str(name):
            selection = selections[name]
            if isinstance(selection, Keywords):
                return any(keyword_matches(k, record) for k in selection.values)
            return all(item_matches(item, record) for item in selection)
    raise AssertionError(condition)


def condition_text(condition: Any) -> str:
    match condition:
        case ("and" | "or") as op, a, b:
            return f"({condition_text(a)} {op} {condition_text(b)})"
        case ("not", a):
            return f"not {condition_text(a)}"
        case (quantifier, pattern):
            return f"{quantifier} of {pattern}"
        case str(name):
            return name
    raise AssertionError(condition)


# -- generators ----------------------------------------------------------------------

# Characters rules and records share, so that values do match: ASCII case pairs, wildcards and
# backslashes, JSON's escapes, a newline, non-ASCII letters with case (É/é, ß).
CHARS = 'aAbB*?\\"\n é É ß-.:/\x7f'
WORDS = st.text(alphabet=CHARS, max_size=5)
# Sigma values: runs of letters, wildcards, escaped wildcards, backslashes; and, often,
# literal runs joined by `*` (the shapes with string-method forms: a*, *a, a*b, *a*).
LETTERS = st.text(alphabet='aAbBéÉß \n-"', min_size=1, max_size=3)
PATTERNS = st.one_of(
    st.lists(
        st.one_of(LETTERS, st.sampled_from(["*", "?", "\\*", "\\?", "\\\\", "\\"])),
        max_size=4,
    ).map("".join),
    st.tuples(
        st.sampled_from(["", "*"]),
        st.lists(LETTERS, min_size=1, max_size=3),
        st.sampled_from(["", "*"]),
    ).map(lambda t: t[0] + "*".join(t[1]) + t[2]),
)


def records(words: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Records whose strings are drawn from `words`."""
    scalars = st.one_of(
        words,
        st.integers(min_value=-3, max_value=12),
        st.integers(min_value=2**60, max_value=2**60 + 2),
        st.booleans(),
        st.none(),
        st.sampled_from([0.5, 1.0, 1e300]),
    )
    values: dict[str, st.SearchStrategy[Any]] = {
        "eventName": st.one_of(words, scalars, st.lists(words, max_size=2)),
        "userAgent": words,
        "sourceIPAddress": st.one_of(ADDRESSES, scalars),
        "userIdentity": st.one_of(
            st.fixed_dictionaries({}, optional={"type": nested(scalars), "userName": words}),
            nested(scalars),
        ),
        "requestParameters": nested(scalars),
    }
    return st.fixed_dictionaries({}, optional=values)


@st.composite
def targeted_records(
    draw: st.DrawFn,
    paths: list[tuple[str, ...]],
    base: st.SearchStrategy[dict[str, Any]],
    leaves: st.SearchStrategy[Any],
) -> dict[str, Any]:
    """A record (from `base`) with values, now and then, at the paths the rule reads (from
    `leaves`), inside objects and, where names walk them, arrays."""
    record = draw(base)
    for path in paths:
        if draw(st.integers(0, 3)) == 0:
            continue
        value: Any = draw(leaves)
        for depth in range(len(path) - 1, 0, -1):
            value = {path[depth]: value}
            if path[0] not in FIXED_OBJECTS and draw(st.integers(0, 3)) == 0:
                value = [draw(SMALL_NESTED), value]
        record[path[0]] = value
    return record


def nested(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(st.sampled_from(["name", "items", "key", "count"]), inner, max_size=3),
        ),
        max_leaves=6,
    )


SMALL_NESTED = nested(st.integers(0, 1))
NETWORKS = [
    "10.0.0.0/8",
    "192.168.1.0/24",
    "0.0.0.0/0",
    "2001:db8::/32",
    "::ffff:0:0/96",
    "fe80::/10",
]
ADDRESSES = st.sampled_from(
    [
        "10.1.2.3",
        "10.0.0.256",
        "010.1.2.3",
        "192.168.1.77",
        "192.168.2.1",
        "2001:db8::1",
        "2001:DB8:0:0:0:0:0:1",
        "2001:db9::",
        "::ffff:10.1.2.3",
        "::FFFF:a01:203",
        "fe80::1%eth0",
        "FEBF::",
        "fec0::",
        "AWS Internal",
        "10.1.2.3\n",
    ]
)


@st.composite
def instances(draw: st.DrawFn, raw: str) -> str:
    """A string the Sigma pattern `raw` nearly or exactly matches: each `*` replaced by a few
    characters (or none, or by overlapping its neighbours), each `?` by one character (or
    none, or two), letters with their case swapped now and then."""
    out = ""
    for part in parse_sigma_string(raw):
        if isinstance(part, str):
            if out.endswith("\x00"):
                out = out[:-1]
                continue
            out += part.swapcase() if draw(st.integers(0, 4)) == 0 else part
        elif part.kind == "*":
            choice = draw(st.integers(0, 3))
            if choice == 0 and out:
                out = out[: -draw(st.integers(1, len(out)))]  # the next part overlaps
            elif choice == 1:
                out += draw(WORDS)
            elif choice == 2:
                out += "\x00"  # the next literal's first character is dropped (see below)
        else:
            out += draw(st.sampled_from(["", "a", "é", "\n", "ab"]))
    return out


def near_misses(texts: list[str]) -> st.SearchStrategy[str]:
    """Strings made from a rule's own values: instances of its patterns, parts of them, two
    joined, so that edges (overlaps, lengths, case) get hit."""
    if not texts:
        return WORDS
    base = st.sampled_from(texts).flatmap(instances)
    return st.one_of(
        WORDS,
        base,
        base,
        base.map(lambda text: text + "\n"),
        st.tuples(base, st.integers(0, 6), st.integers(0, 6)).map(
            lambda t: t[0][t[1] : t[1] + t[2]]
        ),
        st.tuples(base, base).map("".join),
        st.tuples(base, WORDS).map("".join),
    )


def literal_texts(selections: dict[str, Any]) -> list[str]:
    """Every string value of the rule (patterns, as written)."""
    texts = []
    for selection in selections.values():
        if isinstance(selection, Keywords):
            texts += selection.values
            continue
        for item in selection:
            values = item.value if isinstance(item.value, list) else [item.value]
            texts += [v for v in values if isinstance(v, str) and "cidr" not in item.modifiers]
    return texts


def fields_read(selections: dict[str, Any]) -> list[str]:
    fields = []
    for selection in selections.values():
        if not isinstance(selection, Keywords):
            for item in selection:
                fields.append(item.field)
                if "fieldref" in item.modifiers:
                    fields.append(item.value)
    return fields


STRING_FIELDS = [
    "eventName",
    "userAgent",
    "userIdentity.type",
    "requestParameters.name",
    "requestParameters.items.key",
    "requestParameters",
]
STRING_MODIFIERS = [
    (),
    (),
    (),
    ("cased",),
    ("contains",),
    ("startswith",),
    ("endswith",),
    ("contains", "cased"),
    ("contains", "all"),
    ("endswith", "all"),
]
REGEXES = st.sampled_from(["^a", "b$", "a.b", "[aB]+", "^(a|b)?$", "A{1,2}", "^$", ":", "[^a]"])


@st.composite
def items(draw: st.DrawFn) -> Item:
    kinds = ["string"] * 6 + ["null", "exists", "fieldref", "compare", "cidr", "re"]
    kind = draw(st.sampled_from([*kinds, "base64", "number", "bool"]))
    field = draw(st.sampled_from(STRING_FIELDS))
    if kind == "string":
        modifiers = draw(st.sampled_from(STRING_MODIFIERS))
        if "all" in modifiers:
            return Item(field, modifiers, draw(st.lists(PATTERNS, min_size=2, max_size=3)))
        value = draw(st.one_of(PATTERNS, st.lists(PATTERNS, min_size=1, max_size=3)))
        return Item(field, modifiers, value)
    if kind == "null":
        return Item(field, (), None)
    if kind == "exists":
        return Item(field, ("exists",), draw(st.booleans()))
    if kind == "fieldref":
        modifiers = draw(st.sampled_from([(), ("startswith",), ("endswith",), ("contains",)]))
        other = draw(st.sampled_from(STRING_FIELDS))
        return Item(field, ("fieldref", *modifiers), other)
    if kind == "compare":
        op = draw(st.sampled_from(["gt", "gte", "lt", "lte"]))
        return Item("requestParameters.count", (op,), draw(st.integers(-2, 10)))
    if kind == "cidr":
        return Item("sourceIPAddress", ("cidr",), draw(st.sampled_from(NETWORKS)))
    if kind == "re":
        flags = draw(st.sampled_from([(), ("i",)]))
        return Item(
            draw(st.sampled_from(["userAgent", "requestParameters.name"])),
            ("re", *flags),
            draw(REGEXES),
        )
    if kind == "base64":
        modifiers = draw(st.sampled_from([("base64",), ("base64offset", "contains")]))
        return Item(field, modifiers, draw(st.text(alphabet="ab/+é", min_size=1, max_size=5)))
    if kind == "number":
        return Item(field, (), draw(st.integers(-2, 12)))
    return Item(field, (), draw(st.booleans()))


@st.composite
def detections(draw: st.DrawFn) -> tuple[dict[str, Any], Any]:
    """Selections (often one, with one item, so that records do match) and a condition."""
    count = draw(st.sampled_from([1, 1, 2, 3]))
    names = draw(st.permutations(["sel_a", "sel_b", "filter_x"]))[:count]
    selections: dict[str, Any] = {}
    for name in names:
        if draw(st.integers(0, 9)) == 0:
            selections[name] = Keywords(tuple(draw(st.lists(PATTERNS, min_size=1, max_size=2))))
            continue
        by_key: dict[str, Item] = {}
        for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
            item = draw(items())
            by_key.setdefault(item.key, item)  # one value list per key in a YAML map
        selections[name] = list(by_key.values())

    def tree(depth: int) -> st.SearchStrategy[Any]:
        leaves = st.one_of(
            st.sampled_from(names),
            st.sampled_from(names),
            st.tuples(st.sampled_from(["1", "all"]), st.sampled_from(["them", "sel_*"])),
        )
        if depth == 0:
            return leaves
        smaller = tree(depth - 1)
        return st.one_of(
            leaves,
            st.tuples(st.sampled_from(["and", "or"]), smaller, smaller),
            st.tuples(st.just("not"), smaller),
        )

    condition = draw(tree(2))
    if not any(n.startswith("sel_") for n in names):
        assume("sel_*" not in repr(condition))
    return selections, condition


def to_yaml(selections: dict[str, Any], condition: Any) -> str:
    detection: dict[str, Any] = {}
    for name, selection in selections.items():
        if isinstance(selection, Keywords):
            detection[name] = list(selection.values)
        else:
            detection[name] = {item.key: item.value for item in selection}
    detection["condition"] = condition_text(condition)
    document = {
        "title": "Generated",
        "id": UUID,
        "logsource": {"product": "aws", "service": "cloudtrail"},
        "detection": detection,
        "level": "low",
    }
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(detections(), st.data())
def test_converted_rules_match_what_the_sigma_semantics_say(
    detection: tuple[dict[str, Any], Any], data: st.DataObject
) -> None:
    selections, condition = detection
    program = jq_of(to_yaml(selections, condition))
    words = near_misses(literal_texts(selections))
    paths = sorted({tuple(f.split(".")) for f in fields_read(selections)})
    leaves = st.one_of(
        words, words, st.lists(words, max_size=2), st.integers(-2, 12), st.booleans()
    )
    generated = targeted_records(paths, records(words), leaves)
    for record in data.draw(st.lists(generated, min_size=1, max_size=6)):
        expected = evaluate(condition, selections, record)
        assert libjq_matches(program, record) == expected, (program, record)
        assert native_matches(program, record) in (None, expected), (program, record)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PATTERNS, st.sampled_from([(), ("cased",), ("contains",), ("startswith",)]), st.data())
def test_wildcard_patterns_match_as_the_specification_says(
    pattern: str, modifiers: tuple[str, ...], data: st.DataObject
) -> None:
    """The string matcher alone, with many more texts per pattern: overlapping ends, escapes,
    `?` against newlines and non-ASCII characters, a newline at the very end."""
    item = Item("userAgent", modifiers, pattern)
    program = jq_of(to_yaml({"sel_a": [item]}, "sel_a"))
    texts = data.draw(st.lists(near_misses([pattern]), min_size=4, max_size=12))
    for text in texts:
        record = {"userAgent": text}
        expected = item_matches(item, record)
        assert libjq_matches(program, record) == expected, (program, text)
        assert native_matches(program, record) in (None, expected), (program, text)
