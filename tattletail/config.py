"""Configuration: parse and validate a tattletail.toml once, into typed, frozen objects.

A config written for the Go cloudtrail-tattletail loads unchanged. Every check the original makes
is made here too, plus one it does not: an unknown key is an error naming it and its table, so a
typo such as `destination = [...]` cannot silently drop alerts. Every problem of a file is
reported at once.

Beyond the original (all optional, so the original's files mean exactly what they did): rule
metadata (`severity`, `enabled`, `tags`, `runbook`, `title`), `suppress` expressions that may
expire, inline `[[rule.test]]` cases, `include` to pull rules and destinations from more
files, routed by `default_destinations` when they name none themselves, and rules with memory
(`threshold`, `distinct`, `dedup`, `sequence`: see tattletail.state).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Final

import jq
import orjson

from tattletail.destinations import DESTINATION_TYPES, Destination, DestinationConfigError
from tattletail.rules import Suppression
from tattletail.text import did_you_mean

RULE_KEYS = {
    "name": "a short name, shown as the alert's title",
    "jq_match": "the jq program tested against each record",
    "description": "what the alert means",
    "destinations": "ids of the [[destination]] tables that receive the alert",
    "severity": "info, low, medium, high or critical (default medium)",
    "enabled": "false: the rule is loaded and checked but not evaluated (default true)",
    "tags": "strings carried in every alert (ATT&CK ids, controls, ...)",
    "runbook": "what to do about an alert",
    "title": "a jq string expression on the record: the alert's title",
    "suppress": "a jq expression, a {match, expires, reason} table or a list of them",
    "test": "[[rule.test]] cases run by `tattletail test`",
    "threshold": "{ count, window, group_by }: alert once a window when a group has count matches",
    "distinct": "{ field, count, window, group_by }: the same, counting distinct values of field",
    "dedup": "{ key, period }: alert on a key's first match per period, count the others",
    "sequence": "{ steps, within, group_by, ordered }: alert when the step rules match in order",
    "alert": "false: the rule's matches only feed sequences; it sends no alert of its own",
}
TOP_LEVEL_KEYS = {"rule", "destination", "dead_letter", "include", "default_destinations"}
# dead_letter and default_destinations route the whole config: only its top file sets them.
INCLUDED_FILE_KEYS = {"rule", "destination", "include"}
SEVERITIES: Final = ("info", "low", "medium", "high", "critical")
SUPPRESS_KEYS = {"match", "expires", "reason"}
TEST_KEYS = {"name", "event", "event_file", "events", "alerts", "expect", "match", "title"}
TIMELINE_KEYS = {"event", "event_file", "at", "repeat", "every"}
EXPECTED_ALERT_KEYS = {
    "group",
    "count",
    "key",
    "values",
    "held",
    "event_id",
    "first_event_id",
    "last_event_id",
    "match",
    "title",
}
STATEFUL_KEYS: Final = ("threshold", "distinct", "dedup", "sequence")
# Bounds that keep one group's state small (one DynamoDB item, a few KB; see tattletail.state).
MAX_STATE_COUNT = 1000
MAX_SEQUENCE_STEPS = 10
MAX_DURATION_SECONDS = 7 * 86400
MAX_TEST_REPEAT = 10000
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


class ConfigError(ValueError):
    """A config that cannot be used; `problems` lists every error found in it."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        if len(problems) == 1:
            # One problem (a missing file, invalid TOML, ...) is one line.
            super().__init__(f"{source}: {problems[0]}")
            return
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"{source}: {len(problems)} config errors:\n{lines}")


class _NotGiven:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_GIVEN"


# A test's `match` when the test does not check the annotation (TOML has no null to say "none").
NOT_GIVEN: Final[Any] = _NotGiven()


@dataclass(frozen=True)
class Duration:
    """A window, period or time limit: whole seconds, and the text it was written as."""

    seconds: int
    text: str


@dataclass(frozen=True)
class Threshold:
    """`threshold`: one alert per group and window when the group's matches reach `count`."""

    kind: ClassVar[str] = "threshold"
    count: int
    window: Duration
    # jq expressions on the record; () is one group for every match.
    group_by: tuple[str, ...] = ()
    # Written as a list: the alert's group is the list of values, else the one value.
    group_by_list: bool = False


@dataclass(frozen=True)
class Distinct:
    """`distinct`: the same as Threshold, counting the distinct values of `field` (a jq
    expression) among the group's matches (Sigma's value_count)."""

    kind: ClassVar[str] = "distinct"
    field: str
    count: int
    window: Duration
    group_by: tuple[str, ...] = ()
    group_by_list: bool = False


@dataclass(frozen=True)
class Dedup:
    """`dedup`: the first match of a key (a jq expression) in a period alerts, the others are
    counted and reported with the key's next alert."""

    kind: ClassVar[str] = "dedup"
    key: str
    period: Duration


@dataclass(frozen=True)
class Sequence:
    """`sequence`: an alert when the step rules (by name) match for one group within the time,
    in order unless `ordered` is false (Sigma's temporal_ordered / temporal)."""

    kind: ClassVar[str] = "sequence"
    steps: tuple[str, ...]
    within: Duration
    group_by: tuple[str, ...] = ()
    group_by_list: bool = False
    ordered: bool = True


Stateful = Threshold | Distinct | Dedup | Sequence


@dataclass(frozen=True)
class TimelineEntry:
    """One [[rule.test.events]] table: a record (inline or a file), repeated `repeat` times
    from `at` (its eventTime when not given) every `every` seconds."""

    event: Mapping[str, Any] | None = None
    event_file: Path | None = None
    at: datetime | None = None
    repeat: int = 1
    every: int = 1


@dataclass(frozen=True)
class RuleTest:
    """One [[rule.test]]: an event, or a timeline of events, and what the rule must make of it."""

    name: str
    expect: bool
    # Exactly one of the three: the event inline, the JSON file holding it (read when run), or
    # a timeline of events (stateful rules; their alerts are what is checked).
    event: Mapping[str, Any] | None = None
    event_file: Path | None = None
    events: tuple[TimelineEntry, ...] = ()
    # With `events`: the alerts expected, in order, each a table of the fields it checks (see
    # EXPECTED_ALERT_KEYS); None when only `expect` was given.
    alerts: tuple[Mapping[str, Any], ...] | None = None
    # The expected annotation, or NOT_GIVEN; the expected title, or None (not checked).
    match: Any = NOT_GIVEN
    title: str | None = None


@dataclass(frozen=True)
class Rule:
    """One [[rule]]: every jq program of it (jq_match, title, suppress) is known to compile."""

    # The rule's position in Config.rules, the index workers and matches use.
    index: int
    name: str
    jq_match: str
    description: str
    destinations: tuple[str, ...]
    severity: str = "medium"
    enabled: bool = True
    tags: tuple[str, ...] = ()
    runbook: str | None = None
    title: str | None = None
    suppressions: tuple[Suppression, ...] = ()
    tests: tuple[RuleTest, ...] = ()
    # Where it was written, for messages: its file (the config's source for the top file) and
    # its position among that file's [[rule]] tables.
    origin: str = ""
    position: int = 0
    # True when `destinations` came from the top file's default_destinations.
    default_routed: bool = False
    # A rule with memory (tattletail.state); its matches are counted, not alerted one by one.
    stateful: Stateful | None = None
    # False: the rule's matches only feed sequences (no alert of its own).
    alert: bool = True

    @property
    def where(self) -> str:
        """How messages name the rule, like config errors do: `file: rule #2 'Name'`."""
        prefix = f"{self.origin}: " if self.origin else ""
        return f"{prefix}rule #{self.position} {self.name!r}"


@dataclass(frozen=True)
class Config:
    rules: tuple[Rule, ...]
    destinations: Mapping[str, Destination]
    source: str
    # The destination (sqs or s3) that keeps alerts whose delivery failed after every retry.
    dead_letter: str | None = None
    # Where rules without a `destinations` key send their alerts (set in the top file only).
    default_destinations: tuple[str, ...] = ()
    # Every file read: the top file first, then the included ones in include order.
    files: tuple[str, ...] = ()

    def warnings(self, now: datetime | None = None) -> list[str]:
        """What is valid but probably not meant: expired suppressions (they no longer apply)
        and enabled rules whose alerts go nowhere."""
        now = now or datetime.now(UTC)
        found = []
        for rule in self.rules:
            for suppression in rule.suppressions:
                if not suppression.active(now):
                    found.append(
                        f"{rule.where}: suppression {suppression.match!r} expired on "
                        f"{suppression.expires}; it no longer applies (remove it or extend it)"
                    )
            if rule.enabled and rule.alert and not rule.destinations:
                found.append(
                    f"{rule.where}: no destinations and no default_destinations, so its alerts "
                    "go nowhere"
                )
        steps = {
            step
            for rule in self.rules
            if isinstance(rule.stateful, Sequence) and rule.enabled
            for step in rule.stateful.steps
        }
        for rule in self.rules:
            if rule.enabled and not rule.alert and rule.name not in steps:
                found.append(
                    f"{rule.where}: alert = false and no enabled sequence names it as a step, so "
                    "its matches go nowhere"
                )
        return found


@dataclass
class _File:
    """One file of a config being loaded."""

    label: str  # how messages name it
    document: dict[str, Any]
    directory: Path | None  # where its relative paths start; None: not read from disk
    top: bool

    @property
    def prefix(self) -> str:
        # The top file's problems are reported under its name already (ConfigError.source).
        return "" if self.top else f"{self.label}: "


def load_file(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc}"]) from None
    return parse(text, source=str(path), path=path)


def parse(text: str, source: str = "tattletail.toml", path: Path | None = None) -> Config:
    """Parse and validate a config document; raise ConfigError listing every problem.

    `path` is the file the text was read from: `include` patterns and `event_file` names are
    relative to it. Without it (a config from S3), `include` is an error.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"invalid TOML: {exc}"]) from None

    problems: list[str] = []
    top = _File(source, document, path.parent if path is not None else None, top=True)
    files = [top]
    stack = [(path.resolve(), source)] if path is not None else []
    _include(top, stack, {real for real, _ in stack}, files, problems)

    for file in files:
        allowed = TOP_LEVEL_KEYS if file.top else INCLUDED_FILE_KEYS
        for key in sorted(set(file.document) - allowed):
            if not file.top and key in TOP_LEVEL_KEYS:
                hint = " (only the top config file may set it)"
            else:
                hint = (
                    did_you_mean(key, allowed) or " (expected [[rule]] and [[destination]] tables)"
                )
            problems.append(f"{file.prefix}unknown top-level key {key!r}{hint}")

    destinations: dict[str, Destination] = {}
    seen_ids: set[str] = set()
    for file in files:
        _destinations(file, seen_ids, destinations, problems)
    # A rule naming a destination that exists but is invalid is reported once, at the table.
    declared = {
        table.get("id")
        for file in files
        if isinstance(file.document.get("destination"), list)
        for table in file.document["destination"]
        if isinstance(table, dict) and isinstance(table.get("id"), str)
    }
    defaults = _default_destinations(document.get("default_destinations"), declared, problems)
    rules: list[Rule] = []
    for file in files:
        rules.extend(_rules(file, declared, defaults, len(rules), problems))
    _check_stateful_names(rules, problems)
    dead_letter = _dead_letter(document.get("dead_letter"), destinations, declared, problems)
    if problems:
        raise ConfigError(source, problems)
    return Config(
        rules=tuple(rules),
        destinations=MappingProxyType(destinations),
        source=source,
        dead_letter=dead_letter,
        default_destinations=defaults,
        files=tuple(file.label for file in files),
    )


def _include(
    file: _File,
    stack: list[tuple[Path, str]],
    seen: set[Path],
    files: list[_File],
    problems: list[str],
) -> None:
    """Read the files `file` includes, and theirs, depth first, into `files`.

    A file reached a second time by another route is read once (its rules are not doubled);
    reached again from itself, it is an include cycle.
    """
    raw = file.document.get("include")
    if raw is None:
        return
    if not isinstance(raw, list) or not all(isinstance(p, str) and p for p in raw):
        problems.append(f"{file.prefix}'include' must be a list of file names or glob patterns")
        return
    if file.directory is None:
        problems.append(
            f"{file.prefix}include needs a config read from a file: patterns are relative "
            "to the file that includes them"
        )
        return
    for pattern in raw:
        for target in _expand(pattern, file, problems):
            real = target.resolve()
            reals = [r for r, _ in stack]
            if real in reals:
                chain = [label for _, label in stack[reals.index(real) :]]
                cycle = " -> ".join([*chain, str(target)])
                problems.append(f"{file.prefix}include {pattern!r}: include cycle: {cycle}")
                continue
            if real in seen:
                continue
            seen.add(real)
            child = _read_included(target, problems)
            if child is None:
                continue
            files.append(child)
            stack.append((real, child.label))
            _include(child, stack, seen, files, problems)
            stack.pop()


def _expand(pattern: str, file: _File, problems: list[str]) -> list[Path]:
    """The files a pattern names, relative to the including file, in a stable order.

    Both a plain name that does not exist and a glob that matches no file are errors: a typo
    in either would otherwise drop every rule it was meant to load, silently.
    """
    assert file.directory is not None
    if glob.has_magic(pattern):
        found = sorted(glob.glob(pattern, root_dir=file.directory, recursive=True))
        paths = [Path(os.path.normpath(file.directory / name)) for name in found]
        paths = [path for path in paths if path.is_file()]
        if not paths:
            problems.append(f"{file.prefix}include {pattern!r}: the pattern matches no file")
        return paths
    path = Path(os.path.normpath(file.directory / pattern))
    if not path.is_file():
        problems.append(f"{file.prefix}include {pattern!r}: no such file ({path})")
        return []
    return [path]


def _read_included(path: Path, problems: list[str]) -> _File | None:
    label = str(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{label}: invalid TOML: {exc}")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{label}: cannot read the file: {exc}")
        return None
    return _File(label, document, path.parent, top=False)


def _default_destinations(value: Any, declared: set[str], problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        problems.append("default_destinations: must be a list of destination ids")
        return ()
    for name in value:
        if name not in declared:
            problems.append(
                f"default_destinations: unknown destination {name!r}{did_you_mean(name, declared)}"
            )
    return tuple(dict.fromkeys(value))


def _dead_letter(
    value: Any, destinations: Mapping[str, Destination], declared: set[str], problems: list[str]
) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value not in declared:
        problems.append(
            f"dead_letter: {value!r} is not the id of a [[destination]]"
            + did_you_mean(value, declared)
        )
        return None
    destination = destinations.get(value)
    if destination is not None and not destination.can_dead_letter:
        kinds = ", ".join(sorted(k for k, v in DESTINATION_TYPES.items() if v.can_dead_letter))
        problems.append(
            f"dead_letter: destination {value!r} is of type {destination.type_name!r}, "
            f"which cannot keep dead letters (use one of: {kinds or 'sqs, s3'})"
        )
        return None
    return value


def _tables(value: Any, name: str, problems: list[str], prefix: str = "") -> list[Any]:
    if isinstance(value, list):
        return value
    problems.append(f"{prefix}'{name}' must be written as [[{name}]] tables")
    return []


def _destinations(
    file: _File, seen_ids: set[str], destinations: dict[str, Destination], problems: list[str]
) -> None:
    """Add the file's valid destinations. `seen_ids` holds every id seen so far, in any file,
    valid table or not: a duplicate is reported whatever the first is."""
    raw = file.document.get("destination", [])
    for index, table in enumerate(_tables(raw, "destination", problems, file.prefix)):
        if not isinstance(table, dict):
            problems.append(f"{file.prefix}destination #{index}: must be a table")
            continue
        dest_id = table.get("id")
        where = f"{file.prefix}destination #{index}" + (
            f" {dest_id!r}" if isinstance(dest_id, str) else ""
        )
        if not isinstance(dest_id, str) or not dest_id:
            problems.append(f"{where}: 'id' must be set to a non-empty string")
            continue
        if dest_id in seen_ids:
            problems.append(f"{where}: duplicate destinations with same id {dest_id!r}")
        seen_ids.add(dest_id)
        dest_type = table.get("type")
        kind = DESTINATION_TYPES.get(dest_type) if isinstance(dest_type, str) else None
        if kind is None:
            known = ", ".join(sorted(DESTINATION_TYPES))
            suggestion = did_you_mean(dest_type, DESTINATION_TYPES) or f" (known: {known})"
            problems.append(f"{where}: invalid destination type {dest_type!r}{suggestion}")
            continue
        settings = {key: value for key, value in table.items() if key not in {"id", "type"}}
        unknown = sorted(set(settings) - set(kind.config_keys()))
        for key in unknown:
            allowed = ["id", "type", *sorted(kind.config_keys())]
            suggestion = did_you_mean(key, allowed) or f" (allowed: {', '.join(allowed)})"
            problems.append(f"{where}: unknown key {key!r} for type {dest_type!r}{suggestion}")
        # The known keys are still checked, so every problem of the table is reported at once.
        known = {key: value for key, value in settings.items() if key not in unknown}
        try:
            destination = kind.build(dest_id, known)
        except DestinationConfigError as exc:
            problems.extend(f"{where}: ({dest_type}) {message}" for message in exc.problems)
            continue
        if not unknown and dest_id not in destinations:
            destinations[dest_id] = destination


def _rules(
    file: _File,
    destination_ids: set[str],
    defaults: tuple[str, ...],
    first_index: int,
    problems: list[str],
) -> list[Rule]:
    rules = []
    raw = file.document.get("rule", [])
    for position, table in enumerate(_tables(raw, "rule", problems, file.prefix)):
        if not isinstance(table, dict):
            problems.append(f"{file.prefix}rule #{position}: must be a table")
            continue
        name = table.get("name")
        where = f"{file.prefix}rule #{position}" + (f" {name!r}" if isinstance(name, str) else "")
        found = len(problems)
        for key in sorted(set(table) - set(RULE_KEYS)):
            suggestion = did_you_mean(key, RULE_KEYS) or f" (allowed: {', '.join(RULE_KEYS)})"
            problems.append(f"{where}: unknown key {key!r}{suggestion}")
        if not isinstance(name, str) or not name.strip():
            problems.append(f"{where}: 'name' must be set to a non-empty string")
        description = table.get("description", "")
        if not isinstance(description, str):
            problems.append(f"{where}: 'description' must be a string")
        stateful = _stateful(table, where, problems)
        jq_match = table.get("jq_match")
        if isinstance(stateful, Sequence):
            if jq_match is not None:
                problems.append(
                    f"{where}: a sequence rule matches through its steps' rules: remove jq_match"
                )
            jq_match = ""
        elif not isinstance(jq_match, str) or not jq_match.strip():
            problems.append(f"{where}: jq_match not defined (it must be a non-empty jq program)")
        else:
            _check_compiles(jq_match, f"{where}: jq_match", problems)
        alert = table.get("alert", True)
        if not isinstance(alert, bool):
            problems.append(f"{where}: 'alert' must be true or false")
        elif not alert and stateful is not None:
            problems.append(
                f"{where}: alert = false is for the step rules of a sequence; a rule with "
                f"{stateful.kind} alerts through it"
            )
        default_routed = "destinations" not in table
        names = table.get("destinations", list(defaults))
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            problems.append(f"{where}: 'destinations' must be a list of destination ids")
            names = []
        # Defaults are checked once, where they are set.
        for dest_name in [] if default_routed else names:
            if dest_name not in destination_ids:
                suggestion = did_you_mean(dest_name, destination_ids)
                problems.append(f"{where}: unknown destination {dest_name!r}{suggestion}")
        severity = table.get("severity", "medium")
        if severity not in SEVERITIES:
            problems.append(f"{where}: 'severity' must be one of {', '.join(SEVERITIES)}")
        enabled = table.get("enabled", True)
        if not isinstance(enabled, bool):
            problems.append(f"{where}: 'enabled' must be true or false")
        tags = table.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            problems.append(f"{where}: 'tags' must be a list of strings")
            tags = []
        runbook = table.get("runbook")
        if runbook is not None and not isinstance(runbook, str):
            problems.append(f"{where}: 'runbook' must be a string")
        title = table.get("title")
        if title is not None:
            if not isinstance(title, str) or not title.strip():
                problems.append(f"{where}: 'title' must be a jq expression (a non-empty string)")
            else:
                _check_compiles(title, f"{where}: title", problems)
        suppressions = _suppressions(table.get("suppress"), where, problems)
        tests = _tests(table.get("test"), where, file.directory, problems)
        if isinstance(stateful, Sequence) and any(test.events == () for test in tests):
            problems.append(
                f"{where}: a sequence rule's tests need `events` (a timeline): one event "
                "cannot complete a sequence"
            )
        if len(problems) == found:
            rules.append(
                Rule(
                    index=first_index + len(rules),
                    name=name,
                    jq_match=jq_match,
                    description=description,
                    destinations=tuple(dict.fromkeys(names)),
                    severity=severity,
                    enabled=enabled,
                    tags=tuple(tags),
                    runbook=runbook,
                    title=title,
                    suppressions=suppressions,
                    tests=tests,
                    origin=file.label,
                    position=position,
                    default_routed=default_routed,
                    stateful=stateful,
                    alert=alert,
                )
            )
    return rules


def duration(value: Any) -> Duration | None:
    """`"90s"`, `"10m"`, `"1h30m"`, `"1d"` (Sigma's timespan units), None when not one."""
    if not isinstance(value, str):
        return None
    found = _DURATION.fullmatch(value.strip())
    if found is None or not any(found.groups()):
        return None
    days, hours, minutes, seconds = (int(part or 0) for part in found.groups())
    return Duration(((days * 24 + hours) * 60 + minutes) * 60 + seconds, value.strip())


_STATEFUL_FIELDS: dict[str, dict[str, str]] = {
    "threshold": {
        "count": "matches that make an alert",
        "window": "a duration such as 10m",
        "group_by": "jq expression(s) on the record",
    },
    "distinct": {
        "field": "a jq expression on the record",
        "count": "distinct values that make an alert",
        "window": "a duration",
        "group_by": "jq expression(s) on the record",
    },
    "dedup": {"key": "a jq expression on the record", "period": "a duration"},
    "sequence": {
        "steps": "names of rules",
        "within": "a duration",
        "group_by": "jq expression(s) on the record",
        "ordered": "true or false",
    },
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "threshold": ("count", "window"),
    "distinct": ("field", "count", "window"),
    "dedup": ("key", "period"),
    "sequence": ("steps", "within"),
}


def _stateful(table: dict[str, Any], where: str, problems: list[str]) -> Stateful | None:
    """The rule's one stateful table (threshold, distinct, dedup or sequence), validated."""
    given = [key for key in STATEFUL_KEYS if key in table]
    if not given:
        return None
    if len(given) > 1:
        problems.append(f"{where}: a rule takes at most one of {', '.join(given)}")
        return None
    kind = given[0]
    what = f"{where}: {kind}"
    raw = table[kind]
    if not isinstance(raw, dict):
        problems.append(f"{what}: must be a table, e.g. {kind} = {{ ... }}")
        return None
    found = len(problems)
    allowed = _STATEFUL_FIELDS[kind]
    for key in sorted(set(raw) - set(allowed)):
        suggestion = did_you_mean(key, allowed) or f" (allowed: {', '.join(allowed)})"
        problems.append(f"{what}: unknown key {key!r}{suggestion}")
    for key in _REQUIRED[kind]:
        if key not in raw:
            problems.append(f"{what}: {key!r} is required ({allowed[key]})")
    if len(problems) > found:
        return None
    times = {
        name: _duration_field(raw[name], f"{what}: {name}", problems)
        for name in ("window", "period", "within")
        if name in raw
    }
    if "period" in times and times["period"].seconds < 60:
        # A log file spans minutes: a shorter period would alert on most matches anyway.
        problems.append(f"{what}: period: {raw['period']!r} must be at least 1m")
    group_by, as_list = _group_by(raw.get("group_by"), what, problems)
    count = _count(raw["count"], what, problems) if "count" in raw else 0
    if kind in ("distinct", "dedup"):
        expression = "field" if kind == "distinct" else "key"
        program = raw[expression]
        if not isinstance(program, str) or not program.strip():
            problems.append(f"{what}: {expression!r} must be a jq expression (a non-empty string)")
        else:
            _check_compiles(program, f"{what}: {expression}", problems)
    steps: tuple[str, ...] = ()
    ordered = raw.get("ordered", True)
    if kind == "sequence":
        names = raw["steps"]
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            problems.append(f"{what}: 'steps' must be a list of rule names")
        elif not 2 <= len(names) <= MAX_SEQUENCE_STEPS:
            problems.append(f"{what}: 'steps' must name 2 to {MAX_SEQUENCE_STEPS} rules")
        else:
            steps = tuple(names)
        if not isinstance(ordered, bool):
            problems.append(f"{what}: 'ordered' must be true or false")
    if len(problems) > found:
        return None
    if kind == "threshold":
        return Threshold(count, times["window"], group_by, as_list)
    if kind == "distinct":
        return Distinct(raw["field"], count, times["window"], group_by, as_list)
    if kind == "dedup":
        return Dedup(raw["key"], times["period"])
    return Sequence(steps, times["within"], group_by, as_list, ordered)


def _duration_field(value: Any, what: str, problems: list[str]) -> Duration:
    parsed = duration(value)
    if parsed is None:
        problems.append(
            f"{what}: {value!r} is not a duration (a number and a unit, s, m, h or d: "
            '"90s", "10m", "1h30m")'
        )
        return Duration(1, "1s")
    if not 1 <= parsed.seconds <= MAX_DURATION_SECONDS:
        problems.append(f"{what}: {value!r} must be from 1s to 7d")
    return parsed


def _count(value: Any, what: str, problems: list[str]) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(f"{what}: 'count' must be a whole number")
        return 0
    if not 1 <= value <= MAX_STATE_COUNT:
        problems.append(f"{what}: 'count' must be from 1 to {MAX_STATE_COUNT}")
    return value


def _group_by(value: Any, what: str, problems: list[str]) -> tuple[tuple[str, ...], bool]:
    if value is None:
        return (), False
    programs = value if isinstance(value, list) else [value]
    if not programs or not all(isinstance(p, str) and p.strip() for p in programs):
        problems.append(
            f"{what}: 'group_by' must be a jq expression or a list of them (non-empty strings)"
        )
        return (), False
    for number, program in enumerate(programs):
        label = "group_by" + (f" #{number}" if isinstance(value, list) else "")
        _check_compiles(program, f"{what}: {label}", problems)
    return tuple(programs), isinstance(value, list)


def _check_stateful_names(rules: list[Rule], problems: list[str]) -> None:
    """A stateful rule's state is keyed by its name, and a sequence names its steps: those
    names must be unique, and a step must be an enabled rule without memory of its own."""
    by_name: dict[str, list[Rule]] = {}
    for rule in rules:
        by_name.setdefault(rule.name, []).append(rule)
    for rule in rules:
        if rule.stateful is not None and len(by_name[rule.name]) > 1:
            problems.append(
                f"{rule.where}: another rule has the same name, and a {rule.stateful.kind} "
                "rule's state is kept under its name"
            )
        if not isinstance(rule.stateful, Sequence) or not rule.enabled:
            continue  # a disabled sequence is never evaluated: its steps may be anything
        for step in dict.fromkeys(rule.stateful.steps):
            found = by_name.get(step, [])
            what = f"{rule.where}: sequence step {step!r}"
            if not found:
                problems.append(f"{what}: no rule has this name")
            elif len(found) > 1:
                problems.append(f"{what}: several rules have this name")
            elif found[0] is rule:
                problems.append(f"{what}: a sequence cannot be its own step")
            elif found[0].stateful is not None:
                problems.append(
                    f"{what}: a step must be a rule without threshold, distinct, dedup or sequence"
                )
            elif not found[0].enabled:
                problems.append(
                    f"{what}: the rule is disabled, so it is never evaluated (to keep it "
                    "from alerting on its own, set alert = false instead)"
                )


def _check_compiles(program: str, what: str, problems: list[str]) -> None:
    try:
        jq.compile(program)
    except ValueError as exc:
        detail = " ".join(str(exc).split())
        problems.append(f"{what} does not compile: {detail}")


def _suppressions(raw: Any, where: str, problems: list[str]) -> tuple[Suppression, ...]:
    """`suppress = 'jq'`, `suppress = { match = 'jq', expires = 2027-01-31, reason = "..." }`,
    or a list mixing both."""
    if raw is None:
        return ()
    entries = raw if isinstance(raw, list) else [raw]
    suppressions = []
    for number, entry in enumerate(entries):
        what = f"{where}: suppress" + (f" #{number}" if isinstance(raw, list) else "")
        if isinstance(entry, str):
            entry = {"match": entry}
        if not isinstance(entry, dict):
            problems.append(
                f"{what}: must be a jq expression or a {{ match, expires, reason }} table"
            )
            continue
        found = len(problems)
        for key in sorted(set(entry) - SUPPRESS_KEYS):
            suggestion = did_you_mean(key, SUPPRESS_KEYS) or " (allowed: match, expires, reason)"
            problems.append(f"{what}: unknown key {key!r}{suggestion}")
        match = entry.get("match")
        if not isinstance(match, str) or not match.strip():
            problems.append(f"{what}: 'match' must be a jq expression (a non-empty string)")
        else:
            _check_compiles(match, what, problems)
        expires = entry.get("expires")
        if expires is not None:
            if isinstance(expires, datetime) and expires.tzinfo is not None:
                expires = expires.astimezone(UTC)
            elif isinstance(expires, datetime) or not isinstance(expires, date):
                problems.append(
                    f"{what}: 'expires' must be a date (2027-01-31) or a date-time with an "
                    "offset (2027-01-31T18:00:00Z)"
                )
        reason = entry.get("reason", "")
        if not isinstance(reason, str):
            problems.append(f"{what}: 'reason' must be a string")
        if len(problems) == found:
            suppressions.append(Suppression(match=match, expires=expires, reason=reason))
    return tuple(suppressions)


def _tests(
    raw: Any, where: str, directory: Path | None, problems: list[str]
) -> tuple[RuleTest, ...]:
    if raw is None:
        return ()
    tests = []
    names: set[str] = set()
    for number, table in enumerate(_tables(raw, "rule.test", problems, f"{where}: ")):
        if not isinstance(table, dict):
            problems.append(f"{where}: test #{number}: must be a table")
            continue
        name = table.get("name")
        what = f"{where}: test #{number}" + (f" {name!r}" if isinstance(name, str) else "")
        found = len(problems)
        for key in sorted(set(table) - TEST_KEYS):
            suggestion = did_you_mean(key, TEST_KEYS) or f" (allowed: {', '.join(TEST_KEYS)})"
            problems.append(f"{what}: unknown key {key!r}{suggestion}")
        if not isinstance(name, str) or not name.strip():
            problems.append(f"{what}: 'name' must be set to a non-empty string")
        elif name in names:
            problems.append(f"{what}: another test of the rule has the same name")
        else:
            names.add(name)
        event, event_file = table.get("event"), table.get("event_file")
        raw_events = table.get("events")
        if sum(value is not None for value in (event, event_file, raw_events)) != 1:
            problems.append(
                f"{what}: give exactly one of 'event' (a table, or the record's JSON in a "
                "'''string'''), 'event_file' and 'events' (a timeline, [[rule.test.events]])"
            )
        else:
            event = _check_event(event, event_file, what, problems)
        events = _timeline(raw_events, what, directory, problems) if raw_events else ()
        alerts = _expected_alerts(table.get("alerts"), raw_events is not None, what, problems)
        expect = table.get("expect")
        if expect is None and alerts is not None:
            expect = bool(alerts)
        if not isinstance(expect, bool):
            problems.append(
                f"{what}: 'expect' must be true or false"
                + (" (or give 'alerts')" if raw_events is not None else "")
            )
        elif alerts is not None and expect != bool(alerts):
            problems.append(f"{what}: expect = {str(expect).lower()} contradicts 'alerts'")
        match, title = table.get("match", NOT_GIVEN), table.get("title")
        if (match is not NOT_GIVEN or title is not None) and raw_events is not None:
            problems.append(f"{what}: with 'events', check the annotation and title in 'alerts'")
        if (match is not NOT_GIVEN or title is not None) and expect is False:
            problems.append(f"{what}: 'match' and 'title' can only be checked with expect = true")
        if match is not NOT_GIVEN and (detail := _not_json(match)) is not None:
            problems.append(f"{what}: 'match' {detail}")
        if title is not None and not isinstance(title, str):
            problems.append(f"{what}: 'title' must be a string")
        if len(problems) == found:
            tests.append(
                RuleTest(
                    name=name,
                    expect=expect,
                    event=MappingProxyType(event) if event is not None else None,
                    event_file=_relative(event_file, directory),
                    events=events,
                    alerts=alerts,
                    match=match,
                    title=title,
                )
            )
    return tuple(tests)


def _relative(name: str | None, directory: Path | None) -> Path | None:
    """An event file's path: relative to the rule's file, wherever the command runs from."""
    if name is None:
        return None
    return Path(name) if directory is None else directory / name


def _check_event(event: Any, event_file: Any, what: str, problems: list[str]) -> Any:
    """Check a test's record; return it (written as JSON text: decoded)."""
    if isinstance(event, str):
        event, detail = _event_from_json(event)
        if detail is not None:
            problems.append(f"{what}: 'event' {detail}")
    elif event is not None and not isinstance(event, dict):
        problems.append(
            f"{what}: 'event' must be a table or a string of JSON (the CloudTrail record)"
        )
    elif event is not None and (detail := _not_json(event)) is not None:
        problems.append(f"{what}: 'event' {detail}")
    elif event_file is not None and (not isinstance(event_file, str) or not event_file):
        problems.append(f"{what}: 'event_file' must be a file name")
    return event


def _timeline(
    raw: Any, what: str, directory: Path | None, problems: list[str]
) -> tuple[TimelineEntry, ...]:
    """[[rule.test.events]]: each a record (`event` or `event_file`) with an optional `at`
    (its eventTime), `repeat` and `every` (a duration between the copies)."""
    entries = []
    for number, table in enumerate(_tables(raw, "rule.test.events", problems, f"{what}: ")):
        label = f"{what}: events #{number}"
        if not isinstance(table, dict):
            problems.append(f"{label}: must be a table")
            continue
        found = len(problems)
        for key in sorted(set(table) - TIMELINE_KEYS):
            suggestion = (
                did_you_mean(key, TIMELINE_KEYS) or f" (allowed: {', '.join(TIMELINE_KEYS)})"
            )
            problems.append(f"{label}: unknown key {key!r}{suggestion}")
        event, event_file = table.get("event"), table.get("event_file")
        if (event is None) == (event_file is None):
            problems.append(
                f"{label}: give exactly one of 'event' (a table, or the record's JSON in a "
                "'''string''') and 'event_file'"
            )
        else:
            event = _check_event(event, event_file, label, problems)
        at = table.get("at")
        if isinstance(at, str):
            # Not a date-time: reported below, as any other value that is not one.
            with contextlib.suppress(ValueError):
                at = datetime.fromisoformat(at.replace("Z", "+00:00"))
        if at is not None and (not isinstance(at, datetime) or at.tzinfo is None):
            problems.append(
                f"{label}: 'at' must be a date-time with an offset (2023-07-10T12:00:00Z)"
            )
        repeat = table.get("repeat", 1)
        if isinstance(repeat, bool) or not isinstance(repeat, int):
            problems.append(f"{label}: 'repeat' must be a whole number")
        elif not 1 <= repeat <= MAX_TEST_REPEAT:
            problems.append(f"{label}: 'repeat' must be from 1 to {MAX_TEST_REPEAT}")
        every = _duration_field(table.get("every", "1s"), f"{label}: every", problems)
        if len(problems) == found:
            entries.append(
                TimelineEntry(
                    event=MappingProxyType(event) if event is not None else None,
                    event_file=_relative(event_file, directory),
                    at=at.astimezone(UTC) if isinstance(at, datetime) else None,
                    repeat=repeat,
                    every=every.seconds,
                )
            )
    if not entries and not problems:
        problems.append(f"{what}: 'events' must hold at least one [[rule.test.events]] table")
    return tuple(entries)


def _expected_alerts(
    raw: Any, timeline: bool, what: str, problems: list[str]
) -> tuple[Mapping[str, Any], ...] | None:
    if raw is None:
        return None
    if not timeline:
        problems.append(f"{what}: 'alerts' needs 'events' (a timeline)")
        return None
    if not isinstance(raw, list) or not all(isinstance(entry, dict) for entry in raw):
        problems.append(
            f"{what}: 'alerts' must be a list of tables, e.g. [{{ count = 50 }}] ([] for none)"
        )
        return None
    alerts = []
    for number, entry in enumerate(raw):
        for key in sorted(set(entry) - EXPECTED_ALERT_KEYS):
            allowed = ", ".join(sorted(EXPECTED_ALERT_KEYS))
            suggestion = did_you_mean(key, EXPECTED_ALERT_KEYS) or f" (allowed: {allowed})"
            problems.append(f"{what}: alerts #{number}: unknown key {key!r}{suggestion}")
        if (detail := _not_json(entry)) is not None:
            problems.append(f"{what}: alerts #{number} {detail}")
        alerts.append(MappingProxyType(entry))
    return tuple(alerts)


def _not_json(value: Any) -> str | None:
    """Why a TOML value has no JSON equivalent (a date or time), or None when it has one."""
    if isinstance(value, dict):
        return next((d for v in value.values() if (d := _not_json(v)) is not None), None)
    if isinstance(value, list):
        return next((d for v in value if (d := _not_json(v)) is not None), None)
    if isinstance(value, date | time):
        return f"holds a TOML date or time ({value}), which JSON has not: quote it"
    return None


def _event_from_json(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """A test's `event` written as JSON text, usually a multi-line TOML literal string (three
    single quotes around it): the record, or why it cannot be one."""
    try:
        event = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return None, f"is not JSON: {exc}"
    if not isinstance(event, dict):
        return None, "must be the JSON of one CloudTrail record (an object)"
    return event, None
