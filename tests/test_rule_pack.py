"""The rule pack (config/rules/) through the commands a user runs, and the original's config.

- `tattletail test` passes every inline test of the pack;
- scanning each Stratus Red Team recording alerts with every rule that claims the technique
  (`stratus:<technique>` tags);
- over the whole invictus dataset no rule matches more than 2% of the records;
- the Go original's example config loads and alerts exactly as the matching contract says.
"""

from __future__ import annotations

import gzip
import json
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Any

import jq
import orjson
import pytest

from tattletail import config
from tattletail.cli import main
from tests.support import CLOUDTRAIL, REPO

pytestmark = pytest.mark.usefixtures("cli_environment")

PACK_CONFIG = REPO / "config" / "tattletail-pack.toml"
ORIGINAL_CONFIG = REPO / "config" / "tattletail.toml"
SAMPLES = REPO / "config" / "samples"
STRATUS = CLOUDTRAIL / "stratus-red-team"
INVICTUS = CLOUDTRAIL / "invictus"
NOISE_BAR = 0.02


@pytest.fixture(scope="module")
def pack() -> config.Config:
    return config.load_file(PACK_CONFIG)


def records_of(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    document = orjson.loads(gzip.decompress(data) if path.suffix == ".gz" else data)
    return document["Records"] if isinstance(document, dict) else document


def dry_run_alerts(
    config_file: Path, path: Path, capsys: pytest.CaptureFixture[str]
) -> list[dict[str, Any]]:
    code = main(["scan", "--dry-run", "--config", str(config_file), str(path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return [orjson.loads(line) for line in captured.out.splitlines()]


# -- the pack's own tests -------------------------------------------------------------------


def test_the_pack_config_includes_every_rule_file_and_routes_every_rule(
    pack: config.Config,
) -> None:
    rules = REPO / "config" / "rules"
    rule_files = sorted(
        str(p.relative_to(REPO)) for p in [*rules.glob("*.toml"), *rules.glob("sigma/*.toml")]
    )
    assert sorted(str(Path(f).resolve().relative_to(REPO)) for f in pack.files[1:]) == rule_files
    assert all(rule.destinations == pack.default_destinations for rule in pack.rules)
    assert pack.warnings() == []


def test_every_pack_rule_has_an_alerting_test_and_a_near_miss(pack: config.Config) -> None:
    for rule in pack.rules:
        assert {test.expect for test in rule.tests} == {True, False}, rule.where


def test_tattletail_test_passes_every_test_of_the_pack(
    pack: config.Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "junit.xml"
    code = main(["test", "--config", str(PACK_CONFIG), "--junit", str(report)])
    out = capsys.readouterr().out

    total = sum(len(rule.tests) for rule in pack.rules)
    skipped = sum(len(rule.tests) for rule in pack.rules if not rule.enabled)
    assert code == 0, out
    assert out.splitlines()[-1] == (
        f"{total} tests of {len(pack.rules)} rules: {total - skipped} passed, 0 failed, "
        f"0 errors, {skipped} skipped"
    )
    root = ET.parse(report).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == (str(total), "0", "0")


# -- detection: Stratus Red Team --------------------------------------------------------------


def test_scanning_each_stratus_technique_alerts_with_every_rule_tagged_for_it(
    pack: config.Config, capsys: pytest.CaptureFixture[str]
) -> None:
    alerts = dry_run_alerts(PACK_CONFIG, STRATUS, capsys)
    alerted: dict[str, set[str]] = defaultdict(set)  # technique -> rules that alerted on it
    for alert in alerts:
        alerted[Path(alert["source"]).name.removesuffix(".json")].add(alert["name"])

    claims = [
        (rule.name, tag.removeprefix("stratus:"))
        for rule in pack.rules
        for tag in rule.tags
        if tag.startswith("stratus:")
    ]
    assert claims
    missed = [
        (name, technique)
        for name, technique in claims
        if not (STRATUS / f"{technique}.json").is_file() or name not in alerted[technique]
    ]
    assert missed == []
    # Every recorded technique is detected by some rule, claimed or broader.
    assert {path.stem for path in STRATUS.glob("*.json")} <= set(alerted)


# -- noise: invictus --------------------------------------------------------------------------


def test_no_rule_matches_more_than_2_percent_of_the_invictus_records(
    pack: config.Config, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["scan", "--summary", "--all", "--format", "json", "--config", str(PACK_CONFIG)]
    code = main([*argv, str(INVICTUS)])
    report = orjson.loads(capsys.readouterr().out)
    assert code == 0

    records = sum(len(records_of(path)) for path in INVICTUS.glob("*.json"))
    assert report["records"] == records
    rows = {rule["name"]: rule for rule in report["rules"]}
    assert set(rows) == {rule.name for rule in pack.rules if rule.enabled}
    # A rule with memory counts its matches to alert on a few: its noise is its alerts.
    noise = {
        rule.name: rows[rule.name]["alerts" if rule.stateful else "matches"]
        for rule in pack.rules
        if rule.alert and rule.enabled
    }
    noisy = {name: n for name, n in noise.items() if n > NOISE_BAR * records}
    assert noisy == {}


# -- the original's config ------------------------------------------------------------------


def expected_alerts(rules: tuple[config.Rule, ...], files: list[Path]) -> set[tuple[str, ...]]:
    """(source, eventID, rule, match as JSON) per the matching contract, straight from libjq."""
    programs = [(rule.name, jq.compile(rule.jq_match)) for rule in rules]
    expected = set()
    for path in files:
        for record in records_of(path):
            for name, program in programs:
                try:
                    first = next(iter(program.input_text(json.dumps(record))))
                except (StopIteration, ValueError):
                    continue
                if first is None or first is False:
                    continue
                match = None if first == record else first
                expected.add((str(path), record["eventID"], name, json.dumps(match)))
    return expected


def test_the_originals_config_loads_with_default_fields_and_alerts_the_same(
    capsys: pytest.CaptureFixture[str],
) -> None:
    loaded = config.load_file(ORIGINAL_CONFIG)
    assert loaded.files == (str(ORIGINAL_CONFIG),)
    assert all(
        (r.severity, r.enabled, r.tags, r.title, r.suppressions, r.tests, r.default_routed)
        == ("medium", True, (), None, (), (), False)
        for r in loaded.rules
    )
    assert loaded.warnings() == []

    alerts = dry_run_alerts(ORIGINAL_CONFIG, SAMPLES, capsys)

    files = sorted(SAMPLES.rglob("*.json.gz"))
    assert len(files) == 4
    got = {(a["source"], a["record"]["eventID"], a["name"], json.dumps(a["match"])) for a in alerts}
    assert len(got) == len(alerts)
    assert got == expected_alerts(loaded.rules, files)
    assert {a["severity"] for a in alerts} == {"medium"}
    assert not any({"title", "tags", "runbook"} & set(a) for a in alerts)
