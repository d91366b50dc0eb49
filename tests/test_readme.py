"""The README and the documents it links describe what the code does: every setting with its
default, the commands CI runs, every rule of the pack, every destination type, rule key and
metric, commands that the CLI accepts, and links that lead somewhere."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

from tattletail.cli import build_parser
from tattletail.config import RULE_KEYS
from tattletail.destinations import DESTINATION_TYPES
from tattletail.settings import Settings, documented_variables
from tests.support import REPO

README = (REPO / "README.md").read_text()
DOCS = sorted((REPO / "docs").glob("*.md"))
# Every document a reader reaches from the README.
LINKED = [
    REPO / "README.md",
    *DOCS,
    REPO / "deploy" / "README.md",
    REPO / "config" / "rules" / "README.md",
    REPO / "bench" / "RESULTS.md",
]


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


def test_readme_is_a_ten_minute_read_with_a_contents_list_of_its_sections() -> None:
    assert len(README.splitlines()) <= 450
    sections = re.findall(r"^## (.+)$", README, flags=re.MULTILINE)
    contents = README.split("## Contents", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\d+\. \[(.+?)\]\(#([^)]+)\)$", contents, flags=re.MULTILINE)
    assert [title for title, _ in listed] == [s for s in sections if s != "Contents"]
    assert all(anchor == slug(title) for title, anchor in listed)


def test_rule_pack_readme_lists_every_rule_of_the_pack_with_its_severity() -> None:
    text = (REPO / "config" / "rules" / "README.md").read_text()
    listed = dict(re.findall(r"^\| (.+?) \| (info|low|medium|high|critical) \| ", text, re.M))
    pack = {}
    for path in sorted((REPO / "config" / "rules").glob("*.toml")):
        for rule in tomllib.loads(path.read_text())["rule"]:
            pack[rule["name"]] = rule["severity"]
    assert pack and listed == pack


def test_every_destination_type_is_documented_in_the_readme_and_in_detail() -> None:
    detail = (REPO / "docs" / "destinations.md").read_text()
    for name in DESTINATION_TYPES:
        assert f"| `{name}` |" in README, name
        assert f"| `{name}` |" in detail, name


def test_every_rule_key_is_documented() -> None:
    rules_doc = (REPO / "docs" / "rules.md").read_text()
    for key in RULE_KEYS:
        shown = "[[rule.test]]" if key == "test" else key
        # In the first cell of a row of the rule fields table.
        assert re.search(rf"^\| [^|]*`{re.escape(shown)}`[^|]*\|", rules_doc, re.M), key


def test_every_metric_is_documented() -> None:
    source = (REPO / "tattletail" / "metrics.py").read_text()
    names = set(re.findall(r'"([A-Z][A-Za-z]+)"\]?\s*[:=]\s*\(', source))
    assert {"Objects", "AlertsSent", "FileLagSeconds"} <= names
    operations = (REPO / "docs" / "operations.md").read_text()
    assert [name for name in sorted(names) if f"`{name}`" not in operations] == []


def shell_commands(path: Path) -> list[str]:
    """Every `tattletail ...` command in the document's sh code blocks."""
    blocks = re.findall(r"^```sh\n(.*?)^```", path.read_text(), flags=re.M | re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip().startswith("tattletail ")]


@pytest.mark.parametrize("path", LINKED, ids=lambda p: str(p.relative_to(REPO)))
def test_every_tattletail_command_in_the_docs_is_one_the_cli_accepts(path: Path) -> None:
    for command in shell_commands(path):
        words = shlex.split(command.split(" #", 1)[0].split(" > ", 1)[0])
        build_parser().parse_args(words[1:])  # a usage error exits 2 and fails the test


def slug(title: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", title.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("path", LINKED, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(path: Path) -> None:
    text = path.read_text()
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", linked.read_text(), flags=re.M)
            if anchor not in {slug(h) for h in headings}:
                broken.append(target)
    assert broken == []
