"""Configuration: parse and validate a tattletail.toml once, into typed, frozen objects.

A config written for the Go cloudtrail-tattletail loads unchanged. Every check the original makes
is made here too, plus one it does not: an unknown key is an error naming it and its table, so a
typo such as `destination = [...]` cannot silently drop alerts. Every problem of a file is
reported at once.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jq

from tattletail.destinations import DESTINATION_TYPES, Destination, DestinationConfigError

RULE_KEYS = {
    "name": "a short name, shown as the alert's title",
    "jq_match": "the jq program tested against each record",
    "description": "what the alert means",
    "destinations": "ids of the [[destination]] tables that receive the alert",
}
TOP_LEVEL_KEYS = {"rule", "destination", "dead_letter"}


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


@dataclass(frozen=True)
class Rule:
    """One [[rule]]: jq_match is known to compile."""

    index: int
    name: str
    jq_match: str
    description: str
    destinations: tuple[str, ...]


@dataclass(frozen=True)
class Config:
    rules: tuple[Rule, ...]
    destinations: Mapping[str, Destination]
    source: str
    # The destination (sqs or s3) that keeps alerts whose delivery failed after every retry.
    dead_letter: str | None = None


def load_file(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc}"]) from None
    return parse(text, source=str(path))


def parse(text: str, source: str = "tattletail.toml") -> Config:
    """Parse and validate a config document; raise ConfigError listing every problem."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"invalid TOML: {exc}"]) from None

    problems: list[str] = []
    for key in sorted(set(document) - TOP_LEVEL_KEYS):
        problems.append(
            f"unknown top-level key {key!r} (expected [[rule]] and [[destination]] tables)"
        )
    destinations = _destinations(document.get("destination", []), problems)
    # A rule naming a destination that exists but is invalid is reported once, at the table.
    declared = (
        {
            table.get("id")
            for table in document.get("destination", [])
            if isinstance(table, dict) and isinstance(table.get("id"), str)
        }
        if isinstance(document.get("destination"), list)
        else set()
    )
    rules = _rules(document.get("rule", []), declared, problems)
    dead_letter = _dead_letter(document.get("dead_letter"), destinations, declared, problems)
    if problems:
        raise ConfigError(source, problems)
    return Config(
        rules=rules,
        destinations=MappingProxyType(destinations),
        source=source,
        dead_letter=dead_letter,
    )


def _dead_letter(
    value: Any, destinations: Mapping[str, Destination], declared: set[str], problems: list[str]
) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value not in declared:
        problems.append(f"dead_letter: {value!r} is not the id of a [[destination]]")
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


def _tables(value: Any, name: str, problems: list[str]) -> list[Any]:
    if isinstance(value, list):
        return value
    problems.append(f"'{name}' must be written as [[{name}]] tables")
    return []


def _destinations(raw: Any, problems: list[str]) -> dict[str, Destination]:
    destinations: dict[str, Destination] = {}
    # Every id seen so far, valid table or not: a duplicate is reported whatever the first is.
    seen_ids: set[str] = set()
    for index, table in enumerate(_tables(raw, "destination", problems)):
        if not isinstance(table, dict):
            problems.append(f"destination #{index}: must be a table")
            continue
        dest_id = table.get("id")
        where = f"destination #{index}" + (f" {dest_id!r}" if isinstance(dest_id, str) else "")
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
            problems.append(f"{where}: invalid destination type {dest_type!r} (known: {known})")
            continue
        settings = {key: value for key, value in table.items() if key not in {"id", "type"}}
        unknown = sorted(set(settings) - set(kind.config_keys()))
        for key in unknown:
            allowed = ", ".join(["id", "type", *sorted(kind.config_keys())])
            problems.append(
                f"{where}: unknown key {key!r} for type {dest_type!r} (allowed: {allowed})"
            )
        # The known keys are still checked, so every problem of the table is reported at once.
        known = {key: value for key, value in settings.items() if key not in unknown}
        try:
            destination = kind.build(dest_id, known)
        except DestinationConfigError as exc:
            problems.extend(f"{where}: ({dest_type}) {message}" for message in exc.problems)
            continue
        if not unknown and dest_id not in destinations:
            destinations[dest_id] = destination
    return destinations


def _rules(raw: Any, destination_ids: set[str], problems: list[str]) -> tuple[Rule, ...]:
    rules = []
    for index, table in enumerate(_tables(raw, "rule", problems)):
        if not isinstance(table, dict):
            problems.append(f"rule #{index}: must be a table")
            continue
        name = table.get("name")
        where = f"rule #{index}" + (f" {name!r}" if isinstance(name, str) else "")
        found = len(problems)
        for key in sorted(set(table) - set(RULE_KEYS)):
            problems.append(f"{where}: unknown key {key!r} (allowed: {', '.join(RULE_KEYS)})")
        if not isinstance(name, str) or not name.strip():
            problems.append(f"{where}: 'name' must be set to a non-empty string")
        description = table.get("description", "")
        if not isinstance(description, str):
            problems.append(f"{where}: 'description' must be a string")
        jq_match = table.get("jq_match")
        if not isinstance(jq_match, str) or not jq_match.strip():
            problems.append(f"{where}: jq_match not defined (it must be a non-empty jq program)")
        else:
            try:
                jq.compile(jq_match)
            except ValueError as exc:
                detail = " ".join(str(exc).split())
                problems.append(f"{where}: jq_match does not compile: {detail}")
        names = table.get("destinations", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            problems.append(f"{where}: 'destinations' must be a list of destination ids")
            names = []
        for dest_name in names:
            if dest_name not in destination_ids:
                problems.append(f"{where}: unknown destination {dest_name!r}")
        if len(problems) == found:
            rules.append(
                Rule(
                    index=index,
                    name=name,
                    jq_match=jq_match,
                    description=description,
                    destinations=tuple(dict.fromkeys(names)),
                )
            )
    return tuple(rules)
