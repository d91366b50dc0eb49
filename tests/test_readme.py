"""The README documents what the code does: every setting with its default, and the commands CI
runs."""

from __future__ import annotations

import re

from tattletail.settings import Settings, documented_variables
from tests.support import REPO

README = (REPO / "README.md").read_text()


def env_table() -> dict[str, str]:
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]+) \|", README, flags=re.MULTILINE)
    return {name: default.strip() for name, default in rows}


def test_every_setting_is_in_the_readme_table_with_its_default() -> None:
    table = env_table()
    for name, _default, _ in documented_variables():
        assert name in table, f"{name} is missing from README's environment table"
        if name == "TATTLETAIL_WORKERS":
            assert "CPU" in table[name]
            continue
        value = Settings.from_env({})
        field = next(
            f for f in value.__dataclass_fields__.values() if f.metadata["var"].name == name
        )
        expected = getattr(value, field.name)
        shown = table[name].strip("`")
        if isinstance(expected, bool):
            assert shown == str(expected).lower(), name
        elif isinstance(expected, str):
            assert shown in {expected, "empty"} if not expected else shown == expected, name
        else:
            assert float(shown) == float(expected), name


def test_readme_names_the_ci_commands() -> None:
    for marker in ("install", "main-job", "test-command"):
        assert f"<!-- ci:{marker} -->" in README
    ci = (REPO / ".ci" / "run").read_text()
    assert "extract main-job" in ci and "extract test-command" in ci


def test_readme_lists_every_rule_of_the_pack_with_its_severity() -> None:
    import tomllib

    listed = dict(re.findall(r"^\| (.+?) \| (info|low|medium|high|critical) \| `", README, re.M))
    pack = {}
    for path in sorted((REPO / "config" / "rules").glob("*.toml")):
        for rule in tomllib.loads(path.read_text())["rule"]:
            pack[rule["name"]] = rule["severity"]
    assert pack and listed == pack
