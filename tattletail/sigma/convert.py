"""Sigma YAML files to Tattletail `[[rule]]` tables (`tattletail sigma convert` and `check`).

Each Sigma rule becomes one `[[rule]]`: `name` from its title, `description` from its
description with its author (the Detection Rule License asks that alerts name the author),
`severity` from `level`, `tags` (`sigma:<id>`, ATT&CK technique ids such as `T1098.001`, the
other Sigma tags as written), `runbook` from `falsepositives` and `references`, a `title`
expression (the alert's heading: the rule's title, the call and who made it), and `jq_match`
from JqBackend. Comments above the table keep its id, author, dates, license and source file.
No `destinations`: the including config's `default_destinations` routes converted rules.

Output is deterministic: the same rules always give the same text. Writing into a directory
(one `<rule file>.toml` per Sigma file) keeps what a person added to a previous conversion:
its `[[rule.test]]` tables, `enabled = false` with the comment above it, and tags the converter
does not write (such as `stratus:<technique>`).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import yaml
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError, SigmaIdentifierError
from sigma.rule import SigmaRule

from tattletail.native import compile_native
from tattletail.rule_index import on_index
from tattletail.sigma import checks, jqtext
from tattletail.sigma.backend import JqBackend

SIGMA_SUFFIXES: Final = (".yml", ".yaml")
_SEVERITY: Final = {
    "informational": "info",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "critical": "critical",
}
_TECHNIQUE: Final = re.compile(r"t\d{4}(\.\d{3})?")
_DISABLED_STATUSES: Final = frozenset({"deprecated", "unsupported"})


@dataclass(frozen=True)
class RuleTable:
    """One `[[rule]]` as the converter writes it."""

    name: str
    description: str
    severity: str
    tags: tuple[str, ...]
    runbook: str | None
    jq_match: str
    title: str
    comments: tuple[str, ...]
    enabled: bool = True
    # Kept from an earlier conversion of the same rule (see keep_additions).
    enabled_comments: tuple[str, ...] = ()
    tests: str = ""

    def toml(self) -> str:
        lines = [f"# {line}" if line else "#" for line in self.comments]
        lines.append("[[rule]]")
        lines.append(f"name = {_basic(self.name)}")
        lines.append(f"description = {_basic(self.description)}")
        lines.append(f'severity = "{self.severity}"')
        if not self.enabled or self.enabled_comments:
            lines.extend(self.enabled_comments)
            lines.append(f"enabled = {'true' if self.enabled else 'false'}")
        lines.append(f"tags = [{', '.join(_basic(tag) for tag in self.tags)}]")
        if self.runbook:
            lines.append(f"runbook = {_basic(self.runbook)}")
        lines.append(f"jq_match = {_multiline(self.jq_match)}")
        lines.append(f"title = {_literal(self.title)}")
        text = "\n".join(lines) + "\n"
        return text + ("\n" + self.tests if self.tests else "")


@dataclass(frozen=True)
class Conversion:
    """What became of one Sigma rule (or correlation rule) of one file."""

    path: Path
    title: str
    sigma_id: str
    table: RuleTable | None = None
    unsupported: str | None = None
    warnings: tuple[str, ...] = ()
    native: bool = False
    # The indexed fields the engine decides the rule's first select on, once per index key.
    gate: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        if self.unsupported is not None:
            return "unsupported"
        return "warning" if self.warnings else "converted"


@dataclass
class Converter:
    """Converts Sigma files; one instance per run (rule names are made unique across it)."""

    backend: JqBackend = field(default_factory=JqBackend)
    _names: set[str] = field(default_factory=set)

    def convert_paths(self, paths: Sequence[str | Path]) -> list[Conversion]:
        return [c for path in sigma_files(paths) for c in self.convert_file(path)]

    def convert_file(self, path: Path) -> list[Conversion]:
        try:
            collection = SigmaCollection.from_yaml(path.read_text(encoding="utf-8"), True)
        except (OSError, UnicodeDecodeError, yaml.YAMLError, SigmaError) as exc:
            reason = " ".join(str(exc).split())
            return [Conversion(path, path.stem, "", unsupported=f"cannot read: {reason}")]
        return [self.convert_rule(path, rule) for rule in collection.rules]

    def convert_rule(self, path: Path, rule: Any) -> Conversion:
        title = str(getattr(rule, "title", "") or path.stem)
        sigma_id = str(rule.id) if getattr(rule, "id", None) else ""
        if isinstance(rule, SigmaCorrelationRule):
            kind = getattr(rule.type, "value", rule.type)
            return Conversion(path, title, sigma_id, unsupported=f"correlation rule ({kind})")
        if not isinstance(rule, SigmaRule):
            kind = type(rule).__name__
            return Conversion(path, title, sigma_id, unsupported=f"{kind} (not a detection rule)")
        warnings = []
        for error in rule.errors:
            if isinstance(error, SigmaIdentifierError):
                warnings.append(f"id {sigma_id!r} is not a UUID (kept as written)")
            else:
                return Conversion(path, title, sigma_id, unsupported=f"invalid rule: {error}")
        construct = checks.unsupported(rule)
        if construct is not None:
            return Conversion(path, title, sigma_id, unsupported=construct)
        try:
            jq_match = self.backend.jq_program(rule)
            warnings += checks.pitfalls(rule)
        except SigmaError as exc:
            return Conversion(path, title, sigma_id, unsupported=_message(exc))
        except NotImplementedError as exc:
            return Conversion(path, title, sigma_id, unsupported=str(exc))
        native = compile_native(jq_match)
        gate: tuple[str, ...] = ()
        if native is not None:
            for program in (native, native.gate):
                if program is not None and program.reads and on_index(program.reads):
                    gate = tuple(".".join(p) for p in program.reads)
                    break
        evaluable = native is not None and native.evaluable
        if not evaluable:
            warnings.append("not on the native fast path: libjq runs it on every record it gets")
        table = self._table(path, rule, jq_match)
        return Conversion(path, title, sigma_id, table, None, tuple(warnings), evaluable, gate)

    def _table(self, path: Path, rule: SigmaRule, jq_match: str) -> RuleTable:
        title = " ".join(str(rule.title).split())
        name = title
        if name in self._names:
            name = f"{title} [{str(rule.id)[:8]}]"
        self._names.add(name)
        author = " ".join(str(rule.author or "unknown author").split())
        description = " ".join(str(rule.description or title).split())
        description += f" (Sigma rule by {author}.)"
        tags = [f"sigma:{rule.id}"] if rule.id else []
        for tag in rule.tags:
            text = f"{tag.namespace}.{tag.name}"
            if tag.namespace == "attack" and _TECHNIQUE.fullmatch(tag.name):
                text = tag.name.upper()
            if text not in tags:
                tags.append(text)
        runbook = []
        if rule.falsepositives:
            known = "; ".join(" ".join(str(f).split()).rstrip(".") for f in rule.falsepositives)
            runbook.append(f"Known false positives (Sigma): {known.rstrip('.')}.")
        if rule.references:
            runbook.append("References: " + " ".join(map(str, rule.references)))
        level = rule.level.name.lower() if rule.level is not None else "medium"
        status = str(rule.status) if rule.status is not None else ""
        dates = [f"date {rule.date}"] if rule.date else []
        dates += [f"modified {rule.modified}"] if rule.modified else []
        comments = [
            f"Sigma rule {rule.id or '(no id)'}: {title}",
            f"Author: {author}" + "".join(f"; {d}" for d in dates),
            f"Source: {path.name}" + (f"; status: {status}" if status else ""),
        ]
        if rule.license:
            comments.append(f"License: {rule.license}")
        heading = jqtext.literal(title)[1:-1]
        title_jq = (
            f'"{heading}: \\(.eventName? // "?") by '
            '\\(.userIdentity.arn? // .userIdentity.type? // "unknown principal")"'
        )
        return RuleTable(
            name=name,
            description=description,
            severity=_SEVERITY.get(level, "medium"),
            tags=tuple(tags),
            runbook=" ".join(runbook) or None,
            jq_match=jq_match,
            title=title_jq,
            comments=tuple(comments),
            enabled=status not in _DISABLED_STATUSES,
        )


def _message(exc: SigmaError) -> str:
    return " ".join(str(exc).split())


def sigma_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files named, and the Sigma files (.yml, .yaml) below directories named, sorted."""
    found: list[Path] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            found.extend(
                sorted(p for p in entry.rglob("*") if p.is_file() and p.suffix in SIGMA_SUFFIXES)
            )
        else:
            found.append(entry)
    return found


FILE_HEADER: Final = (
    "# Tattletail rules converted from Sigma by `tattletail sigma convert` (do not edit the\n"
    "# [[rule]] tables by hand: convert again; [[rule.test]] tables, `enabled = false` with its\n"
    "# comment and extra tags survive a conversion into the same directory).\n"
)


def render(tables: Sequence[RuleTable]) -> str:
    """A rule file: the header, then each table."""
    return FILE_HEADER + "".join("\n" + table.toml() for table in tables)


def keep_additions(table: RuleTable, previous: str) -> RuleTable:
    """`table`, with what a person added to an earlier conversion written as `previous`: its
    [[rule.test]] tables, its `enabled` setting with the comments just above it, and tags the
    converter did not write."""
    try:
        document = tomllib.loads(previous)
    except tomllib.TOMLDecodeError:
        return table
    rules = document.get("rule")
    if not isinstance(rules, list) or len(rules) != 1 or not isinstance(rules[0], dict):
        return table
    old = rules[0]
    lines = previous.splitlines(keepends=True)
    tests_start = next(
        (n for n, line in enumerate(lines) if line.strip() == "[[rule.test]]"), len(lines)
    )
    # Comments written just above the first [[rule.test]] belong to it.
    while tests_start > 0 and lines[tests_start - 1].lstrip().startswith("#"):
        tests_start -= 1
    tests = "".join(lines[tests_start:]).lstrip("\n")
    enabled_comments: list[str] = []
    for n, line in enumerate(lines[:tests_start]):
        if line.startswith("enabled ="):
            above = n
            while above > 0 and lines[above - 1].startswith("#"):
                above -= 1
            enabled_comments = [text.rstrip("\n") for text in lines[above:n]]
    extra = [tag for tag in old.get("tags", []) if isinstance(tag, str) and tag not in table.tags]
    enabled = old.get("enabled", table.enabled)
    return replace(
        table,
        tags=table.tags + tuple(extra),
        enabled=enabled if isinstance(enabled, bool) else table.enabled,
        enabled_comments=tuple(enabled_comments),
        tests=tests,
    )


def _basic(text: str) -> str:
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


def _literal(text: str) -> str:
    """A TOML literal string (no escapes: jq's backslashes stay readable) when the text
    allows one, else a basic string."""
    if "'" in text or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return _basic(text)
    return f"'{text}'"


def _multiline(text: str) -> str:
    """A TOML multi-line literal string when the text allows one, else a basic string."""
    safe = "'''" not in text and not text.endswith("'")
    if safe and not any(ord(c) < 0x20 and c not in "\t\n" or ord(c) == 0x7F for c in text):
        return f"'''\n{text}\n'''"
    return _basic(text)
