"""Sigma YAML files to Tattletail `[[rule]]` tables (`tattletail sigma convert` and `check`).

Each Sigma rule becomes one `[[rule]]`: `name` from its title, `description` from its
description with its author (the Detection Rule License asks that alerts name the author),
`severity` from `level`, `tags` (`sigma:<id>`, ATT&CK technique ids such as `T1098.001`, the
other Sigma tags as written), `runbook` from `falsepositives` and `references`, a `title`
expression (the alert's heading: the rule's title, the call and who made it), and `jq_match`
from JqBackend. Comments above the table keep its id, author, dates, license and source file.
No `destinations`: the including config's `default_destinations` routes converted rules.

A correlation rule becomes a rule with memory (tattletail.sigma.memory), and so does a Sigma 1
rule with an aggregation, `near` or a `timeframe` (read as a correlation by
tattletail.sigma.legacy):

- `event_count` and `value_count` become one rule with `threshold` or `distinct`, whose
  `jq_match` is the OR of the rules they count; those rules get no `[[rule]]` of their own
  unless the correlation says `generate: true`;
- `temporal` and `temporal_ordered` become a rule with `sequence` whose steps are the rules they
  name, each its own `[[rule]]`, with `alert = false` when the correlation says
  `generate: false` (its default; Sigma 1's searches always are).

A correlation may name rules of other files: every file of a run is read before any is converted.
Output is deterministic (tattletail.sigma.tables writes it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

import yaml
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError, SigmaIdentifierError
from sigma.rule import SigmaRule, SigmaRuleBase

from tattletail.native import compile_native
from tattletail.rule_index import on_index
from tattletail.sigma import checks, jqtext, legacy
from tattletail.sigma.backend import JqBackend
from tattletail.sigma.expr import gated_program
from tattletail.sigma.memory import Memory
from tattletail.sigma.tables import RuleTable, memory_line

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
_NOT_NATIVE: Final = "not on the native fast path: libjq runs it on every record it gets"


@dataclass(frozen=True)
class Conversion:
    """What became of one Sigma rule (or correlation rule) of one file."""

    path: Path
    title: str
    sigma_id: str
    # Its [[rule]] tables: usually one; a sequence's steps come before it; none for a rule that
    # only a correlation uses (`generate: false`).
    tables: tuple[RuleTable, ...] = ()
    unsupported: str | None = None
    warnings: tuple[str, ...] = ()
    native: bool = False
    # The indexed fields the engine decides the rule's first select on, once per index key.
    gate: tuple[str, ...] = ()
    # A rule with memory: what it became (`threshold 11 in 30m`).
    memory: str | None = None
    # A rule that correlations use: how (`a step of 'X'`, `part of 'X' only`).
    role: str | None = None

    @property
    def table(self) -> RuleTable | None:
        """The rule's own table (a sequence's, after its steps)."""
        return self.tables[-1] if self.tables else None

    @property
    def converted(self) -> bool:
        return self.unsupported is None

    @property
    def status(self) -> str:
        if self.unsupported is not None:
            return "unsupported"
        return "warning" if self.warnings else "converted"


@dataclass(frozen=True)
class _Search:
    """A detection rule, converted: its jq_match and what `sigma check` says of it."""

    jq_match: str
    warnings: tuple[str, ...]
    native: bool
    gate: tuple[str, ...]


Rule = SigmaRule | SigmaCorrelationRule


@dataclass
class Converter:
    """Converts Sigma files; one instance per run (rule names are made unique across it)."""

    backend: JqBackend = field(default_factory=JqBackend)
    _taken: set[str] = field(default_factory=set)
    _names: dict[int, str] = field(default_factory=dict)
    # Per run: each detection rule converted (or why not), each correlation's memory (or why
    # not), and the correlations that name each rule.
    _searches: dict[int, _Search | str] = field(default_factory=dict)
    _memories: dict[int, Memory | str] = field(default_factory=dict)
    _referenced_by: dict[int, list[SigmaCorrelationRule]] = field(default_factory=dict)
    # Sigma 1's searches, made by legacy.expand: written with the rule they belong to.
    _generated: set[int] = field(default_factory=set)

    def convert_paths(self, paths: Sequence[str | Path]) -> list[Conversion]:
        return self.convert_files(sigma_files(paths))

    def convert_files(self, paths: Sequence[Path]) -> list[Conversion]:
        """Every rule of the files, in file and document order."""
        documents: list[tuple[Path, Rule | Conversion]] = []
        for path in paths:
            try:
                text = path.read_text(encoding="utf-8")
                collection = SigmaCollection.from_yaml(text, True, resolve_references=False)
            except (OSError, UnicodeDecodeError, yaml.YAMLError, SigmaError) as exc:
                reason = " ".join(str(exc).split())
                documents.append(
                    (path, Conversion(path, path.stem, "", unsupported=f"cannot read: {reason}"))
                )
                continue
            documents.extend((path, rule) for rule in collection.rules)
        expansions: dict[int, legacy.Expansion | str] = {}
        pool: list[Rule] = []
        for _, document in documents:
            if isinstance(document, SigmaRule) and legacy.has_memory(document):
                try:
                    expansion = legacy.expand(document)
                except legacy.Refused as exc:
                    expansions[id(document)] = str(exc)
                    continue
                expansions[id(document)] = expansion
                pool.extend(expansion.searches)
                self._generated.update(id(search) for search in expansion.searches)
                if expansion.correlation is not None:
                    pool.append(expansion.correlation)
            elif isinstance(document, SigmaRule | SigmaCorrelationRule):
                pool.append(document)
        self._prepare(pool)
        conversions = []
        for path, document in documents:
            if isinstance(document, Conversion):
                conversions.append(document)
            elif id(document) in expansions:
                assert isinstance(document, SigmaRule)
                conversions.append(self._legacy(path, document, expansions[id(document)]))
            elif isinstance(document, SigmaCorrelationRule):
                conversions.append(self._correlation(path, document))
            else:
                conversions.append(self._detection(path, document))
        return conversions

    # -- converting ------------------------------------------------------------------------------

    def _prepare(self, pool: list[Rule]) -> None:
        """Resolve the correlations' references across the run, then convert every detection
        rule, then every correlation (which reads its rules' conversions)."""
        collection = SigmaCollection(pool, resolve_references=False)  # type: ignore[arg-type]
        correlations = [rule for rule in pool if isinstance(rule, SigmaCorrelationRule)]
        for correlation in correlations:
            problem = _invalid(correlation)
            if problem is None:
                try:
                    correlation.resolve_rule_references(collection)
                except SigmaError as exc:
                    problem = _message(exc)
            if problem is not None:
                self._memories[id(correlation)] = problem
                continue
            for reference in correlation.referenced_rules:
                self._referenced_by.setdefault(id(reference.rule), []).append(correlation)
        for rule in pool:
            if isinstance(rule, SigmaRule):
                self._searches[id(rule)] = self._search(rule)
        for correlation in correlations:
            if id(correlation) not in self._memories:
                self._memories[id(correlation)] = self._memory(correlation)

    def _search(self, rule: SigmaRule) -> _Search | str:
        problem = _invalid(rule)
        if problem is not None:
            return problem
        try:
            jq_match = gated_program(self.backend.rule_expr(rule))
            warnings = checks.pitfalls(rule)
        except SigmaError as exc:
            return _message(exc)
        except NotImplementedError as exc:
            return str(exc)
        native, gate = _assess(jq_match)
        if not native:
            warnings.append(_NOT_NATIVE)
        return _Search(jq_match, tuple(warnings), native, gate)

    def _memory(self, correlation: SigmaCorrelationRule) -> Memory | str:
        for reference in correlation.referenced_rules:
            found = self._searches.get(id(reference.rule))
            if isinstance(found, str):
                return f"its rule {_titled(reference.rule)} is unsupported: {found}"
        try:
            return self.backend.rule_memory(correlation)
        except SigmaError as exc:
            return _message(exc)
        except NotImplementedError as exc:
            return str(exc)

    # -- one Conversion per Sigma document ----------------------------------------------------

    def _detection(self, path: Path, rule: Rule) -> Conversion:
        title, sigma_id = _identity(path, rule)
        if not isinstance(rule, SigmaRule):
            kind = type(rule).__name__
            return Conversion(path, title, sigma_id, unsupported=f"{kind} (not a detection rule)")
        search = self._searches[id(rule)]
        if isinstance(search, str):
            return Conversion(path, title, sigma_id, unsupported=search)
        warnings = _identifier_warnings(rule) + search.warnings
        users = self._referenced_by.get(id(rule), [])
        silenced = [c for c in users if not c.generate]
        in_sequence = [
            c for c in users if isinstance(m := self._memories[id(c)], Memory) and m.steps
        ]
        enabled = _enabled(rule)
        if not in_sequence and silenced:
            role = f"no rule of its own (generate: false): part of {_listed(silenced)}"
            return Conversion(
                path, title, sigma_id, (), None, warnings, search.native, search.gate, role=role
            )
        role = None
        if in_sequence:
            role = f"a step of {_listed(in_sequence)}"
            role += ", alert = false (generate: false)" if silenced else ""
        table = self._table(
            path,
            rule,
            sigma_id,
            search.jq_match,
            # A step of a sequence runs whatever its own status; it alerts only if it may.
            enabled=enabled or bool(in_sequence),
            alert=not silenced and enabled,
        )
        return Conversion(
            path, title, sigma_id, (table,), None, warnings, search.native, search.gate, role=role
        )

    def _correlation(self, path: Path, rule: SigmaCorrelationRule) -> Conversion:
        title, sigma_id = _identity(path, rule)
        memory = self._memories[id(rule)]
        if isinstance(memory, str):
            return Conversion(path, title, sigma_id, unsupported=f"correlation: {memory}")
        kind = rule.type.name.lower()
        comment = f"Sigma correlation ({kind} of {', '.join(_step_titles(rule))}): "
        conversion = self._with_memory(path, rule, sigma_id, memory, comment + memory.describe())
        return replace(conversion, warnings=_identifier_warnings(rule) + conversion.warnings)

    def _legacy(self, path: Path, rule: SigmaRule, expansion: legacy.Expansion | str) -> Conversion:
        title, sigma_id = _identity(path, rule)
        problem = _invalid(rule)
        if problem is not None:
            return Conversion(path, title, sigma_id, unsupported=problem)
        if isinstance(expansion, str):
            return Conversion(path, title, sigma_id, unsupported=expansion)
        searches = [self._searches[id(s)] for s in expansion.searches]
        for search in searches:
            if isinstance(search, str):
                return Conversion(path, title, sigma_id, unsupported=search)
        warnings = _identifier_warnings(rule) + expansion.warnings
        warnings += tuple(w for s in searches if isinstance(s, _Search) for w in s.warnings)
        if expansion.correlation is None:
            (search,) = searches
            assert isinstance(search, _Search)
            table = self._table(path, rule, sigma_id, search.jq_match, enabled=_enabled(rule))
            return Conversion(
                path, title, sigma_id, (table,), None, warnings, search.native, search.gate
            )
        memory = self._memories[id(expansion.correlation)]
        if isinstance(memory, str):
            return Conversion(path, title, sigma_id, unsupported=f"{expansion.construct}: {memory}")
        conversion = self._with_memory(
            path,
            rule,
            sigma_id,
            memory,
            f"Sigma 1 {expansion.construct}: {memory.describe()}",
        )
        return replace(conversion, warnings=tuple(dict.fromkeys(warnings + conversion.warnings)))

    def _with_memory(
        self, path: Path, rule: Rule, sigma_id: str, memory: Memory, comment: str
    ) -> Conversion:
        """The tables of a rule with memory: a sequence's steps (each its own rule), then it."""
        title = _identity(path, rule)[0]
        enabled = _enabled(rule, memory=True)
        warnings: list[str] = []
        tables = []
        if memory.kind == "sequence":
            steps = []
            for step in memory.steps:
                search = self._searches[id(step)]
                assert isinstance(search, _Search)
                steps.append(search)
                if id(step) in self._generated:  # Sigma 1's searches: written here
                    tables.append(
                        self._table(path, step, sigma_id, search.jq_match, enabled, alert=False)
                    )
            native = all(search.native for search in steps)
            gate = tuple(sorted({name for search in steps for name in search.gate}))
            names = [self._name(step, str(step.id or sigma_id)) for step in memory.steps]
            line = memory_line(memory, names)
            jq_match = None
        else:
            assert memory.match is not None
            jq_match = gated_program(memory.match)
            native, gate = _assess(jq_match)
            line = memory_line(memory)
            warnings.append(
                f"{memory.window} windows are tumbling, aligned to the epoch: matches on either "
                "side of a boundary are counted apart, so a burst that straddles one may not "
                "alert (a lower count catches it wherever it falls: docs/stateful-rules.md)"
            )
        if not native:
            warnings.append(_NOT_NATIVE)
        table = self._table(path, rule, sigma_id, jq_match, enabled, memory=line, comment=comment)
        tables.append(table)
        return Conversion(
            path,
            title,
            sigma_id,
            tuple(tables),
            None,
            tuple(warnings),
            native,
            gate,
            memory=memory.describe(),
        )

    # -- tables ------------------------------------------------------------------------------

    def _name(self, rule: SigmaRuleBase, sigma_id: str) -> str:
        """The rule's [[rule]] name: its title, made unique within the run (`Title [id8]`)."""
        known = self._names.get(id(rule))
        if known is not None:
            return known
        title = " ".join(str(rule.title).split())
        name = title
        if name in self._taken:
            name = f"{title} [{sigma_id[:8] or 2}]"
            number = 2
            while name in self._taken:
                number += 1
                name = f"{title} [{sigma_id[:8] + ' ' if sigma_id else ''}{number}]"
        self._taken.add(name)
        self._names[id(rule)] = name
        return name

    def _table(
        self,
        path: Path,
        rule: SigmaRuleBase,
        sigma_id: str,
        jq_match: str | None,
        enabled: bool,
        alert: bool = True,
        memory: str = "",
        comment: str = "",
    ) -> RuleTable:
        title = " ".join(str(rule.title).split())
        author = " ".join(str(rule.author or "unknown author").split())
        description = " ".join(str(rule.description or title).split())
        description += f" (Sigma rule by {author}.)"
        tags = [f"sigma:{sigma_id}"] if sigma_id else []
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
        heading = f"Sigma rule {sigma_id or '(no id)'}: {title}"
        if id(rule) in self._generated and sigma_id:
            heading = f"A step of Sigma rule {sigma_id}: {title}"
        comments = [
            heading,
            f"Author: {author}" + "".join(f"; {d}" for d in dates),
            f"Source: {path.name}" + (f"; status: {status}" if status else ""),
        ]
        if rule.license:
            comments.append(f"License: {rule.license}")
        if comment:
            comments.append(comment)
        shown = jqtext.literal(title)[1:-1]
        title_jq = (
            f'"{shown}: \\(.eventName? // "?") by '
            '\\(.userIdentity.arn? // .userIdentity.type? // "unknown principal")"'
        )
        return RuleTable(
            name=self._name(rule, sigma_id),
            description=description,
            severity=_SEVERITY.get(level, "medium"),
            tags=tuple(tags),
            runbook=" ".join(runbook) or None,
            jq_match=jq_match,
            title=title_jq,
            comments=tuple(comments),
            enabled=enabled,
            alert=alert,
            memory=memory,
        )


def _identity(path: Path, rule: Rule) -> tuple[str, str]:
    title = str(getattr(rule, "title", "") or path.stem)
    return title, str(rule.id) if getattr(rule, "id", None) else ""


def _invalid(rule: Rule) -> str | None:
    """Why pySigma found the rule invalid (a non-UUID id is only a warning), or None."""
    for error in rule.errors:
        if not isinstance(error, SigmaIdentifierError):
            return f"invalid rule: {error}"
    return None


def _identifier_warnings(rule: Rule) -> tuple[str, ...]:
    if any(isinstance(error, SigmaIdentifierError) for error in rule.errors):
        return (f"id {_identity(Path(), rule)[1]!r} is not a UUID (kept as written)",)
    return ()


def _enabled(rule: SigmaRuleBase, memory: bool = False) -> bool:
    """`status: deprecated` or `unsupported` rules ship disabled; but SigmaHQ marks a rule
    `unsupported` when it needs memory, which a rule with memory gives it."""
    status = str(rule.status) if rule.status is not None else ""
    return status not in _DISABLED_STATUSES or (memory and status == "unsupported")


def _assess(jq_match: str) -> tuple[bool, tuple[str, ...]]:
    """Whether the native evaluator runs the program, and the indexed fields gating it."""
    native = compile_native(jq_match)
    gate: tuple[str, ...] = ()
    if native is not None:
        for program in (native, native.gate):
            if program is not None and program.reads and on_index(program.reads):
                gate = tuple(".".join(p) for p in program.reads)
                break
    return native is not None and native.evaluable, gate


def _titled(rule: object) -> str:
    return f"'{' '.join(str(getattr(rule, 'title', '') or '?').split())}'"


def _step_titles(rule: SigmaCorrelationRule) -> list[str]:
    return [_titled(reference.rule) for reference in rule.referenced_rules]


def _listed(rules: Sequence[SigmaCorrelationRule]) -> str:
    return ", ".join(_titled(rule) for rule in rules)


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
