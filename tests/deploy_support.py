"""deploy/template.yaml as the tests read it: with cfn-lint's loader, which knows `!Ref`, `!Sub`
and `!If`."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

from cfnlint.decode import cfn_yaml

from tests.support import REPO

TEMPLATE = REPO / "deploy" / "template.yaml"


@cache
def template() -> Any:
    return cfn_yaml.load(str(TEMPLATE))


def statements() -> Iterator[dict[str, Any]]:
    """The execution role's statements, each `!If [cond, statement, NoValue]` unwrapped."""
    for policy in template()["Resources"]["ExecutionRole"]["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            if "Fn::If" in statement:
                _, statement, otherwise = statement["Fn::If"]
                assert otherwise == {"Ref": "AWS::NoValue"}
            yield statement
