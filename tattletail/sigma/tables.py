"""The `[[rule]]` tables `tattletail sigma convert` writes, as TOML, and what a person added to
a previous conversion, kept.

Output is deterministic: the same tables always give the same text. Writing into a directory
again keeps, per rule (matched by name), what a person added to the previous conversion: its
`[[rule.test]]` tables, `enabled = ...` with the comment lines just above it, and tags the
converter does not write (such as `stratus:<technique>`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

from tattletail.sigma.memory import Memory

FILE_HEADER: Final = (
    "# Tattletail rules converted from Sigma by `tattletail sigma convert` (do not edit the\n"
    "# [[rule]] tables by hand: convert again; [[rule.test]] tables, `enabled = false` with its\n"
    "# comment and extra tags survive a conversion into the same directory).\n"
)


@dataclass(frozen=True)
class RuleTable:
    """One `[[rule]]` as the converter writes it."""

    name: str
    description: str
    severity: str
    tags: tuple[str, ...]
    runbook: str | None
    # None for a sequence (its steps match for it).
    jq_match: str | None
    title: str
    comments: tuple[str, ...]
    enabled: bool = True
    # false: a step of a sequence that sends no alert of its own (Sigma's `generate: false`).
    alert: bool = True
    # The rule's memory: `threshold = { ... }` and the like (see memory_line), or "".
    memory: str = ""
    # Kept from an earlier conversion of the same rule (see keep_additions).
    enabled_comments: tuple[str, ...] = ()
    tests: str = ""

    def toml(self) -> str:
        lines = [f"# {line}" if line else "#" for line in self.comments]
        lines.append("[[rule]]")
        lines.append(f"name = {basic(self.name)}")
        lines.append(f"description = {basic(self.description)}")
        lines.append(f'severity = "{self.severity}"')
        if not self.enabled or self.enabled_comments:
            lines.extend(self.enabled_comments)
            lines.append(f"enabled = {'true' if self.enabled else 'false'}")
        if not self.alert:
            lines.append("alert = false")
        lines.append(f"tags = [{', '.join(basic(tag) for tag in self.tags)}]")
        if self.runbook:
            lines.append(f"runbook = {basic(self.runbook)}")
        if self.jq_match is not None:
            lines.append(f"jq_match = {_multiline(self.jq_match)}")
        if self.memory:
            lines.append(self.memory)
        lines.append(f"title = {literal(self.title)}")
        text = "\n".join(lines) + "\n"
        return text + ("\n" + self.tests if self.tests else "")


def memory_line(memory: Memory, steps: Sequence[str] = ()) -> str:
    """The rule's stateful field as one TOML line; `steps` names a sequence's step rules."""
    parts = []
    if memory.kind == "sequence":
        parts.append(f"steps = [{', '.join(basic(step) for step in steps)}]")
        parts.append(f"within = {basic(memory.window)}")
    else:
        if memory.value is not None:
            parts.append(f"field = {literal(memory.value)}")
        parts.append(f"count = {memory.count}")
        parts.append(f"window = {basic(memory.window)}")
    group_by = memory.group_by
    if len(group_by) == 1:
        parts.append(f"group_by = {literal(group_by[0])}")
    elif group_by:
        parts.append(f"group_by = [{', '.join(literal(g) for g in group_by)}]")
    if memory.kind == "sequence" and not memory.ordered:
        parts.append("ordered = false")
    return f"{memory.kind} = {{ {', '.join(parts)} }}"


def render(tables: Sequence[RuleTable]) -> str:
    """A rule file: the header, then each table."""
    return FILE_HEADER + "".join("\n" + table.toml() for table in tables)


def keep_additions(tables: Sequence[RuleTable], previous: str) -> list[RuleTable]:
    """`tables`, each with what a person added to the table of the same name in an earlier
    conversion written as `previous` (see the module docstring)."""
    earlier = {}
    for chunk in _rule_chunks(previous):
        try:
            rules = tomllib.loads(chunk).get("rule")
        except tomllib.TOMLDecodeError:
            continue
        if isinstance(rules, list) and len(rules) == 1 and isinstance(rules[0], dict):
            earlier.setdefault(rules[0].get("name"), (rules[0], chunk))
    kept = []
    for table in tables:
        found = earlier.get(table.name)
        kept.append(table if found is None else _keep_one(table, *found))
    return kept


def _rule_chunks(text: str) -> list[str]:
    """The text of each `[[rule]]` table (with its comments above, its tests below)."""
    lines = text.splitlines(keepends=True)
    starts = []
    for n, line in enumerate(lines):
        if line.strip() == "[[rule]]":
            while n > 0 and lines[n - 1].startswith("#"):
                n -= 1
            starts.append(n)
    return ["".join(lines[a:b]) for a, b in zip(starts, [*starts[1:], len(lines)], strict=True)]


def _keep_one(table: RuleTable, old: dict[str, object], chunk: str) -> RuleTable:
    lines = chunk.splitlines(keepends=True)
    tests_start = next(
        (n for n, line in enumerate(lines) if line.strip() == "[[rule.test]]"), len(lines)
    )
    # Comments written just above the first [[rule.test]] belong to it.
    while tests_start > 0 and lines[tests_start - 1].lstrip().startswith("#"):
        tests_start -= 1
    tests = "".join(lines[tests_start:]).strip("\n")
    enabled_comments: list[str] = []
    for n, line in enumerate(lines[:tests_start]):
        if line.startswith("enabled ="):
            above = n
            while above > 0 and lines[above - 1].startswith("#"):
                above -= 1
            enabled_comments = [text.rstrip("\n") for text in lines[above:n]]
    tags = old.get("tags", [])
    extra = [
        tag
        for tag in (tags if isinstance(tags, list) else [])
        if isinstance(tag, str) and tag not in table.tags
    ]
    enabled = old.get("enabled", table.enabled)
    return replace(
        table,
        tags=table.tags + tuple(extra),
        enabled=enabled if isinstance(enabled, bool) else table.enabled,
        enabled_comments=tuple(enabled_comments),
        tests=tests + "\n" if tests else "",
    )


def basic(text: str) -> str:
    """A TOML basic string."""
    out = ['"']
    for c in text:
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def literal(text: str) -> str:
    """A TOML literal string (no escapes: jq's backslashes stay readable) when the text
    allows one, else a basic string."""
    if "'" in text or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return basic(text)
    return f"'{text}'"


def _multiline(text: str) -> str:
    """A TOML multi-line literal string when the text allows one, else a basic string."""
    safe = "'''" not in text and not text.endswith("'")
    if safe and not any(ord(c) < 0x20 and c not in "\t\n" or ord(c) == 0x7F for c in text):
        return f"'''\n{text}\n'''"
    return basic(text)
