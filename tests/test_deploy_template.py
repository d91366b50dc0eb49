"""deploy/template.yaml against the code it deploys: the dedupe and state tables have the key
and TTL attribute their code writes, the function's environment names only real settings, and
the role grants exactly the AWS actions the Lambda's code calls (every one of them, and nothing
else but what Lambda itself needs).

The template is read with cfn-lint's loader (it knows `!Ref`, `!Sub`, `!If`); the code's calls
are found in the source of every module the Lambda handler imports, as calls of a botocore
operation's method on a client of a service the code asks `client()` for.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import botocore.session
import pytest
from botocore import xform_name

from tattletail import dedupe
from tattletail.settings import documented_variables
from tattletail.state import dynamodb as state_dynamodb
from tests.deploy_support import statements, template
from tests.support import REPO

PACKAGE = REPO / "tattletail"
ENTRY = "tattletail.lambda_handler"

# Statements for what Lambda itself does with the role, not the code: (actions, why).
PLATFORM = {
    "WriteOwnLogs": ({"logs:CreateLogStream", "logs:PutLogEvents"}, "the runtime's log shipping"),
    "ConsumeTriggerQueue": (
        {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"},
        "the SQS event source mapping polls with the function's role",
    ),
    "AsyncOnFailureDestination": ({"sqs:SendMessage"}, "Lambda's on-failure destination"),
    "DecryptTrailLogFiles": ({"kms:Decrypt"}, "S3 decrypts SSE-KMS log files for GetObject"),
    "UseDestinationKeys": (
        {"kms:Decrypt", "kms:GenerateDataKey"},
        "SNS, SQS, S3, SSM and Secrets Manager use their KMS keys on the caller's behalf",
    ),
}
# IAM authorises some operations under another operation's action.
ACTION_OF = {
    "s3:HeadObject": "s3:GetObject",
    "s3:ListObjectsV2": "s3:ListBucket",
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sns:PublishBatch": "sns:Publish",
}


def actions_of(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


def _module_path(name: str) -> Path | None:
    relative = Path(*name.split("."))
    for path in (REPO / relative.with_suffix(".py"), REPO / relative / "__init__.py"):
        if path.exists():
            return path
    return None


def lambda_modules() -> dict[str, ast.Module]:
    """Every tattletail module the Lambda handler imports, directly or not, at any depth
    (imports inside functions included)."""
    found: dict[str, ast.Module] = {}
    pending = [ENTRY]
    while pending:
        name = pending.pop()
        path = _module_path(name)
        if name in found or path is None:
            continue
        tree = ast.parse(path.read_text(), str(path))
        found[name] = tree
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                pending += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                base = node.module
                if node.level:
                    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        package = package.rpartition(".")[0]
                    base = f"{package}.{node.module}"
                pending.append(base)
                pending += [f"{base}.{alias.name}" for alias in node.names]
    return {name: tree for name, tree in found.items() if name.startswith("tattletail")}


@cache
def called_actions() -> dict[str, set[str]]:
    """IAM action -> the modules whose code calls it."""
    modules = lambda_modules()
    services = {
        node.args[0].value
        for tree in modules.values()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "client"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }
    session = botocore.session.get_session()
    operations: dict[str, set[str]] = {}
    for service in services:
        model = session.get_service_model(service)
        prefix = model.metadata.get("signingName") or model.metadata["endpointPrefix"]
        for operation in model.operation_names:
            action = f"{prefix}:{operation}"
            operations.setdefault(xform_name(operation), set()).add(ACTION_OF.get(action, action))
    called: dict[str, set[str]] = {}
    for name, tree in modules.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                for action in operations.get(node.func.attr, ()):
                    called.setdefault(action, set()).add(name)
    return called


@pytest.mark.parametrize(
    ("resource", "module"), [("DedupeTable", dedupe), ("StateTable", state_dynamodb)]
)
def test_each_table_has_the_key_and_ttl_attribute_its_code_writes(
    resource: str, module: ModuleType
) -> None:
    table = template()["Resources"][resource]["Properties"]

    assert table["KeySchema"] == [{"AttributeName": module.KEY, "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": module.KEY, "AttributeType": "S"}]
    assert table["TimeToLiveSpecification"] == {
        "AttributeName": module.TTL_ATTRIBUTE,
        "Enabled": True,
    }


def test_no_parameter_can_make_the_dedupe_table_differ_from_the_code() -> None:
    assert "DedupeKeyAttribute" not in template()["Parameters"]


def test_the_dedupe_statement_grants_the_table_named_in_the_functions_environment() -> None:
    [statement] = [s for s in statements() if s.get("Sid") == "DedupeTable"]
    environment = template()["Resources"]["Function"]["Properties"]["Environment"]["Variables"]

    assert statement["Resource"]["Fn::Sub"].endswith(":table/${DedupeTableName}")
    assert environment["TATTLETAIL_DEDUPE_TABLE"]["Fn::If"][1] == {"Ref": "DedupeTableName"}


def test_the_function_environment_names_only_real_settings() -> None:
    environment = template()["Resources"]["Function"]["Properties"]["Environment"]["Variables"]

    assert set(environment) <= {name for name, _, _ in documented_variables()}


def test_every_aws_call_of_the_lambdas_code_is_granted_by_the_role() -> None:
    granted = {action for statement in statements() for action in actions_of(statement)}
    called = called_actions()

    # The scan finds the calls it should (a check of the check).
    assert {"s3:GetObject", "sns:Publish", "dynamodb:PutItem"} <= set(called)
    missing = {action: sorted(where) for action, where in called.items() if action not in granted}
    assert missing == {}, "the code calls these, deploy/template.yaml does not grant them"


def test_the_role_grants_nothing_the_code_never_calls() -> None:
    called = called_actions()
    unused = {}
    for statement in statements():
        sid = statement.get("Sid")
        if sid in PLATFORM:
            assert actions_of(statement) == PLATFORM[sid][0], sid
            continue
        extra = actions_of(statement) - set(called)
        if extra:
            unused[sid] = sorted(extra)

    assert unused == {}, "granted but never called by the code: remove them"
