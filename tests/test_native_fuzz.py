"""The whole rule evaluation gives libjq's answers on generated rules and hostile records.

A seeded generator writes jq rule programs in the idioms real rules use (select, comparisons,
and/or/not, `test` with flags, startswith/endswith/contains/inside/ltrimstr, `//`, `?`, `[]?`,
try/catch, if/elif/else, string interpolation, `as $x`, any/all/IN/index/has/length/type/
tostring/tonumber/fromjson/@base64d, object and array construction) over the fields CloudTrail
rules read, and records built to break them: type swaps at those fields, missing keys, unicode
(ß, İ, ı, the Kelvin sign, full-width letters, emoji, combining marks), numeric-looking strings,
big integers, -0.0, 1e300, deep nesting, long strings, keys with dots and spaces.

Each program runs through the engine as Tattletail runs it (RuleSet: index, prefilters, gates,
memo, native fast path, libjq fallback, the matching contract), several programs to a rule set,
and is compared record by record with libjq alone (tests/fuzz_support.libjq_verdicts): match or
not, the annotation, and the rule errors.  The native evaluator is also compared on its own: its
first output must be libjq's, and where it claims libjq raises an error, libjq must.

The amount of work and the seed come from tests/fuzz_support.py (``TATTLETAIL_FUZZ_SCALE``,
``TATTLETAIL_FUZZ_SEED``): ``TATTLETAIL_FUZZ_SCALE=100 python -m pytest -q
tests/test_native_fuzz.py`` runs about 50,000 programs.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import jq
import orjson
import pytest

from tattletail import config, json_input, rules
from tattletail.native import NO_OUTPUT, Fallback, _JqRuntimeError, compile_native
from tattletail.rules import RuleSet, RuleSource
from tests.engine_support import Verdict, as_binding, libjq_verdicts, typed
from tests.fuzz_support import PatternGenerator, fuzz_scale, fuzz_seed
from tests.support import REPO

# --- values

UNICODE = [
    "ß",
    "SS",
    "ss",
    "İ",
    "i̇",
    "ı",
    "I",
    "\u212a",  # Kelvin sign
    "k",
    "ſ",
    "Ｆｕｌｌ",
    "ＡＤＭＩＮ",
    "😀",
    "👩‍💻",
    "e\u0301",
    "é",
    "\u00a0",
    "\u2028",
    "\x00",
    "\t",
    "\n",
    "ﬆ",
    "ǅ",
    "Ω",
    "ω",
    "\ufeff",
]
NUMERIC_STRINGS = [
    "0",
    "1",
    "01",
    "-0",
    "1.0",
    "1e3",
    "1E400",
    " 1",
    "1 ",
    "0x1F",
    "nan",
    "NaN",
    "Infinity",
    "-Infinity",
    "1_000",
    "١٢٣",
    "１２３",
    "9007199254740993",
    "100000000000000000000",
    "0.1",
    ".5",
    "5.",
    "+1",
    "",
]
BASE64 = ["YWJj", "YWJjZA", "YWJjZA==", "!!!!", "YQ", "=", "4pyT", "eyJhIjoxfQ==", "", "w4k="]
NUMBERS: list[Any] = [
    0,
    1,
    -1,
    2,
    3600,
    1.0,
    1.5,
    -0.0,
    0.1,
    1e300,
    -1e300,
    2**53,
    2**53 + 1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    12345678901234567,
]
EVENT_NAMES = [
    "CreateUser",
    "CreateAccessKey",
    "ConsoleLogin",
    "StopLogging",
    "DeleteTrail",
    "PutBucketPolicy",
    "GetSecretValue",
    "AssumeRole",
    "ListUsers",
    "AttachUserPolicy",
    "createuser",
    "CREATEUSER",
]
WORDS = [
    "Root",
    "IAMUser",
    "AssumedRole",
    "AWSService",
    "iam.amazonaws.com",
    "s3.amazonaws.com",
    "cloudtrail.amazonaws.com",
    "AccessDenied",
    "Client.UnauthorizedOperation",
    "arn:aws:iam::123456789012:user/alice",
    "arn:aws:sts::123456789012:assumed-role/Admin/bob",
    "arn:aws:iam::aws:policy/AdministratorAccess",
    "123456789012",
    "210987654321",
    "alice",
    "password1",
    "Mozilla/5.0",
    "aws-cli/2.13.5 Python/3.11",
    "Boto3/1.34",
    "1.2.3.4",
    "Yes",
    "No",
    "true",
    "false",
    "Success",
    "Failure",
    "us-east-1",
    "TLSv1.2",
    "a.b",
    "key with spaces",
    "*",
]
POLICIES = [
    '{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}',
    '{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::210987654321:root"}}}',
    '{"Statement":[{"Effect":"Deny","Action":["s3:*"],"Resource":["*"]}],"Version":"2012-10-17"}',
    '{"Statement":[]}',
    "[1, 2]",
    '"text"',
    "null",
    "{bad json",
    '{"a":1.0}',
    '{"a":100000000000000000001}',
    "nan",
    '{"a":"b","a":"c"}',
    '"\\ud800"',
    "[" * 300 + "]" * 300,
    '{"Statement":' * 200 + "true" + "}" * 200,
    " [true] ",
    "true false",
]
KEYS = ["a", "b", "type", "Statement", "Effect", "key.with.dots", "key with spaces", "0", ""]


class Raw:
    """A number written as the file writes it, where a Python value cannot say how: what the
    engine and libjq read from it is up to their readers."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


# Read alike by libjq and Tattletail's reader (tattletail.json_input), written otherwise than
# orjson would write what it reads.
RAW_NUMBERS = [
    "-0",
    "-0.0e0",
    "0.10",
    "1E2",
    "1.000000000000000000001",
    "100000000000000000001",
    "1e400",
    "-1e400",
    "1e-400",
    "NaN",
    "Infinity",
    "-Infinity",
]


def adversarial_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if roll < 0.04:
        return Raw(rng.choice(RAW_NUMBERS))
    if roll < 0.22:
        return rng.choice(WORDS + EVENT_NAMES)
    if roll < 0.34:
        return rng.choice(UNICODE) + rng.choice(["", rng.choice(WORDS)])
    if roll < 0.42:
        return rng.choice(NUMERIC_STRINGS)
    if roll < 0.46:
        return rng.choice(BASE64)
    if roll < 0.48:
        return rng.choice(POLICIES)
    if roll < 0.50:
        return json_text(rng)
    if roll < 0.62:
        return rng.choice(NUMBERS)
    if roll < 0.68:
        return rng.choice([True, False])
    if roll < 0.74:
        return None
    if roll < 0.76:
        return "x" * rng.choice([1000, 20000]) + rng.choice(["", "ss", "😀"])
    if roll < 0.78:
        return nested(rng, rng.choice([20, 100, 240]))
    if depth >= 2:
        return rng.choice(WORDS)
    if roll < 0.89:
        return [adversarial_value(rng, depth + 1) for _ in range(rng.choice([0, 1, 2, 3]))]
    return {
        rng.choice(KEYS): adversarial_value(rng, depth + 1) for _ in range(rng.choice([0, 1, 2]))
    }


def file_text(rng: random.Random, value: Any) -> str:
    """A record as a file may write it: integers as `-0`, floats in other spellings, escapes,
    whitespace, a key written twice (the last one counts, in libjq as in orjson)."""
    if isinstance(value, Raw):
        return value.text
    if value is None or isinstance(value, bool):
        return orjson.dumps(value).decode()
    if isinstance(value, int):
        return "-0" if value == 0 and rng.random() < 0.4 else str(value)
    if isinstance(value, float):
        text = orjson.dumps(value).decode()
        if value.is_integer() and abs(value) < 1e15 and rng.random() < 0.3:
            return rng.choice([f"{int(value)}.00", f"{value:E}", f"{int(value)}e0"])
        return text
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=rng.random() < 0.3)
    space = rng.choice(["", "", " ", "\n  "])
    if isinstance(value, list):
        return "[" + f",{space}".join(file_text(rng, item) for item in value) + "]"
    entries = [f"{json.dumps(key)}:{space}{file_text(rng, item)}" for key, item in value.items()]
    if entries and rng.random() < 0.05:
        shadowed = rng.choice(["1", '"x"', "null"])
        entries.insert(0, f"{json.dumps(next(iter(value)))}: {shadowed}")
    return "{" + f",{space}".join(entries) + "}"


def json_text(rng: random.Random) -> str:
    """Text for `fromjson`: a value written as JSON, sometimes broken or padded."""
    text = file_text(rng, adversarial_value(rng, 1))
    roll = rng.random()
    if roll < 0.1 and text:
        cut = rng.randrange(len(text))
        return text[:cut] + text[cut + 1 :]
    if roll < 0.2:
        return rng.choice([" ", "\n", "\ufeff", "\t"]) + text + rng.choice(["", " ", "\n", "x"])
    if roll < 0.25:
        return text.replace('"', "'")
    if roll < 0.3:
        return text + " " + text
    return text


def nested(rng: random.Random, depth: int) -> Any:
    value: Any = rng.choice(["x", 1, None, True])
    for _ in range(depth):
        value = [value] if rng.random() < 0.5 else {"a": value}
    return value


def base_record(rng: random.Random, n: int) -> dict[str, Any]:
    return {
        "eventVersion": "1.08",
        "eventID": f"r{n}",
        "eventName": rng.choice(EVENT_NAMES),
        "eventSource": rng.choice(WORDS[4:7]),
        "eventType": rng.choice(["AwsApiCall", "AwsServiceEvent", "AwsConsoleSignIn"]),
        "awsRegion": "us-east-1",
        "sourceIPAddress": rng.choice(["1.2.3.4", "delivery.logs.amazonaws.com", "١.٢.٣.٤"]),
        "userAgent": rng.choice(WORDS[15:18]),
        "readOnly": rng.choice([True, False]),
        "recipientAccountId": rng.choice(["123456789012", "210987654321"]),
        "userIdentity": {
            "type": rng.choice(WORDS[:4]),
            "arn": rng.choice(WORDS[9:11]),
            "accountId": rng.choice(["123456789012", "210987654321"]),
            "userName": rng.choice(["alice", "password1", "AssumedRole"]),
            "principalId": "AIDA1:alice@example.com",
            "sessionContext": {
                "sessionIssuer": {"userName": rng.choice(["Admin", "ops"])},
                "attributes": {"mfaAuthenticated": rng.choice(["true", "false"])},
            },
        },
        "requestParameters": {
            "userName": rng.choice(["alice", "bob", "ß", "ADMIN"]),
            "policyDocument": rng.choice(POLICIES[:4]),
            "maxResults": rng.choice([10, 100, 1.0]),
            "roleArn": WORDS[10],
            "bucketName": "logs",
            "a.b": "dotted",
            "policyArn": WORDS[11],
        },
        "responseElements": {"ConsoleLogin": rng.choice(["Success", "Failure"])},
        "additionalEventData": {"MFAUsed": rng.choice(["Yes", "No"])},
        "resources": [
            {"ARN": WORDS[9], "type": "AWS::IAM::User", "accountId": "123456789012"},
            {"ARN": WORDS[10], "type": "AWS::IAM::Role"},
        ],
        "tlsDetails": {"tlsVersion": rng.choice(["TLSv1.2", "TLSv1"])},
        "key.with.dots": "dots",
        "key with spaces": "spaces",
        "n": rng.choice(NUMBERS),
        "list": ["a", "b"],
    }


# Where a rule reads: (path as keys, jq text).  Hostile records change what is there.
PATHS: list[tuple[tuple[str, ...], str]] = [
    (("eventName",), ".eventName"),
    (("eventSource",), ".eventSource"),
    (("eventType",), ".eventType"),
    (("errorCode",), ".errorCode"),
    (("readOnly",), ".readOnly"),
    (("sourceIPAddress",), ".sourceIPAddress"),
    (("userAgent",), ".userAgent"),
    (("recipientAccountId",), ".recipientAccountId"),
    (("userIdentity", "type"), ".userIdentity.type"),
    (("userIdentity", "arn"), ".userIdentity.arn"),
    (("userIdentity", "accountId"), ".userIdentity.accountId"),
    (("userIdentity", "userName"), ".userIdentity.userName"),
    (
        ("userIdentity", "sessionContext", "sessionIssuer", "userName"),
        ".userIdentity.sessionContext.sessionIssuer.userName",
    ),
    (
        ("userIdentity", "sessionContext", "attributes", "mfaAuthenticated"),
        ".userIdentity.sessionContext.attributes.mfaAuthenticated",
    ),
    (("requestParameters", "userName"), ".requestParameters.userName"),
    (("requestParameters", "policyDocument"), ".requestParameters.policyDocument"),
    (("requestParameters", "maxResults"), ".requestParameters.maxResults"),
    (("requestParameters", "roleArn"), ".requestParameters.roleArn"),
    (("requestParameters", "a.b"), '.requestParameters["a.b"]'),
    (("responseElements", "ConsoleLogin"), ".responseElements.ConsoleLogin"),
    (("additionalEventData", "MFAUsed"), ".additionalEventData.MFAUsed"),
    (("tlsDetails", "tlsVersion"), ".tlsDetails.tlsVersion"),
    (("key.with.dots",), '.["key.with.dots"]'),
    (("key with spaces",), '."key with spaces"'),
    (("n",), ".n"),
    (("list",), ".list"),
    (("resources",), ".resources"),
    (("missing",), ".missing"),
]


def hostile_record(rng: random.Random, n: int) -> dict[str, Any]:
    record = base_record(rng, n)
    for _ in range(rng.choice([0, 1, 1, 2, 3, 5])):
        keys, _ = rng.choice(PATHS)
        cut = rng.randint(1, len(keys))
        target: Any = record
        for key in keys[: cut - 1]:
            target = target.get(key) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            continue
        if rng.random() < 0.2:
            target.pop(keys[cut - 1], None)
        else:
            target[keys[cut - 1]] = adversarial_value(rng)
    return record


# --- programs


def jq_string(text: str, rng: random.Random) -> str:
    return json.dumps(text, ensure_ascii=rng.random() < 0.5)


class RuleGenerator:
    """Programs in the idioms of real rules; every subexpression parenthesised where jq's
    precedence could bind it otherwise."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.variables: list[str] = []

    # -- pieces

    def string(self) -> str:
        rng = self.rng
        pool = rng.choice([WORDS, EVENT_NAMES, UNICODE, NUMERIC_STRINGS, ["", "a", ":", "/"]])
        text = rng.choice(pool)
        if rng.random() < 0.1:
            text = text.upper() if rng.random() < 0.5 else text.lower()
        return jq_string(text, rng)

    def number(self) -> str:
        return self.rng.choice(
            ["0", "1", "2", "10", "100", "1.0", "1.5", "0.1", "1e300", "9007199254740993",
             "9007199254740992", "100000000000000000000", "(-1)", "(-0)", "3600"]
        )  # fmt: skip

    def literal(self) -> str:
        roll = self.rng.random()
        if roll < 0.6:
            return self.string()
        if roll < 0.8:
            return self.number()
        if roll < 0.95:
            return self.rng.choice(["true", "false", "null"])
        return self.rng.choice(['["a"]', "[]", "{}", '{"a": 1}', "[1, 2]"])

    def path(self) -> str:
        rng = self.rng
        _, text = rng.choice(PATHS)
        roll = rng.random()
        if roll < 0.05:
            return text + "?"
        if roll < 0.08 and text.count(".") > 1:
            head, _, tail = text.rpartition(".")
            return f"{head}?.{tail}"
        if roll < 0.12:
            return f"({text}[]?)"
        if roll < 0.14:
            return f"{text}[0]"
        if roll < 0.15:
            return f"{text}[-1]?"
        if roll < 0.2 and self.variables:
            return "$" + rng.choice(self.variables)
        return text

    def regex(self) -> str:
        rng = self.rng
        real = [
            "^(List|Get|Describe)",
            "UnauthorizedOperation$|^AccessDenied",
            ":policy/(AdministratorAccess|IAMFullAccess)$",
            "^[\\w.-]{1,8}$",
            "^[\\S]{1,10}$",
            "assumed-role/.*Admin",
            "^arn:aws:iam::[0-9]{12}:",
            "\\B",
            "(?:^|:)?root$",
            "^\\d+$",
            "admin",
            "[Kk]elvin|\u212a",
            "ß|ss",
            "^.$",
            "^(a+)+$",
        ]
        if rng.random() < 0.5:
            pattern = rng.choice(real)
        else:
            pattern, _ = PatternGenerator(rng, icase=False).pattern()
        flags = rng.choice(['"i"', '"x"', '"g"', '"gi"', "null", '"s"', '"q"', '""'])
        literal = jq_string(pattern, rng)
        return f"test({literal})" if rng.random() < 0.4 else f"test({literal}; {flags})"

    # -- expressions with (mostly) one value

    def pick(self, table: list[tuple[int, Callable[[], str]]]) -> str:
        """One entry's text, chosen by weight."""
        roll = self.rng.random() * sum(weight for weight, _ in table)
        for weight, make in table:
            roll -= weight
            if roll < 0:
                return make()
        return table[-1][1]()

    def value(self, depth: int = 0) -> str:
        rng = self.rng
        if depth >= 3:
            return self.path() if rng.random() < 0.8 else self.literal()
        p, d = self.path(), depth + 1
        return self.pick(
            [
                (42, lambda: p),
                (4, lambda: f"({p} // {self.literal()})"),
                (2, lambda: f"({p} // {self.value(d)})"),
                (16, lambda: f"({p} | {self.step()})"),
                (4, lambda: f'"{self.interpolation(depth)}"'),
                (3, lambda: f"[{self.value(d)}, {self.value(d)}]"),
                (3, lambda: f"{{k: {self.value(d)}, {rng.choice(OTHER_ENTRIES)}}}"),
                (3, lambda: f"({p} + {self.literal()})"),
                (
                    4,
                    lambda: (
                        f"(if {self.condition(d)} then {self.value(d)} else {self.value(d)} end)"
                    ),
                ),
                (4, lambda: f"(try {self.value(d)} catch {rng.choice(HANDLERS)})"),
                (4, lambda: f"({self.value(d)})?"),
                (3, lambda: f"first({p}[]?)"),
                (8, self.literal),
            ]
        )

    def step(self) -> str:
        """A builtin rules apply to a field's value."""
        s = self.string
        return self.pick(
            [(1, lambda step=step: step) for step in STEPS]
            + [
                (1, lambda: f"ltrimstr({s()})"),
                (1, lambda: f"rtrimstr({s()})"),
                (1, lambda: f"split({s()})"),
                (1, lambda: f"split({s()}) | last"),
                (1, lambda: f"split({s()}) | .[1]"),
                (1, lambda: f"index({s()})"),
            ]
        )

    def interpolation(self, depth: int) -> str:
        rng = self.rng
        parts = []
        for _ in range(rng.choice([1, 2, 3])):
            parts.append(rng.choice(["", "by ", ":", " from ", "ß"]))
            parts.append(f"\\({self.value(depth + 1)})")
        return "".join(parts)

    # -- conditions

    def condition(self, depth: int = 0) -> str:
        rng = self.rng
        d = depth + 1
        leaves: list[tuple[int, Callable[[], str]]] = [
            (12, lambda: f"({self.value(d)} {rng.choice(COMPARISONS)} {self.literal()})"),
            (4, lambda: f"({self.value(d)} == {self.value(d)})"),
            (10, lambda: f"({self.value(d)} | {self.regex()})"),
            (10, lambda: f"({self.value(d)} | {rng.choice(STRING_TESTS)}({self.string()}))"),
            (4, lambda: f"({self.value(d)} | has({self.string()}))"),
            (3, lambda: f"({self.value(d)} | IN({self.literals()}))"),
            (3, lambda: f"IN({self.value(d)}; {self.literals()})"),
            (2, lambda: f"isempty({self.path()}[]?)"),
            (2, lambda: f"({self.value(d)} | length > {rng.choice(['0', '1', '8'])})"),
            (3, lambda: f"(({self.value(d)} | type) == {rng.choice(TYPE_NAMES)})"),
            (3, lambda: self.value(d)),
        ]
        if depth >= 3:
            return self.pick(leaves)
        return self.pick(
            [
                *leaves,
                (6, lambda: f"{rng.choice(['any', 'all'])}({self.path()}[]?; {self.condition(d)})"),
                (8, lambda: f"({self.condition(d)} and {self.condition(d)})"),
                (8, lambda: f"({self.condition(d)} or {self.condition(d)})"),
                (6, lambda: f"({self.condition(d)} | not)"),
                (4, lambda: f"(try {self.condition(d)} catch false)"),
                (3, lambda: f"({self.condition(d)})?"),
                (
                    5,
                    lambda: (
                        f"(if {self.condition(d)} then {self.condition(d)}"
                        f" elif {self.condition(d)} then true else {self.condition(d)} end)"
                    ),
                ),
            ]
        )

    def literals(self) -> str:
        return ", ".join(self.literal() for _ in range(self.rng.choice([1, 2, 3])))

    # -- programs

    def program(self) -> str:
        rng = self.rng
        self.variables = []
        c, v = self.condition, self.value
        return self.pick(
            [
                (18, lambda: f"select({c()})"),
                (18, lambda: f"select({c()}) | {v()}"),
                (12, lambda: f'select({c()}) | "{self.interpolation(0)}"'),
                (6, lambda: f"select({c()}) | {{a: {v()}, b: {v()}}}"),
                (6, c),
                (4, v),
                (
                    6,
                    lambda: (
                        f"if {c()} then {v()} elif {c()} then {v()}"
                        f" else {rng.choice(['empty', 'null', v()])} end"
                    ),
                ),
                (8, self.binding),
                (6, lambda: f"select({c()}) | select({c()})"),
                (4, lambda: f'try (select({c()}) | {v()}) catch "err: \\(.)"'),
                (4, lambda: f"select({c()}) | [{v()}, {v()}]"),
                (3, lambda: f"select({c()}) | {rng.choice(ASSIGNED)} = {self.literal()}"),
                (2, lambda: f"select({c()}) | del(.{rng.choice(['n', 'list', 'none'])})"),
                (3, lambda: f"[{self.path()}[]?] | select(length > 0) | .[0]"),
            ]
        )

    def binding(self) -> str:
        source = self.value()
        self.variables = ["x"]
        use = self.rng.choice(["", ' | "\\($x)"', " | $x", " | {x: $x}"])
        return f"{source} as $x | select({self.condition()}){use}"


STEPS = [
    "tostring",
    "tojson",
    "length",
    "type",
    "ascii_downcase",
    "ascii_upcase",
    "tonumber",
    "tonumber?",
    "fromjson",
    "fromjson?",
    "fromjson? | .Statement",
    "(fromjson? // {}) | .Statement",
    "@base64d",
    "@base64",
    "keys",
    "first(.[]?)",
    'join(",")',
    "flatten",
    "values",
    "strings",
    "numbers",
    "not",
    "utf8bytelength",
    "tostring | length",
    'ascii_downcase | ltrimstr("arn:")',
    ".[0:3]?",
    "map(type)?",
    "to_entries?",
]
COMPARISONS = ["==", "==", "!=", "<", "<=", ">", ">="]
STRING_TESTS = ["startswith", "endswith", "contains", "inside", "ltrimstr", "index"]
TYPE_NAMES = ['"string"', '"number"', '"null"']
OTHER_ENTRIES = ["eventName", "n", '"x": 1']
HANDLERS = [".", '"caught"', "null"]
ASSIGNED = [".readOnly", ".n", ".eventName", ".new"]


def valid(program: str) -> bool:
    try:
        jq.compile(program)
    except ValueError:
        return False
    return True


def generate_programs(rng: random.Random, count: int) -> list[str]:
    generator = RuleGenerator(rng)
    programs: list[str] = []
    while len(programs) < count:
        program = generator.program()
        if valid(program):
            programs.append(program)
    return programs


# --- comparing


def native_problems(program: str, records: list[Any], verdicts: list[Verdict]) -> Iterator[str]:
    """The native evaluator on its own: libjq's first output, or libjq's error, or unsure."""
    compiled = compile_native(program)
    if compiled is None or not compiled.evaluable:
        return
    for record, verdict in zip(records, verdicts, strict=True):
        try:
            got = compiled.first_output(record)
        except _JqRuntimeError:
            if not verdict.raised:
                yield f"{program!r} on {record['eventID']}: native says jq errs, libjq {verdict}"
            continue
        except Fallback:
            continue
        if verdict.raised:
            yield f"{program!r} on {record['eventID']}: native {got!r:.200}, libjq {verdict}"
        elif got is NO_OUTPUT:
            if verdict.has_output:
                yield f"{program!r} on {record['eventID']}: native no output, libjq {verdict}"
        elif not verdict.has_output:
            yield f"{program!r} on {record['eventID']}: native {got!r:.200}, libjq no output"
        elif got is record:
            if not verdict.is_record:
                yield f"{program!r} on {record['eventID']}: native the record, libjq {verdict}"
        elif typed(as_binding(got)) != typed(verdict.output):
            yield f"{program!r} on {record['eventID']}: native {got!r:.200}, libjq {verdict}"


def engine_problems(
    programs: list[str], records: list[Any], texts: list[str], verdicts: list[list[Verdict]]
) -> Iterator[str]:
    """The engine (one rule set of all the programs) against libjq, record by record."""
    rule_set = RuleSet([RuleSource(f"rule{n}", p) for n, p in enumerate(programs)])
    evaluation = rule_set.evaluate(records, texts=[text.encode() for text in texts])
    position = {id(record): n for n, record in enumerate(records)}
    got: dict[tuple[int, int], tuple[str, Any]] = {}
    for match in evaluation.matches:
        got[(position[id(match.record)], match.rule_index)] = ("match", match.annotation)
    for sample in evaluation.error_samples:
        got[(int(sample.event_id[1:]), sample.rule_index)] = ("error", sample.message)
    for rule_index, program in enumerate(programs):
        for n, verdict in enumerate(verdicts[rule_index]):
            want: tuple[str, Any] | None = None
            if verdict.raised:
                # The message as the engine logs it (the binding's text of a string error).
                message = verdict.error if isinstance(verdict.error, str) else None
                want = ("error", message and " ".join(message.split()))
            elif verdict.matched:
                want = ("match", verdict.annotation)
            have = got.get((n, rule_index))
            if have is None and want is None:
                continue
            if (
                have is not None
                and want is not None
                and have[0] == want[0]
                and (typed(have[1]) == typed(want[1]) or (want[0] == "error" and want[1] is None))
            ):
                continue
            yield f"{program!r} on {records[n]['eventID']}: engine {have!r:.300}, libjq {verdict}"


def hostile_file(rng: random.Random, count: int) -> tuple[list[str], list[Any]]:
    """Records as a file writes them, and as the engine reads them (libjq reads the texts)."""
    texts = [file_text(rng, hostile_record(rng, n)) for n in range(count)]
    return texts, [json_input.loads(text.encode()) for text in texts]


def differences(seed: int, programs_count: int, records_count: int) -> list[str]:
    rng = random.Random(seed)
    programs = generate_programs(rng, programs_count)
    texts, records = hostile_file(rng, records_count)
    problems: list[str] = []
    for start in range(0, len(programs), RULES_PER_SET):
        batch = programs[start : start + RULES_PER_SET]
        verdicts = [libjq_verdicts(program, texts) for program in batch]
        for program, program_verdicts in zip(batch, verdicts, strict=True):
            problems.extend(native_problems(program, records, program_verdicts))
        problems.extend(engine_problems(batch, records, texts, verdicts))
    return problems


RULES_PER_SET = 8
RULE_FILES = [
    REPO / "config" / "tattletail.toml",
    REPO / "bench" / "rules-50.toml",
    REPO / "config" / "tattletail-pack.toml",
]


@pytest.fixture(autouse=True)
def every_error_sampled(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each rule error is compared with libjq's, record by record.
    monkeypatch.setattr(rules, "ERROR_SAMPLES_PER_RULE", 10**9)


@pytest.mark.parametrize("part", range(3))
def test_engine_equals_libjq_on_generated_rules_and_hostile_records(part: int) -> None:
    seed = fuzz_seed() * 10 + part
    problems = differences(seed, 400 * fuzz_scale(), 40)
    assert not problems, f"seed {seed}: {len(problems)} differences, e.g. {problems[:8]}"


def test_real_rules_equal_libjq_on_hostile_records() -> None:
    """The bundled rule pack, the bench pack and the README's rules, on hostile records."""
    seed = fuzz_seed()
    rng = random.Random(seed)
    # A sequence rule has no jq of its own (its steps' rules match for it).
    rules = [rule for path in RULE_FILES for rule in config.load_file(path).rules]
    sources = [rule.jq_match for rule in rules if rule.jq_match]
    texts, records = hostile_file(rng, 60 * fuzz_scale())
    problems: list[str] = []
    for start in range(0, len(sources), 25):
        batch = sources[start : start + 25]
        verdicts = [libjq_verdicts(source, texts) for source in batch]
        for source, source_verdicts in zip(batch, verdicts, strict=True):
            problems.extend(native_problems(source, records, source_verdicts))
        problems.extend(engine_problems(batch, records, texts, verdicts))
    assert not problems, f"seed {seed}: {len(problems)} differences, e.g. {problems[:8]}"
