"""How the tests share code: one way each.

Shared helpers live in support modules (`tests/support.py`, `tests/lambda_support.py`,
`tests/engine_support.py`, `tests/destinations/destination_support.py`, ...) imported as
`from tests.<module> import ...`; conftest.py holds fixtures, which pytest hands out, and is
never imported; no test module imports another; nothing edits sys.path (pyproject.toml's
`pythonpath` and the `tests` package already make `tests.` and `bench` importable).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import REPO

TESTS = REPO / "tests"


def python_files() -> list[Path]:
    return sorted(TESTS.rglob("*.py"))


def local_modules() -> set[str]:
    """Names a test file could import bare, by the accident of pytest's sys.path insertion."""
    return {path.stem for path in python_files()} - {"__init__"}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_helpers_are_imported_from_the_tests_package_and_never_from_conftest() -> None:
    bare = local_modules()
    problems = []
    for path in python_files():
        for line, module in imported_modules(path):
            where = f"{path.relative_to(REPO)}:{line}: import of {module}"
            parts = module.split(".")
            if parts[-1] == "conftest":
                problems.append(
                    f"{where}: conftest.py holds fixtures; import helpers from "
                    "tests.support (or another support module)"
                )
            elif parts[-1].startswith("test_"):
                problems.append(f"{where}: move what both modules need to a support module")
            elif parts[0] in bare:
                problems.append(f"{where}: write it as tests.{module}")
    assert problems == []


def test_no_test_module_edits_sys_path() -> None:
    offenders = []
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "path"
                and isinstance(node.value, ast.Name)
                and node.value.id == "sys"
            ):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []
