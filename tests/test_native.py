"""The native fast path against libjq, which defines what a rule means.

Every check is differential: for a rule and a record, the native first output must be exactly
libjq's first output (or the native side must say Fallback), and a record the prefilter rejects
must be one on which libjq does not match.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import sys
import tomllib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import jq
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tattletail.native import NO_OUTPUT, Fallback, NativeProgram, compile_native, required_values
from tests.engine_support import as_binding

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
BENCH_PACK = REPO / "bench" / "rules-50.toml"

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
    # `as` bindings
    ".recipientAccountId as $account | select(.userIdentity.accountId != $account) | .eventName",
    '.eventName as $n | .eventSource as $s | "\\($s)/\\($n)"',
    ". as $r | .userIdentity as $u | [$u.type, $r.eventName]",
    ".resources[]? as $r | $r.ARN",
    '(.eventName, .eventSource) as $x | select($x | strings | startswith("C")) | $x',
    ".eventName as $x | .eventSource as $x | $x",
    ".readOnly as $ro | if $ro then .eventName else $ro end",
    # policy documents: JSON inside a string, statements one or many
    ".requestParameters.policyDocument | fromjson? | .Statement",
    "[.requestParameters.policyDocument | fromjson? | .Statement] | flatten | length",
    "[.requestParameters.policyDocument | fromjson? | .Statement] | flatten"
    ' | any(.[]; .Effect == "Allow")',
    "[.resources, [[.eventName]]] | flatten",
    '"[\\"x\\", {\\"y\\": null}] " | fromjson',
    # contains() of an expression
    ".recipientAccountId as $account | .userIdentity.arn | contains($account)",
    ".userIdentity.arn | contains(.)",
    # split, first, last, negative indexes
    '.userIdentity.arn | split(":")',
    '.userIdentity.arn | split(":") | .[4]',
    '.userIdentity.arn | split("/") | last',
    '.userIdentity.arn | split("") | first',
    '.eventName | split("e") | .[-2]',
    '.requestParameters.name // "" | split("-")',
    ".resources | first",
    ".resources | last",
    ".resources[-1].ARN",
    # constructions
    "[]",
    "{}",
    "(.resources // []) | length",
    "[.eventName, .readOnly, .userIdentity.type]",
    "[.resources[]?.ARN]",
    "[.resources[]? | .type // empty]",
    "{name: .eventName, who: .userIdentity.arn, ro: .readOnly}",
    '{eventName, "eventSource", "a b": .awsRegion}',
    ".eventName as $e | {$e, n: .requestParameters | .maxResults}",
    "{a: .eventName, a: .eventSource}",
    "{x: .requestParameters.foo.bar}",
    "{a: (.errorCode | select(. != null))}",
    # join, tojson, map, first(f), last(f)
    '[.eventName, .readOnly, .errorCode, .requestParameters.maxResults] | join("/")',
    '.resources // [] | map(.type) | join(",")',
    '[.resources[]? | .ARN // .type] | join(", ")',
    '[.requestParameters.userName, .eventName] | join(",")',
    ".eventName | tojson",
    ".readOnly | tojson",
    ".requestParameters.userName | tojson",
    '"\\(.eventName | tojson) by \\(.userIdentity.type | tojson)"',
    ".resources // [] | map(.ARN)",
    "first(.resources[]?.ARN)",
    "first(empty)",
    "last(.resources[]?.type)",
    "last(empty)",
    'first(.errorCode // empty, "none")',
    # paths walked but never used: jq may still raise on the way
    ".requestParameters.foo.bar as $x | .eventName",
    '.userIdentity.sessionContext.sessionIssuer | "seen"',
    '{a: .eventName, b: (.requestParameters.ipPermissions.items | "x")}',
]

# The 50-rule benchmark pack, evaluable or not.
BENCH_RULES: list[str] = (
    [rule["jq_match"] for rule in tomllib.loads(BENCH_PACK.read_text())["rule"]]
    if BENCH_PACK.is_file()
    else []
)

# Bodies outside the subset behind a select() the prefilter can still use.
PREFILTER_ONLY_RULES = {
    'select(.eventName == "CreateUser") | {user: .requestParameters.userName} | keys': {
        ("eventName",): {"CreateUser"}
    },
    'select(.eventSource == "iam.amazonaws.com") | .requestParameters | keys': {
        ("eventSource",): {"iam.amazonaws.com"}
    },
    'select(IN(.eventName; "StopLogging", "DeleteTrail")) | [.userIdentity.arn, .awsRegion]'
    " | add": {("eventName",): {"StopLogging", "DeleteTrail"}},
    'select(.eventName == "PutBucketPolicy") | .requestParameters | to_entries': {
        ("eventName",): {"PutBucketPolicy"}
    },
    # the rest of the program does not even parse natively: it stays opaque
    'select(.eventName == "CreateUser") | reduce .resources[]? as $r (0; . + 1)': {
        ("eventName",): {"CreateUser"}
    },
    'select(.eventName == "CreateUser") | def n: .userIdentity.type; "\\(n)"': {
        ("eventName",): {"CreateUser"}
    },
    'select(.eventSource == "s3.amazonaws.com") | try .requestParameters.foo.bar catch "bad"': {
        ("eventSource",): {"s3.amazonaws.com"}
    },
    'select(.eventName == "AssumeRole") | .userIdentity as {type: $t} | $t': {
        ("eventName",): {"AssumeRole"}
    },
    'select(.eventName == "AssumeRole") | label $out | .eventSource, break $out': {
        ("eventName",): {"AssumeRole"}
    },
    'select(.eventName | IN("ListUsers", "GetObject"))\n| .requestParameters.foo |= "x"': {
        ("eventName",): {"ListUsers", "GetObject"}
    },
    '.eventSource as $s | select(.eventName == "StopLogging")'
    " | foreach .resources[]? as $r (0; . + 1; [$s, .])": {("eventName",): {"StopLogging"}},
    'select(.eventName == "StopLogging") | .awsRegion as $r | reduce .a[]? as $x ($r; .)': {
        ("eventName",): {"StopLogging"}
    },
    'select(.eventSource == "iam.amazonaws.com") | select(.eventName == "CreateUser")'
    " | .requestParameters | to_entries": {
        ("eventSource",): {"iam.amazonaws.com"},
        ("eventName",): {"CreateUser"},
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
    ". as [$a] ?// $a | $a",
    ". as [$a] | $a",
    ". as {a: $a} | $a",
    "limit(1; .[])",
    "range(3)",
    "flatten(1)",
    'split(", "; "g")',
    "keys",
    "to_entries",
    "label $out | 1",
    "..",
    ".a = 1",
    "-1",
    ".a | length > 1.5",
    'select(.eventName | test("\\\\p{L}"))',
    'select(.eventName | test("a"; "s"))',
    # jq 1.8 binds `1 + .b as $x | ...` as `(1 + .b) as $x | ...`: not guessed at
    ".a + .b as $x | $x",
    ".a // .b as $x | $x",
    # objects with several values per key (cartesian products), computed keys, odd values
    "{a: .resources[]?}",
    "{(.eventName): 1}",
    '{"\\(.eventName)": 1}',
    "{$__loc__}",
    "{a: -1}",
    "{a: .b // 1}",
    ".[-1:]",
    ".[-.a]",
    ".a | split(.b)",
    "join(.a)",
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
    rows = [list(row) for row in jq_program(all_outputs).input_text("\n".join(texts)).all()]
    assert len(rows) == len(texts)
    for j, rule in enumerate(rules):
        failed = [i for i, row in enumerate(rows) if row[j] == "ERR"]
        if failed:
            first = jq_program(f'try [first({rule}\n)] catch "ERR"')
            cells = first.input_text("\n".join(texts[i] for i in failed)).all()
            for i, cell in zip(failed, cells, strict=True):
                rows[i][j] = cell
    return [
        [JQ_ERROR if cell == "ERR" else (cell[0] if cell else NO_OUTPUT) for cell in row]
        for row in rows
    ]


# --- comparing results


def same_json(a: Any, b: Any) -> bool:
    """Equal values of equal types all the way down (True is not 1, 1 is not 1.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_json(v, b[k]) for k, v in a.items())
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


ORACLE_RULES = list(dict.fromkeys(SUPPORTED_RULES + list(PREFILTER_ONLY_RULES) + BENCH_RULES))


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
    for i in range(0, len(records), 97):
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


@pytest.fixture(scope="module")
def bench_records(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Any], list[list[Any]]]:
    """Records of the benchmark generator that get past some bench rule's prefilter (the rare
    events it plants: cross-account AssumeRole, mass launches, shared snapshots...), at most 40
    per eventName, with libjq's first outputs of the bench rules."""
    generate = pytest.importorskip("bench.generate")
    if not BENCH_RULES or not (DATA / "cloudtrail").is_dir():
        pytest.skip("no bench pack or CloudTrail data")
    out = tmp_path_factory.mktemp("bundle")
    generate.generate(out, files=2, records=6000, seed=5, jobs=1)
    programs = compiled(BENCH_RULES)
    per_name: dict[Any, int] = {}
    texts = []
    for path in sorted(out.rglob("*.json.gz")):
        for record in orjson.loads(gzip.decompress(path.read_bytes()))["Records"]:
            name = record.get("eventName")
            if per_name.get(name, 0) < 40 and any(
                p.required and not prefilter_rejects(p.required, record) for p in programs
            ):
                per_name[name] = per_name.get(name, 0) + 1
                texts.append(orjson.dumps(record).decode())
    return [orjson.loads(t) for t in texts], libjq_first_batched(BENCH_RULES, texts)


def test_bench_rules_equal_libjq_on_the_records_they_are_about(bench_records: Any) -> None:
    records, expected = bench_records
    programs = compiled(BENCH_RULES)
    problems = [
        problem
        for record, row in zip(records, expected, strict=True)
        for program, want in zip(programs, row, strict=True)
        for problem in problems_for(program, record, want)
    ]
    assert not problems, f"{len(problems)} mismatches, e.g. {problems[:5]}"
    matched = {
        program.source
        for row in expected
        for program, want in zip(programs, row, strict=True)
        if want not in (NO_OUTPUT, None, False, JQ_ERROR)
    }
    assert len(matched) >= 15  # the planted events do reach the bodies


def test_bench_pack_is_decided_natively(bench_records: Any) -> None:
    """Every bench rule runs natively, the two that parse policy documents out of a string
    (fromjson) included, and none leaves more than one record in fifty to libjq."""
    records, _ = bench_records
    assert all(program.evaluable for program in compiled(BENCH_RULES))
    assert sum("fromjson" in program.source for program in compiled(BENCH_RULES)) == 2
    for program in compiled(BENCH_RULES):
        fallbacks = sum(native_first(program, r) is FALLBACK for r in records)
        assert fallbacks <= len(records) // 50, (program.source, fallbacks)


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
        # bindings, and programs whose later stages are opaque
        ('.x as $v | select(.eventName == "A")', {("eventName",): {"A"}}),
        ('.x.y as $v | select(.eventName == "A")', None),  # `.x.y` may raise first
        ('select(.eventName == "A") as $r | $r', {("eventName",): {"A"}}),
        (
            'select(.eventName == "A") | .x as $v | reduce .y[] as $i (0; .)',
            {("eventName",): {"A"}},
        ),
        ('select(.eventName == "A") | try error("x") catch .', {("eventName",): {"A"}}),
        ('select(.eventName == "A") | .x as [$v] | $v', {("eventName",): {"A"}}),
        ('select(.eventName == "A") | def f: .; f', {("eventName",): {"A"}}),
        ("select(.a.b == 1) | def f: .; f", None),
        ('select(.eventName == "A"), 1 | def f: .; f', None),
        ('def f: .; select(.eventName == "A")', None),
        (
            'select(.eventName == "A") | select(.eventSource == "B") | .a |= 1',
            {
                ("eventName",): {"A"},
                ("eventSource",): {"B"},
            },
        ),
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
    "GetSecretValue",
    "RunInstances",
    "CreateRole",
    "ModifySnapshotAttribute",
    "ModifyDBSnapshotAttribute",
    "٣",
    "Créate",
    "createuser",
    "password",
    "",
]
SOURCES = [
    "iam.amazonaws.com",
    "s3.amazonaws.com",
    "cloudtrail.amazonaws.com",
    "ec2.amazonaws.com",
    "sts.amazonaws.com",
]
ACCOUNTS = ["123456789012", "210987654321"]
ARNS = [
    "arn:aws:iam::123456789012:role/Admin",
    "arn:aws:iam::210987654321:role/x",
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbC",
    "no-colons",
    "",
    ":",
    "a::b:",
]
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
                    "type": maybe(
                        st.sampled_from(["Root", "IAMUser", "AssumedRole", "AWSService"])
                    ),
                    "arn": maybe(st.just("arn:aws:sts::1:assumed-role/Admin/x")),
                    "accountId": maybe(st.sampled_from(ACCOUNTS)),
                    "userName": maybe(st.sampled_from(["alice", "bob"])),
                    "principalId": maybe(st.sampled_from(["AROA1:alice@example.com", "AIDA1", ""])),
                    "sessionContext": maybe(
                        st.fixed_dictionaries(
                            {},
                            optional={
                                "sessionIssuer": maybe(
                                    st.fixed_dictionaries(
                                        {},
                                        optional={
                                            "userName": maybe(
                                                st.sampled_from(
                                                    ["AWSReservedSSO_AdministratorAccess_1a", "ops"]
                                                )
                                            )
                                        },
                                    )
                                ),
                                "ec2RoleDelivery": maybe(st.just("2.0")),
                            },
                        )
                    ),
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
                    "instanceType": maybe(st.sampled_from(["p3.2xlarge", "t3.micro"])),
                    "secretId": maybe(st.sampled_from(ARNS)),
                    "roleArn": maybe(st.sampled_from(ARNS)),
                    "attributeName": maybe(st.just("restore")),
                    "valuesToAdd": maybe(st.lists(maybe(st.sampled_from(ACCOUNTS)), max_size=3)),
                    "createVolumePermission": maybe(
                        st.fixed_dictionaries(
                            {},
                            optional={
                                "add": maybe(
                                    st.fixed_dictionaries(
                                        {},
                                        optional={
                                            "items": maybe(
                                                st.lists(
                                                    st.fixed_dictionaries(
                                                        {},
                                                        optional={
                                                            "userId": JSON,
                                                            "group": maybe(st.just("all")),
                                                        },
                                                    ),
                                                    max_size=2,
                                                )
                                            )
                                        },
                                    )
                                )
                            },
                        )
                    ),
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
                    "instancesSet": maybe(
                        st.fixed_dictionaries(
                            {},
                            optional={"items": maybe(st.lists(st.just({}), max_size=12))},
                        )
                    ),
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
        "recipientAccountId": maybe(st.sampled_from(ACCOUNTS)),
        "additionalEventData": maybe(
            st.fixed_dictionaries({}, optional={"MFAUsed": maybe(st.sampled_from(["Yes", "No"]))})
        ),
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
    (expected,) = libjq_first_batched(ORACLE_RULES, [text])
    problems = [
        problem
        for program, want in zip(compiled(ORACLE_RULES), expected, strict=True)
        for problem in problems_for(program, decoded, want)
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
    # bindings
    (". as $x | $x", {"a": 1}),
    (".a as $x | .b as $y | [$x, $y, $x.c]", {"a": {"c": 2}, "b": 3}),
    ("(.a, .b) as $x | $x", {"a": 1, "b": 2}),
    (".[] as $x | select($x > 1) | $x", [1, 2, 3]),
    ("(.[] as $x | [$x]), 9", [1, 2]),
    ("1 as $x | 2 as $x | $x", None),
    ("1 as $x | (2 as $x | $x), $x", None),
    (".a as $x | .b | .c as $y | [$x, $y]", {"a": 1, "b": {"c": 2}}),
    ('. as $x | "\\($x.a)-\\(.b)"', {"a": 1, "b": "x"}),
    (".a as $x | empty", {"a": 1}),
    ("empty as $x | 1", None),
    ("[(1, 2) as $x | (10, 20) as $y | [$x, $y]]", None),
    (".a[]? as $x | $x", {"a": 3}),
    # split / first / last / negative indexes
    ('split(":")', ""),
    ('split(":")', "a::b:"),
    ('split(":")', ":"),
    ('split("aa")', "aaa"),
    ('split("")', "aé😀"),
    ('split("")', ""),
    ('split("é")', "xéyé"),
    (".[-1]", [1, 2]),
    (".[-2]", [1, 2]),
    (".[-3]", [1, 2]),
    (".[-1]", None),
    ("first", []),
    ("last", []),
    ("first", None),
    ("last", [1, [2]]),
    # constructions
    ("[]", None),
    ("{}", None),
    ("[.a[]?]", {"a": 3}),
    ("[.[] | .a?]", [1, {"a": 2}]),
    ("[.[] | .a]?", [{"a": 1}, 2]),  # the error is caught: no output at all
    ("[.a, .b] | length", {"a": 1}),
    ("{a: .x, a: .y}", {"x": 1, "y": 2}),
    ("{b: .y, a: .x}", {"x": 1, "y": 2}),
    ("{a: empty, b: .x.y}", {"x": "s"}),  # no output before the error
    ("{a: (.x | select(. > 1))}", {"x": 1}),
    ("{a}", {"a": [1]}),
    ('{"a", b: .a | length}', {"a": [1, 2]}),
    ("{if: 1, end: 2, as}", {"as": 3}),
    ('{a: .b | .c, "d"}', {"b": {"c": 1}, "d": 2}),
    # join / tojson / map / first(f) / last(f)
    ('join(",")', [1, None, True, "x", False]),
    ('join(",")', []),
    ('join("")', ["a"]),
    ('join(", ")', ["a", "b"]),
    ("tojson", 'a"b\\c/\u0000\u001f\u007f\u0080é\u2028😀\n\t\r\b\f'),
    ("tojson", None),
    ("tojson", False),
    ("tojson", -12),
    ("tojson", [1, None, {"b\u007f": ["x", True]}]),  # containers (tests/test_native_sigma.py)
    ("tojson", {"a": 1}),
    ("map(.a)", [{"a": 1}, {"a": 2}]),
    ("map(.a)", {"x": {"a": 1}, "y": {"a": 2}}),
    ("map(.[]?)", [[1, 2], 3, [4]]),
    ("first(.[] | .a)", [{"a": 1}, 2]),  # the error after the first output is never reached
    ("first(empty)", None),
    ("first(.a, .b)", {"b": 1}),
    ("last(.[])", [1, 2, 3]),
    ("last(empty)", None),
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
    ('split(":")', None),
    ('split(":")', 1),
    ("first", "ab"),
    ("last", {"a": 1}),
    (".[-1]", {"a": 1}),
    ('join(",")', "ab"),
    ('join(",")', None),
    ('join(",")', [[1]]),
    ('join(",")', [1.5]),  # jq prints the literal it read
    ('join(",")', [2**60]),
    ('join(",")', {"a": "x"}),
    ("tojson", 1.5),
    ("tojson", [1, 2.5]),  # a float anywhere in a container
    ("tojson", {"a": 2**60}),
    ("[.[] | .a]", [{"a": 1}, 2]),
    ("{a: .x.y, b: empty}", {"x": "s"}),
    ("last(.[] | .a)", [{"a": 1}, 2]),
    ("map(.a)", [1]),
    (".a as $x | $x.b", {"a": "s"}),
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


# Issue 10, defect 1 (native part): text nested deeper than Python's stack, run through
# `fromjson`.  libjq parses up to 10,000 levels (an object level counts twice) and fails past
# them ("Exceeds depth limit for parsing"); the fast path answers where it can and otherwise
# falls back, never raising anything else.
DEEP_TEXTS = {
    f"{kind} {depth}": text
    for depth in (300, 1000, 1024, 1025, 5000, 10000, 10001, 20000)
    for kind, text in (
        ("arrays", "[" * depth + "]" * depth),
        ("objects", '{"a":' * (depth // 2) + "true" + "}" * (depth // 2)),
        ("mixed", '[{"a":' * (depth // 2) + '"x"' + "}]" * (depth // 2)),
    )
}
DEEP_RULES = [
    "select(.x | fromjson? | length > 0)",
    '.x | fromjson? | type == "array"',
    "[.x | fromjson?] | length",
    "(.x | fromjson | length)?",
    ".x | fromjson | length",
    "(.x | fromjson) == (.x | fromjson)",
    ".x | fromjson | flatten | length",
    "try (.x | fromjson | length) catch 0",
]


@pytest.mark.parametrize("name", list(DEEP_TEXTS))
def test_fromjson_of_deeply_nested_text_gives_libjqs_answer(name: str) -> None:
    record = {"x": DEEP_TEXTS[name]}
    text = orjson.dumps(record).decode()
    answered = 0
    for rule in DEEP_RULES:
        program = compile_native(rule)
        if program is None or not program.evaluable:
            continue  # try/catch: libjq's
        try:
            program.first_output(record)
        except Fallback:
            continue  # libjq decides: never any other exception
        answered += 1
        assert problems_for(program, record, libjq_first(rule, text)) == [], rule
    depth = int(name.split()[1])
    assert answered or depth > 1024  # orjson reads 1,024 levels; beyond them libjq decides


def test_programs_chained_deeper_than_the_analyses_recursion_are_left_to_libjq() -> None:
    for rule in (".a" * 2000, " | ".join(["."] * 2000), "not | " * 2000 + "."):
        jq_program(rule)  # libjq compiles them
        assert compile_native(rule) is None
        assert required_values(rule) is None


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
    # finite languages, tested with string methods
    ("az|Z0", "i"),
    ("a|z|", ""),
    ("^(a|Az)$", ""),
    ("^a(Z|z)?a$", ""),
    ("^(A|z)0?$", "i"),
    ("(a|Z)$", ""),
    ("(a|Z)0$", "i"),
    ("^(?:a|)z", "i"),
    ("^a\\.z\\$", ""),
    ("K", "i"),  # Oniguruma folds the Kelvin sign to k
    ("s", "i"),  # ...and long s to s
    ("ss", "i"),  # ...and ß to ss
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


FINITE_PATTERNS = [
    ("kali|parrot|pentoo", True),
    ("^Attach(User|Role|Group)Policy$", False),
    ("^(DeleteDetector|StopConfigurationRecorder)$", False),
    ("^UpdateFunction(Code|Configuration)", False),
    ("^Send(Serial)?(Console)?SSHPublicKey$", False),
    ("Polic(y|ies)$", True),
    ("^a?b?$", False),
    ("^x\\.y\\-$", True),
]


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_finite_regexes_equal_python_re(data: Any) -> None:
    """Set and string-method matching of finite patterns means what `re` means (which
    test_regex_subset_matches_oniguruma ties to Oniguruma)."""
    for pattern, icase in FINITE_PATTERNS:
        pieces = [w for w in re.split(r"[()|?^$\\]+", pattern) if w]
        text = data.draw(
            st.lists(st.sampled_from([*pieces, "\n", "X", "a", "\u212a"]), max_size=5).map(
                lambda parts: "".join(parts)
            )
        )
        text = text.upper() if icase and data.draw(st.booleans()) else text
        compiled = re.compile(pattern, re.ASCII | (re.IGNORECASE if icase else 0))
        program = native(regex_rule(pattern, "i" if icase else ""))
        got = native_first(program, {"s": text})
        if got is not FALLBACK:
            assert got == (compiled.search(text) is not None), (pattern, text)
        else:
            assert icase and not text.isascii()


def test_regexes_outside_the_subset_are_refused() -> None:
    for pattern, flags in REJECTED_REGEXES:
        rule = regex_rule(pattern, flags)
        program = compile_native(rule)
        assert program is None or not program.evaluable, rule


# Issue 10, defect 10: where Oniguruma and Python's re part ways.
ONIGURUMA_QUIRKS = [
    # With "i", a positive class holding \w, \S or \D also matches "ss", "st", "ff", "fi",
    # "fl", "ffi", "ffl" as one character (ß ﬆ ﬀ ﬁ ﬂ ﬃ ﬄ fold to them): such input is libjq's.
    ('.s | test("^[\\\\w.-]{1,8}$"; "i")', "password1", True, False),
    ('.s | test("^[\\\\S]{1,10}$"; "i")', "AssumedRole", True, False),
    ('.s | test("^[\\\\D]$"; "i")', "FFI", True, False),
    ('.s | test("^[\\\\w.-]{1,8}$"; "i")', "alice-01", True, True),  # no such sequence
    ('.s | test("^\\\\w{1,8}$"; "i")', "password1", False, True),  # not in a class
    ('.s | test("^[^0-9]$"; "i")', "ss", False, True),  # not in a negated class
    # `\B` matches in the empty string
    ('.s | test("\\\\B")', "", True, True),
    ('.s | test("^\\\\B$")', "", True, True),
    ('.s | test("\\\\B")', "a", False, True),
    # Past 10,000,000 backtracks Oniguruma gives up: a jq error, not an answer
    ('.s | test("^[\\\\w.-]{1,64}$"; "i")', "f" * 40 + "!", JQ_ERROR, False),
    ('.s | test("^(\\\\w|\\\\d)*$")', "1" * 30 + "!", JQ_ERROR, False),
    ('.s | test("^(\\\\w|\\\\d)*$")', "1" * 12 + "!", False, True),
    # ...also where the repeat cannot reach its least count (found by the regex fuzz)
    ('.s | test("(?:-[^K]?){1000,}?a?\\\\s")', "-" * 120, JQ_ERROR, False),
    ('.s | test("(?:-[^K]?){1000,}?a?\\\\s")', "-" * 12, False, True),
    # After an anchor of zero width, a greedy `.` repeat makes Oniguruma try line starts only
    ('.s | test("\\\\b.+\'")', " T/a''", False, False),
    ('.s | test("\\\\b(.*)x")', " ax", False, False),
    ('.s | test("\\\\b.*?\'")', " T/a''", True, True),  # lazy: every position is tried
]


@pytest.mark.parametrize(("rule", "text", "expected", "decided_natively"), ONIGURUMA_QUIRKS)
def test_regex_quirks_of_oniguruma(
    rule: str, text: str, expected: Any, decided_natively: bool
) -> None:
    record_text = orjson.dumps({"s": text}).decode()
    assert libjq_first(rule, record_text) is expected
    program = compile_native(rule)
    got = FALLBACK if program is None else native_first(program, {"s": text})
    assert got is (expected if decided_natively else FALLBACK)


@pytest.mark.parametrize(
    "pattern",
    ["(?:^|:)?root$", "(?:^)?root", "(?:$|a)+", "(?:\\\\b)?a", "a(?:^|b)?", "(^a|b)*"],
)
def test_quantified_groups_of_anchors_are_left_to_libjq(pattern: str) -> None:
    """Oniguruma refuses a quantifier on some groups holding an anchor ("target of repeat
    operator is invalid"): the rule errors on every string; natively such a group is never
    quantified."""
    rule = f'.s | test("{pattern}")'
    program = compile_native(rule)
    assert program is None or not program.evaluable
    if pattern != "(^a|b)*":  # a capture group is allowed by Oniguruma
        assert libjq_first(rule, '{"s": "root"}') is JQ_ERROR


def test_multi_character_case_foldings_are_the_ones_the_fast_path_knows() -> None:
    """Every character whose full case folding is several ASCII characters (what a folding
    class can match in ASCII input), and the class escapes that hold it."""
    folds = {chr(c): chr(c).casefold() for c in range(sys.maxunicode + 1)}
    ascii_multi = {c: f for c, f in folds.items() if len(f) > 1 and f.isascii()}
    assert set(ascii_multi.values()) == {"ss", "st", "ff", "fi", "fl", "ffi", "ffl"}
    for char in ascii_multi:
        assert all(re.fullmatch(f"[{e}]", char) for e in ("\\w", "\\S", "\\D"))
        assert not any(re.fullmatch(f"[{e}]", char) for e in ("\\W", "\\s", "\\d"))
    assert sum(1 for f in folds.values() if len(f) > 1) <= 128  # native's push bound per class


def test_tojson_of_strings_escapes_like_jq() -> None:
    chars = [chr(c) for c in range(0x300)]
    chars += [chr(c) for c in (0x7FF, 0x800, 0x2028, 0x2029, 0xFEFF, 0xFFFD, 0xFFFF, 0x1F600)]
    text = orjson.dumps([*chars, "".join(chars)]).decode()
    got = native_first(native("map(tojson)"), orjson.loads(text))
    assert got == libjq_first("map(tojson)", text)


# --- memoisation: the paths that determine the first output


@pytest.mark.parametrize(
    ("rule", "reads", "identity_output"),
    [
        (README_RULES[0], (("eventName",), ("responseElements", "user", "userName")), False),
        (README_RULES[1], (("eventName",),), True),
        (README_RULES[2], (("eventName",),), True),
        (".", (), True),
        ("empty", (), False),
        ("true", (), False),
        ('.a.b | "x"', (("a", "b"),), False),  # `.a` may be a string: jq raises there
        (".a as $x | $x.b", (("a", "b"),), False),
        (".a | .b, .c", (("a", "b"), ("a", "c")), False),
        ("select(.a) | .b", (("a",), ("b",)), False),
        ("if .a then . else empty end", (("a",),), True),
        ('.u | select(.t == "R")', (("u",), ("u", "t")), False),
        ('.eventName | split(":") | last', (("eventName",),), False),
        ('[.a, .b.c] | join(",")', (("a",), ("b", "c")), False),
        ("{x: .a}", (("a",),), False),
        ("first(.a, .b)", (("a",), ("b",)), False),
        # not determined by a few paths' values
        ("if .a then . else null end", None, False),
        ('select(has("a"))', None, False),
        (".a[]?", None, False),
        (".a[0]", None, False),
        ("any(.a[]?; . == 1)", None, False),
        ("map(.x)", None, False),
        ("select(. == {})", None, False),
        ('select(.eventName == "A") | keys', None, False),  # not evaluable
    ],
)
def test_reads_of_common_shapes(rule: str, reads: Any, identity_output: bool) -> None:
    program = compile_native(rule)
    assert program is not None
    assert (program.reads, program.identity_output) == (reads, identity_output)
    if reads is None:
        assert program.memo_key({"a": 1}) is None


def test_memo_key_tells_apart_what_jq_tells_apart() -> None:
    key = native(".a.b == 1").memo_key
    assert len({key({"a": {"b": v}}) for v in (1, True, "1", None, 2)}) == 5
    # A float or 0 may be one of several literals libjq reads apart (1.0, 1.00; 0, -0).
    assert all(key({"a": {"b": v}}) is None for v in (1.0, 0.0, -0.0, 0, float("nan")))
    # a missing key and null read the same, on the way and at the end...
    assert key({}) == key({"a": None}) == key({"a": {}}) == key({"a": {"b": None}})
    # ...but not a string on the way, where jq raises an error
    assert key({"a": "s"}) != key({})
    assert key({"a": {"b": 1}, "c": [1]}) == key({"a": {"b": 1}})
    assert key({"a": {"b": [1]}}) is None  # containers are not keyed
    assert native("select(.eventName == 1)").memo_key({"eventName": 1}) == ((int, 1),)
    # strings, booleans and nulls take a shortcut that must give the keys the general walk gives
    key2 = native('"\\(.a.b) \\(.c) \\(.d.e.f)"').memo_key
    assert key2({"a": {"b": "x"}, "d": {"e": None}}) == ("x", None, None)
    assert key2({"a": {"b": "x"}, "d": {"e": {"f": "y"}}, "c": 1}) == ("x", (int, 1), "y")
    assert key2({"a": {"b": "x"}, "c": True}) == ("x", True, None)
    assert key2({"a": {"b": "x"}, "c": True, "d": {"e": {"f": 1}}}) == ("x", True, (int, 1))
    assert key2({"a": "x", "d": {"e": {"f": "y"}}})[0] != key2({"d": {"e": {"f": "y"}}})[0]


def results_agree(program: NativeProgram, a: tuple[Any, Any], b: tuple[Any, Any]) -> bool:
    """The memoisation contract for (record, first output) pairs of records with equal keys."""
    (record_a, out_a), (record_b, out_b) = a, b
    if FALLBACK in (out_a, out_b):
        return True  # the native side may always be unsure
    markers = (NO_OUTPUT, JQ_ERROR)
    if out_a in markers or out_b in markers:
        return out_a is out_b
    if program.identity_output and out_a is not None and out_a is not False:
        return is_the_record(out_a, record_a) and is_the_record(out_b, record_b)
    return same_json(as_binding(out_a), as_binding(out_b))


_BOUND: dict[int, tuple[Any, bytes]] = {}


def is_the_record(output: Any, record: Any) -> bool:
    """Whether an output is the record as the binding reports it (types kept apart by orjson)."""
    if output is record:
        return True
    try:
        if id(record) not in _BOUND:
            _BOUND[id(record)] = (record, orjson.dumps(as_binding(record)))
        return orjson.dumps(output) == _BOUND[id(record)][1]
    except TypeError:  # integers beyond 64 bits
        return same_json(output, as_binding(record))


def check_memo_groups(rules: list[str], records: list[Any], expected: list[list[Any]]) -> int:
    """Records with equal memo keys have equivalent libjq (and native) results; returns how many
    records shared a key with an earlier one."""
    hits = 0
    for j, program in enumerate(compiled(rules)):
        if program.reads is None:
            continue
        groups: dict[Any, tuple[Any, Any]] = {}
        natives: dict[Any, Any] = {}
        for n, (record, row) in enumerate(zip(records, expected, strict=True)):
            key = program.memo_key(record)
            if key is None:
                continue
            first = groups.setdefault(key, (record, row[j]))
            if first[0] is record:
                continue
            hits += 1
            assert results_agree(program, first, (record, row[j])), (program.source, key)
            if n % 7 == 0:  # the native side too, on a sample (it is checked against libjq)
                if key not in natives:
                    natives[key] = (first[0], native_first(program, first[0]))
                mine = (record, native_first(program, record))
                assert results_agree(program, natives[key], mine), (program.source, key)
    return hits


def test_records_with_equal_memo_keys_get_equal_results(real: Any, bench_records: Any) -> None:
    records, _, expected = real
    assert check_memo_groups(ORACLE_RULES, records, expected) > 10 * len(records)
    assert check_memo_groups(BENCH_RULES, *bench_records) > len(bench_records[0])


MEMO_RULES = [rule for rule in ORACLE_RULES if native(rule).reads is not None]
MEMO_GROUPS = [tuple(MEMO_RULES[i : i + 12]) for i in range(0, len(MEMO_RULES), 12)]
_MISSING = object()


def twin(v: Any) -> Any:
    """A value Python finds equal to v that jq tells apart (or v itself)."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int) and -(2**53) < v < 2**53:
        return float(v) if v not in (0, 1) else bool(v)
    if isinstance(v, float):
        return -v if v == 0 else int(v) if v.is_integer() and abs(v) < 2**53 else v
    return v


def overlay(
    a: dict[str, Any], b: dict[str, Any], paths: set[tuple[str, ...]], rnd: random.Random
) -> Any:
    """A copy of b that agrees with a on every path as jq walks it: objects on the way, then the
    value, null (written as null or left out) or where the walk stops.  Sometimes the value is
    swapped for its twin instead, which memo keys must tell apart (True and 1, 0.0 and -0.0)."""
    b = json.loads(json.dumps(b))
    for path in sorted(paths):
        cur_a, cur_b = a, b
        for depth, key in enumerate(path):
            va = cur_a.get(key, _MISSING)
            if isinstance(va, dict) and depth < len(path) - 1:
                if not isinstance(cur_b.get(key), dict):
                    cur_b[key] = {}
                cur_a, cur_b = va, cur_b[key]
                continue
            if va is _MISSING or va is None:
                if rnd.random() < 0.5:
                    cur_b[key] = None
                else:
                    cur_b.pop(key, None)
            else:
                va = twin(va) if rnd.random() < 0.25 else va
                cur_b[key] = json.loads(json.dumps(va))
            break
    return b


def libjq_error_message(rule: str, text: str) -> str:
    try:
        next(iter(jq_program(rule).input_text(text)))
    except ValueError as exc:
        return str(exc)
    raise AssertionError("no error")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(RECORDS, RECORDS, st.randoms(use_true_random=False))
def test_records_agreeing_on_reads_get_the_same_result(
    a: dict[str, Any], b: dict[str, Any], rnd: random.Random
) -> None:
    """For each group of rules, b is made to agree with a on the paths the group reads (or to
    hold twins of a's values there); wherever the memo keys are equal, so are the results."""
    text_a = orjson.dumps(a).decode()
    a = orjson.loads(text_a)
    for rules in MEMO_GROUPS:
        paths = {path for rule in rules for path in native(rule).reads or ()}
        text_b = orjson.dumps(overlay(a, orjson.loads(orjson.dumps(b)), paths, rnd)).decode()
        b_group = orjson.loads(text_b)
        rows = libjq_first_batched(list(rules), [text_a, text_b])
        for rule, out_a, out_b in zip(rules, *rows, strict=True):
            program = native(rule)
            key = program.memo_key(a)
            if key is None or program.memo_key(b_group) != key:
                continue
            assert results_agree(program, (a, out_a), (b_group, out_b)), (rule, out_a, out_b)
            if out_a is JQ_ERROR:
                assert libjq_error_message(rule, text_a) == libjq_error_message(rule, text_b)
            native_a, native_b = native_first(program, a), native_first(program, b_group)
            assert results_agree(program, (a, native_a), (b_group, native_b)), rule


def test_programs_with_bindings_are_safe_to_share_between_threads() -> None:
    program = native('.a as $x | .b as $y | [$x, $y, ($x | tostring) + "-" + ($y | tostring)]')
    records = [{"a": i, "b": -i} for i in range(1, 201)]
    expected = [[i, -i, f"{i}--{i}"] for i in range(1, 201)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda r: [program.first_output(r) for _ in "x" * 20], records))
    finally:
        sys.setswitchinterval(switch)
    for outputs, want in zip(results, expected, strict=True):
        assert all(out == want for out in outputs)


@pytest.mark.parametrize(
    ("program", "record"),
    [
        # jq keeps a number's literal text; orjson does not: libjq decides.
        (".a | fromjson", {"a": '{"n": 1.0}'}),
        # jq reads `nan`, orjson does not.
        (".a | fromjson", {"a": "nan"}),
        # jq's containment of objects is recursive, not modelled.
        (".a as $x | .b | contains($x)", {"a": {"k": "v"}, "b": {"k": "v", "l": 1}}),
        # flatten iterates an object's values.
        (".a | flatten", {"a": {"k": [1]}}),
    ],
)
def test_what_the_fast_path_leaves_to_libjq(program: str, record: dict[str, Any]) -> None:
    assert native_first(native(program), record) is FALLBACK


@pytest.mark.parametrize(
    ("program", "record"),
    [
        (".a | fromjson", {"a": None}),
        (".a | flatten", {"a": "text"}),
        (".a as $x | .b | contains($x)", {"a": "x", "b": None}),
        (".a as $x | .b | contains($x)", {"a": 1, "b": "text"}),
    ],
)
def test_errors_jq_certainly_raises_are_left_to_libjq_for_their_message(
    program: str, record: dict[str, Any]
) -> None:
    assert libjq_first(program, orjson.dumps(record).decode()) is JQ_ERROR
    assert native_first(native(program), record) is FALLBACK
    # Under `?` they are no output, natively.
    assert native(f"({program})?").first_output(record) is NO_OUTPUT
