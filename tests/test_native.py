"""The native fast path against libjq, which defines what a rule means.

Every check is differential: for a rule and a record, the native first output must be exactly
libjq's first output (or the native side must say Fallback), and a record the prefilter rejects
must be one on which libjq does not match.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jq
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tattletail.native import NO_OUTPUT, Fallback, NativeProgram, compile_native, required_values

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

README_RULES = [
    'select(.eventName == "CreateUser") | "username: \\(.responseElements.user.userName)"',
    'select(.eventName == "CreateAccessKey")',
    'select(.eventName|test("^(List|Get|Describe|AssumeRole|Decrypt|CreateLog|ConsoleLogin)")|not)',
]

SUPPORTED_RULES = [
    *README_RULES,
    # eventSource + eventName pairs, the bread and butter of CloudTrail detections
    'select(.eventSource == "iam.amazonaws.com" and .eventName == "CreateUser")',
    'select(.eventSource == "cloudtrail.amazonaws.com" and (.eventName == "StopLogging"'
    ' or .eventName == "DeleteTrail" or .eventName == "UpdateTrail"))',
    'select(.eventSource == "s3.amazonaws.com")'
    ' | select(.eventName == "PutBucketPolicy" or .eventName == "DeleteBucketPolicy")',
    'select(.eventName | IN("StopLogging", "DeleteTrail", "UpdateTrail", "PutEventSelectors"))',
    'select(IN(.eventName; "DeleteFlowLogs", "DeleteVpc", "LeaveOrganization"))',
    '.eventName | IN("GetSecretValue", "BatchGetSecretValue") | not',
    'select(.eventName == "CreateUser" or .eventName == "CreateAccessKey") | .userIdentity',
    'select(.eventName == ("GetPasswordData", "GetSecretValue")) | .requestParameters',
    # identities
    'select(.userIdentity.type == "Root")',
    '.userIdentity.type == "Root"',
    'select(.userIdentity.type == "Root" and .userIdentity.invokedBy == null'
    ' and .eventType != "AwsServiceEvent")',
    'select(.userIdentity.sessionContext.attributes.mfaAuthenticated == "false")',
    "select(.recipientAccountId != .userIdentity.accountId)",
    '.userIdentity.arn | test("assumed-role/.*Admin")',
    # error codes
    'select(.errorCode == "AccessDenied" or .errorCode == "Client.UnauthorizedOperation")',
    'select(.errorCode != null) | "\\(.eventName) failed: \\(.errorCode)"',
    'select(has("errorCode")) | .errorMessage',
    'select(.errorCode | . != null and startswith("AccessDenied"))',
    'if .errorCode then "error: \\(.errorCode)" else empty end',
    # any()/all() over arrays
    'select(.eventName == "AuthorizeSecurityGroupIngress"'
    " and any(.requestParameters.ipPermissions.items[]?.ipRanges.items[]?;"
    ' .cidrIp == "0.0.0.0/0"))',
    'any(.resources[]?; .type == "AWS::IAM::Role")',
    'select(any(.resources[]?; .ARN | strings | endswith(":root")))',
    'all(.resources[]?; .accountId == "123456789012")',
    "isempty(.resources[]?)",
    ".resources | any",
    # regexes and string functions
    'select(.eventName|test("^Delete")) | "deleted by \\(.userIdentity.arn)"',
    'select(.eventName|test("password"; "i"))',
    'select(.userAgent | test("^aws-cli/[0-9]"))',
    'select(.sourceIPAddress | test("^\\\\d+\\\\.\\\\d+\\\\.\\\\d+\\\\.\\\\d+$"))',
    'select(.eventName | ascii_downcase | contains("secret"))',
    'select(.eventName | startswith("Describe") | not)',
    'select(.eventName | endswith("Policy"))',
    '.eventName | test("^(Put|Delete)")',
    '.awsRegion | ascii_upcase | ltrimstr("US-")',
    '.eventSource | rtrimstr(".amazonaws.com")',
    # outputs of every JSON type, deep paths, alternatives, conditionals
    'select(.eventName == "GetSecretValue") | .requestParameters.secretId',
    'select(.eventName == "RunInstances") | .requestParameters.instanceType // "unknown"',
    '.responseElements.user.userName // .requestParameters.userName // "nobody"',
    '.requestParameters.userName? // "none"',
    'if .eventName == "ConsoleLogin" then .responseElements.ConsoleLogin'
    ' elif .eventName == "AssumeRole" then "assume" else null end',
    "select(.readOnly == false)",
    "select(.managementEvent == true and .readOnly == false) | .eventName",
    ".requestParameters | length",
    ".userIdentity | type",
    '.requestParameters | has("bucketName")',
    ".eventVersion | tostring",
    ".readOnly | tostring",
    '"\\(.eventName) by \\(.userIdentity.type) from \\(.sourceIPAddress) ro=\\(.readOnly)"',
    ".eventName | length > 20",
    "(.resources | length) >= 2",
    ".resources[0].ARN",
    ".resources[]?.ARN",
    ".requestParameters.ipPermissions.items[]?",
    ".requestParameters.maxResults > 100",
    ".requestParameters.durationSeconds == 3600",
    '.tlsDetails.tlsVersion < "TLSv1.2"',
    ".eventID == .requestID",
    # rules that raise jq errors on some records
    ".requestParameters.foo.bar",
    ".requestParameters.filterSet.items[0].name",
    '.requestParameters.name | test("stratus")',
    '.responseElements.credentials.accessKeyId | startswith("ASIA")',
    # generators, literals and syntax variants
    ".eventName, .eventSource",
    '(.eventName == "StopLogging")?',
    "empty",
    "null",
    "true",
    '."eventName" == .["eventName"]',
    'select(.eventName == "Create\\u0055ser") # a comment',
]

# Bodies outside the subset behind a select() the prefilter can still use.
PREFILTER_ONLY_RULES = {
    'select(.eventName == "CreateUser") | {user: .requestParameters.userName}': {
        ("eventName",): {"CreateUser"}
    },
    'select(.eventSource == "iam.amazonaws.com") | .requestParameters | keys': {
        ("eventSource",): {"iam.amazonaws.com"}
    },
    'select(IN(.eventName; "StopLogging", "DeleteTrail")) | [.userIdentity.arn, .awsRegion]': {
        ("eventName",): {"StopLogging", "DeleteTrail"}
    },
    'select(.eventName == "PutBucketPolicy") | .requestParameters.policy | tojson': {
        ("eventName",): {"PutBucketPolicy"}
    },
}

UNSUPPORTED_RULES = [
    "$__loc__",
    "env.HOME",
    "$ENV.HOME",
    "input",
    "def f: .; f",
    "reduce .[] as $x (0; . + 1)",
    "foreach .[] as $x (0; .)",
    "path(.a)",
    'getpath(["a"])',
    "@base64",
    "try .a",
    ". as $x | $x",
    ". as [$a] ?// $a | $a",
    "limit(1; .[])",
    "first(.[])",
    "range(3)",
    "tojson",
    "fromjson",
    'split(",")',
    'join(",")',
    "map(.)",
    "keys",
    "to_entries",
    "label $out | 1",
    "..",
    "{a: .b}",
    "[.a]",
    ".a = 1",
    "-1",
    ".a | length > 1.5",
    'select(.eventName | test("\\\\p{L}"))',
    'select(.eventName | test("a"; "s"))',
    'select(.eventName != "X") | {a: 1}',
]


# --- libjq, the reference


class _JqRuntimeErrorMarker:
    def __repr__(self) -> str:
        return "JQ_ERROR"


JQ_ERROR = _JqRuntimeErrorMarker()
FALLBACK = "<fallback>"


@cache
def jq_program(source: str) -> Any:
    return jq.compile(source)


def libjq_first(source: str, text: str) -> Any:
    """libjq's first output for one record: a value, NO_OUTPUT or JQ_ERROR."""
    it = iter(jq_program(source).input_text(text))
    try:
        return next(it)
    except StopIteration:
        return NO_OUTPUT
    except ValueError:
        return JQ_ERROR


def libjq_first_batched(rules: list[str], texts: list[str]) -> list[list[Any]]:
    """libjq_first for many rules and records, running libjq over all records at once.

    `try [R] catch "ERR"` holds every output of R, hence R's first output when R raises no
    error; where it raised, `try [first(R)] catch "ERR"` (exact, but slower in jq) tells whether
    the error came before the first output.  test_batched_oracle_agrees_with_single_record_libjq
    checks the construction against libjq_first.
    """
    all_outputs = "[" + ", ".join(f'(try [{r}\n] catch "ERR")' for r in rules) + "]"
    rows = [list(row) for row in jq.compile(all_outputs).input_text("\n".join(texts)).all()]
    assert len(rows) == len(texts)
    for j, rule in enumerate(rules):
        failed = [i for i, row in enumerate(rows) if row[j] == "ERR"]
        if failed:
            first = jq.compile(f'try [first({rule}\n)] catch "ERR"')
            cells = first.input_text("\n".join(texts[i] for i in failed)).all()
            for i, cell in zip(failed, cells, strict=True):
                rows[i][j] = cell
    return [
        [JQ_ERROR if cell == "ERR" else (cell[0] if cell else NO_OUTPUT) for cell in row]
        for row in rows
    ]


# --- comparing results


def as_binding(value: Any) -> Any:
    """How the jq binding reports a value: numbers through a double, integral ones as int."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, int):
        return value if abs(value) <= 2**53 else int(float(value))
    if isinstance(value, list):
        return [as_binding(v) for v in value]
    return {k: as_binding(v) for k, v in value.items()}


def same_json(a: Any, b: Any) -> bool:
    """Equal values of equal types all the way down (True is not 1, 1 is not 1.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_json(v, b[k]) for k, v in a.items())
    return a == b


def prefilter_rejects(required: Mapping[tuple[str, ...], frozenset[str]], record: Any) -> bool:
    for path, allowed in required.items():
        value = record
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if not (isinstance(value, str) and value in allowed):
            return True
    return False


def native_first(program: NativeProgram, record: Any) -> Any:
    try:
        return program.first_output(record)
    except Fallback:
        return FALLBACK


def problems_for(program: NativeProgram, record: Any, expected: Any) -> list[str]:
    got = native_first(program, record)
    problems = []
    if got is not FALLBACK:
        if got is NO_OUTPUT or expected is NO_OUTPUT or expected is JQ_ERROR:
            ok = got is expected
        else:
            ok = same_json(as_binding(got), expected)
        if not ok:
            problems.append(f"{program.source!r}: native {got!r}, libjq {expected!r}")
    no_match = expected is NO_OUTPUT or expected is None or expected is False
    if (
        program.required is not None
        and prefilter_rejects(program.required, record)
        and not no_match
    ):
        problems.append(f"{program.source!r}: prefilter rejected, libjq {expected!r}")
    return problems


@cache
def native(rule: str) -> NativeProgram:
    program = compile_native(rule)
    assert program is not None, rule
    return program


def compiled(rules: list[str]) -> list[NativeProgram]:
    return [native(rule) for rule in rules]


# --- real records


def load_real_records() -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for path in sorted((DATA / "cloudtrail").glob("*/*.json")):
        document = orjson.loads(path.read_bytes())
        records.extend(document["Records"] if isinstance(document, dict) else document)
    for line in (DATA / "detections" / "panther-cloudtrail-tests.jsonl").read_bytes().splitlines():
        case = orjson.loads(line)
        if case.get("is_cloudtrail_event"):
            records.append(case["log"])
    return records


ORACLE_RULES = SUPPORTED_RULES + list(PREFILTER_ONLY_RULES)


@pytest.fixture(scope="module")
def real() -> tuple[list[Any], list[str], list[list[Any]]]:
    """(records as orjson decodes them, the text libjq sees, libjq's first outputs)."""
    if not (DATA / "cloudtrail").is_dir():
        pytest.skip(f"no CloudTrail data at {DATA}")
    texts = [orjson.dumps(r).decode() for r in load_real_records()]
    records = [orjson.loads(t) for t in texts]
    return records, texts, libjq_first_batched(ORACLE_RULES, texts)


def test_batched_oracle_agrees_with_single_record_libjq(real: Any) -> None:
    records, texts, expected = real
    for i in range(0, len(records), 40):
        for j, rule in enumerate(ORACLE_RULES):
            single = libjq_first(rule, texts[i])
            batched = expected[i][j]
            assert single is batched or same_json(single, batched), (rule, i)


def test_native_first_output_equals_libjq_on_real_records(real: Any) -> None:
    records, _, expected = real
    programs = compiled(ORACLE_RULES)
    problems = [
        problem
        for record, row in zip(records, expected, strict=True)
        for program, want in zip(programs, row, strict=True)
        for problem in problems_for(program, record, want)
    ]
    assert not problems, f"{len(problems)} mismatches, e.g. {problems[:5]}"


def test_prefilter_rejects_only_records_libjq_does_not_match(real: Any) -> None:
    records, _, expected = real
    programs = compiled(ORACLE_RULES)
    rejected = 0
    for record, row in zip(records, expected, strict=True):
        for program, want in zip(programs, row, strict=True):
            if program.required is not None and prefilter_rejects(program.required, record):
                rejected += 1
                assert want is NO_OUTPUT or want is None or want is False, program.source
    assert rejected > len(records)  # it does prune, across many rules


def test_readme_rules_are_decided_natively_for_nearly_all_real_records(real: Any) -> None:
    records, _, _ = real
    for program in compiled(README_RULES):
        fallbacks = sum(native_first(program, r) is FALLBACK for r in records)
        assert fallbacks <= len(records) // 100, (program.source, fallbacks)


def test_most_real_rule_evaluations_skip_libjq(real: Any) -> None:
    records, _, _ = real
    programs = compiled(SUPPORTED_RULES)
    fallbacks = sum(native_first(p, r) is FALLBACK for p in programs for r in records)
    assert fallbacks <= len(programs) * len(records) // 20


# --- what compiles


def test_supported_rules_compile_to_evaluable_programs() -> None:
    for rule in SUPPORTED_RULES:
        program = compile_native(rule)
        assert program is not None and program.evaluable, rule


def test_rules_with_unsupported_bodies_keep_their_prefilter() -> None:
    for rule, required in PREFILTER_ONLY_RULES.items():
        program = compile_native(rule)
        assert program is not None and not program.evaluable, rule
        assert program.required == required
        with pytest.raises(Fallback):
            program.first_output({"eventName": "CreateUser"})


def test_unsupported_rules_are_refused() -> None:
    for rule in UNSUPPORTED_RULES:
        jq.compile(rule)  # valid jq: refusing is the native side's choice
        assert compile_native(rule) is None, rule


@pytest.mark.parametrize(
    ("rule", "required"),
    [
        ('select(.eventName == "CreateUser")', {("eventName",): {"CreateUser"}}),
        (
            'select(.eventSource == "iam.amazonaws.com" and .eventName == "CreateUser")',
            {("eventSource",): {"iam.amazonaws.com"}, ("eventName",): {"CreateUser"}},
        ),
        (
            'select(.eventName == "A" or .eventName == "B") | .x',
            {("eventName",): {"A", "B"}},
        ),
        (
            'select(.eventSource == "s3.amazonaws.com") | select(.eventName | IN("A", "B"))',
            {("eventSource",): {"s3.amazonaws.com"}, ("eventName",): {"A", "B"}},
        ),
        ('.eventName == "A"', {("eventName",): {"A"}}),
        ('if .eventName == "A" then .x else empty end', {("eventName",): {"A"}}),
        # no prefilter where it would not be sound
        ('select(.eventName != "A")', None),
        ('select(.eventName == "A" or .userIdentity.type == "Root")', None),
        ('select(.userIdentity.type == "Root")', None),  # `.userIdentity` may be a string
        ('select(.a.b == 1 and .eventName == "A")', None),  # errors before the check
        ('select(.a.b.c? == 1 and .eventName == "A")', None),  # `?` only guards `.c`
        ('select(.a.b? == 1 and .eventName == "A")', {("eventName",): {"A"}}),
        ('select(.eventName == "A") // 1', None),
        ('.eventName == "A" | not', None),
    ],
)
def test_prefilter_of_common_rule_shapes(rule: str, required: Any) -> None:
    got = required_values(rule)
    assert got == required
    program = compile_native(rule)
    assert (program.required if program else None) == required


# --- generated records

EVENT_NAMES = [
    "CreateUser",
    "CreateAccessKey",
    "ListUsers",
    "GetObject",
    "StopLogging",
    "DeleteTrail",
    "ConsoleLogin",
    "AuthorizeSecurityGroupIngress",
    "AssumeRole",
    "PutBucketPolicy",
    "٣",
    "Créate",
    "createuser",
    "password",
    "",
]
SOURCES = ["iam.amazonaws.com", "s3.amazonaws.com", "cloudtrail.amazonaws.com", "ec2.amazonaws.com"]
TEXT = st.text(
    st.sampled_from("aAzZ09 ._-/:\n\t@éßſKİ٣\u00a0\u2028😀\x00") | st.characters(codec="utf-8"),
    max_size=8,
)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.integers(-5, 5)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=6,
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return strategy | JSON


IP_RANGES = {"items": [{"cidrIp": "0.0.0.0/0"}, {"cidrIp": "10.0.0.0/8"}]}
RECORDS = st.fixed_dictionaries(
    {},
    optional={
        "eventName": maybe(st.sampled_from(EVENT_NAMES)),
        "eventSource": maybe(st.sampled_from(SOURCES)),
        "eventType": maybe(st.just("AwsServiceEvent")),
        "readOnly": maybe(st.booleans()),
        "managementEvent": maybe(st.booleans()),
        "errorCode": maybe(st.sampled_from(["AccessDenied", "AccessDeniedException"])),
        "userIdentity": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "type": maybe(st.sampled_from(["Root", "IAMUser", "AssumedRole"])),
                    "arn": maybe(st.just("arn:aws:sts::1:assumed-role/Admin/x")),
                    "accountId": maybe(st.just("123456789012")),
                },
            )
        ),
        "requestParameters": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "userName": JSON,
                    "name": maybe(st.sampled_from(["stratus-trail", "prod"])),
                    "maxResults": maybe(st.integers(0, 200)),
                    "durationSeconds": maybe(st.sampled_from([3600, 3600.0, 7200])),
                    "instanceType": JSON,
                    "secretId": JSON,
                    "bucketName": JSON,
                    "foo": JSON,
                    "ipPermissions": maybe(
                        st.fixed_dictionaries(
                            {
                                "items": maybe(
                                    st.lists(
                                        st.fixed_dictionaries(
                                            {"ipRanges": maybe(st.just(IP_RANGES))}
                                        ),
                                        max_size=2,
                                    )
                                )
                            }
                        )
                    ),
                },
            )
        ),
        "resources": maybe(
            st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "ARN": maybe(st.just("arn:aws:iam::123456789012:root")),
                        "type": maybe(st.just("AWS::IAM::Role")),
                        "accountId": maybe(st.just("123456789012")),
                    },
                ),
                max_size=3,
            )
        ),
        "responseElements": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "user": maybe(st.fixed_dictionaries({}, optional={"userName": JSON})),
                    "ConsoleLogin": maybe(st.sampled_from(["Success", "Failure"])),
                    "credentials": maybe(
                        st.fixed_dictionaries(
                            {}, optional={"accessKeyId": maybe(st.sampled_from(["ASIA1", "AKIA1"]))}
                        )
                    ),
                },
            )
        ),
        "userAgent": maybe(st.sampled_from(["aws-cli/2.13.5", "Boto3/1.2", "aws-cli/x"])),
        "awsRegion": maybe(st.sampled_from(["us-east-1", "eu-west-1", "us-ıeast"])),
        "tlsDetails": maybe(
            st.fixed_dictionaries(
                {}, optional={"tlsVersion": maybe(st.sampled_from(["TLSv1.2", "TLSv1"]))}
            )
        ),
        "recipientAccountId": maybe(st.just("123456789012")),
        "errorMessage": JSON,
        "sourceIPAddress": maybe(st.sampled_from(["1.2.3.4", "١.٢.٣.٤", "example.com"])),
        "eventID": JSON,
        "requestID": JSON,
    },
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(RECORDS)
def test_native_first_output_equals_libjq_on_generated_records(record: dict[str, Any]) -> None:
    text = orjson.dumps(record).decode()
    decoded = orjson.loads(text)
    problems = [
        problem
        for rule, program in zip(ORACLE_RULES, compiled(ORACLE_RULES), strict=True)
        for problem in problems_for(program, decoded, libjq_first(rule, text))
    ]
    assert not problems, problems


# Hand-picked corners of jq's semantics that the fast path decides itself...
DECIDED_NATIVELY = [
    (".a.b?", {"a": "x"}),  # `?` on the last step: no output
    ("(.a.b.c)?", {"a": "x"}),
    (".a[]?", {"a": 3}),
    (".[].a?", [{"a": 2}, 1, {"a": 3}]),
    ("(.[] | .a)?", [1, {"a": 3}]),  # try stops at the first error
    (".[1]", [1, 2]),
    (".[5]", [1, 2]),
    (".a == 1", {"a": True}),  # true is not 1 in jq
    (".a == true", {"a": 1}),
    ("select(.a == false)", {"a": 0}),
    ('select(.a != "x")', None),  # null.a is null
    ('select(.a != "x") | .b', None),
    (".a < 1", {"a": True}),  # null < false < true < numbers < strings < arrays < objects
    (".a < .b", {"a": [1, "x"], "b": [1, {}]}),
    (".a < .b", {"a": {"b": 1}, "b": {"a": 1}}),
    (".a == .b", {"a": {"x": [1, None]}, "b": {"x": [1, None]}}),
    ('.a == "x"', {"a": ["x"]}),
    (".a, .b.c", {"a": 1, "b": "s"}),  # the error after the first output is never reached
    (".a // .b.c", {"a": 1, "b": "s"}),
    ("(.a, .b) // 3", {"a": False, "b": None}),
    (".a and .b.c", {"a": False, "b": "s"}),  # short-circuit
    (".a or .b.c", {"a": 1, "b": "s"}),
    ("(true, false) and (false, true)", {}),
    ("(false, true) or (false, true)", {}),
    # binary operators and interpolations loop over their last operand outermost
    ('(.a, .b) + (.c, .d) | select(. != "ac")', {"a": "a", "b": "b", "c": "c", "d": "d"}),
    ('"\\(.a, .b)-\\(.c, .d)" | select(. != "a-c")', {"a": "a", "b": "b", "c": "c", "d": "d"}),
    ('"\\(.a, .b) \\(.c, .d)"', {"a": 1, "b": None, "c": True, "d": "x"}),
    (".a | length", {"a": -7}),
    (".a | length", {"a": "😀é"}),  # code points
    (".a | ascii_downcase", {"a": "ÀBC"}),  # ASCII letters only
    ('.a | test("^\\\\d$")', {"a": "3"}),
    ('has("a")', None),
    ("any(.a[]?; .)", {"a": None}),
    ("any(.[]; . == 1)", [1, "x"]),
    ("all(.[]; . == 1)", [1, "x"]),
    ('IN(.a; 1, "x")', {"a": "x"}),
    ("if .a then .b else .c end", {"a": 0, "b": "b", "c": "c"}),
    ("if (.a, .b) then 1 else 2 end", {"a": None, "b": True}),
    ("if .a then 1 end", {"a": None}),
    ('.a + "x"', {"a": None}),
    (".a + .b", {"a": 1, "b": 2}),
    (".a + .b", {"a": [1], "b": [2]}),
    (".a | values", {"a": None}),
    ("select(.a) | .b", {"a": 0, "b": 1}),
    (".", {"a": 1.0, "b": [2.5, 3.0]}),
    (".a", {"a": 1.0}),  # the binding reports integral numbers as int
    (".a", {"a": 2**60 + 1}),  # ...after a trip through a double
]

# ...and the ones it leaves to libjq: jq errors, and answers it cannot be sure of.
LEFT_TO_LIBJQ = [
    (".a.b", {"a": "x"}),
    (".a.b.c?", {"a": "x"}),  # `?` does not cover `.b`
    (".a[]", {"a": None}),
    (".[0]", {}),
    (".b.c, .a", {"a": 1, "b": "s"}),
    (".b.c // .a", {"a": 1, "b": "s"}),  # `//` does not swallow errors
    (".a == 1", {"a": 1.0}),  # floats: libjq may hold more digits than the double
    ('"\\(.a)"', {"a": 1.5}),
    ('("\\(.a)")?', {"a": 1.5}),  # being unsure is not an error `?` may swallow
    ('"\\(.a)"', {"a": 2**60}),
    ('"\\(.a)"', {"a": [1]}),
    (".a | tostring", {"a": {"b": 1}}),
    (".a | length", {"a": True}),
    ('.a | test("x")', {"a": None}),
    ('.a | test("^\\\\d$")', {"a": "٣"}),  # Oniguruma's \d is Unicode
    ('.a | test("SS"; "i")', {"a": "ß"}),  # Oniguruma folds ß to ss
    ('.a | startswith("x")', {"a": 1}),
    ('.a | ltrimstr("x")', {"a": 1}),
    ('.a | contains("x")', {"a": {"x": 1}}),
    ('.a | has("a")', {"a": [1]}),
    ("any(.a[]; .)", {"a": None}),
    ('.a + "x"', {"a": 1}),
]


@pytest.mark.parametrize(("rule", "record"), DECIDED_NATIVELY)
def test_corner_cases_are_decided_natively_like_libjq(rule: str, record: Any) -> None:
    program = native(rule)
    text = orjson.dumps(record).decode()
    assert native_first(program, orjson.loads(text)) is not FALLBACK
    assert not problems_for(program, orjson.loads(text), libjq_first(rule, text))


@pytest.mark.parametrize(("rule", "record"), LEFT_TO_LIBJQ)
def test_errors_and_unsure_cases_fall_back_to_libjq(rule: str, record: Any) -> None:
    text = orjson.dumps(record).decode()
    assert native_first(native(rule), orjson.loads(text)) is FALLBACK


def test_numbers_libjq_reads_more_precisely_than_a_double_fall_back() -> None:
    # jq compares number literals exactly; orjson rounds them to doubles.  When libjq is given
    # the original text rather than orjson's, only integers up to 2**53 can be trusted.
    text = '{"a": 1.00000000000000000001, "b": 9007199254740993}'
    record = orjson.loads(text)
    for rule in (".a == 1", ".a < 1", ".b == 9007199254740992", ".b > 9007199254740992"):
        expected = libjq_first(rule, text)
        got = native_first(native(rule), record)
        assert got is FALLBACK or got == expected, (rule, got, expected)


def test_an_error_after_the_first_output_does_not_change_it() -> None:
    record = {"a": 1, "b": "s"}
    program = compile_native(".a, .b.c")  # libjq: 1, then an error nobody asks for
    assert program is not None
    assert program.first_output(record) == 1
    program = compile_native(".b.c, .a")  # libjq: the error comes first
    assert program is not None
    with pytest.raises(Fallback):
        program.first_output(record)


# --- regexes

SUPPORTED_REGEXES = [
    ("^(List|Get|Describe|AssumeRole|Decrypt|CreateLog|ConsoleLogin)", ""),
    ("Policy$", ""),
    ("a.c", ""),
    ("^.$", ""),
    ("^\\d+$", ""),
    ("\\w+@\\w+", ""),
    ("\\s", ""),
    ("\\S\\W\\D", ""),
    ("\\bfoo\\b", ""),
    ("[a-z]+[0-9]{2,3}", ""),
    ("[^a-c]", ""),
    ("[-a]|[z-]", ""),
    ("[\\d.]", ""),
    ("colou?r", ""),
    ("x*?y", ""),
    ("(?:ab)+", ""),
    ("(?i)admin", ""),
    ("admin", ""),
    ("^aws-cli/", ""),
    ("^(?:Get|List|)", ""),
    ("admin", "i"),
    ("[a-f]x", "gi"),
    ("a.b", "x"),
    ("^$", ""),
    ("", ""),
    ("a|b|", ""),
    ("\\.\\-\\/", ""),
    ("é|😀", ""),
    ("a$", ""),
    ("\\Aa", ""),
    ("a\\nb", ""),
    ("(a|)(b)", ""),
    ("[ß]", ""),
]

REJECTED_REGEXES = [
    ("\\p{L}", ""),
    ("(?=a)", ""),
    ("(?<n>a)", ""),
    ("(a)\\1", ""),
    ("a{,2}", ""),
    ("[[:alpha:]]", ""),
    ("a**", ""),
    ("a*+", ""),
    ("[a&&b]", ""),
    ("\\h", ""),
    ("a\\z", ""),
    ("a\\Z", ""),
    ("x(?i)a", ""),
    ("ß", "i"),
    ("a b", "x"),
    ("a", "s"),
    ("a", "n"),
    ("a", "l"),
    ("[Z-a]", "i"),
    ("a{2,1}", ""),
    ("(a", ""),
    ("a]", ""),
]


def regex_rule(pattern: str, flags: str) -> str:
    suffix = f"; {json.dumps(flags)}" if flags else ""
    return f".s | test({json.dumps(pattern)}{suffix})"


@settings(max_examples=200, deadline=None)
@given(st.lists(TEXT, min_size=1, max_size=4).map("".join))
def test_regex_subset_matches_oniguruma(text: str) -> None:
    record_text = orjson.dumps({"s": text}).decode()
    record = orjson.loads(record_text)
    for pattern, flags in SUPPORTED_REGEXES:
        rule = regex_rule(pattern, flags)
        program = native(rule)
        assert program.evaluable, rule
        assert not problems_for(program, record, libjq_first(rule, record_text))


def test_regexes_outside_the_subset_are_refused() -> None:
    for pattern, flags in REJECTED_REGEXES:
        rule = regex_rule(pattern, flags)
        program = compile_native(rule)
        assert program is None or not program.evaluable, rule
