"""`tattletail sigma convert` and `tattletail sigma check`: the [[rule]] tables they write (and
that the config loader then accepts), what they report per rule, their exit codes, and what a
previous conversion's additions become."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tattletail import config
from tattletail.cli import main
from tattletail.sigma.convert import Converter
from tests.sigma_support import UUID, rule_yaml
from tests.support import SHARED_DATA

CLOUDTRAIL_RULES = SHARED_DATA / "sigma" / "sigmahq-cloudtrail"
SELECTION = {"selection": {"eventName": "CreateUser"}, "condition": "selection"}


def write_rule(
    directory: Path, name: str, detection: dict[str, Any] | None = None, **meta: Any
) -> Path:
    path = directory / f"{name}.yml"
    path.write_text(rule_yaml(detection or SELECTION, **meta))
    return path


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_convert_writes_rule_tables_that_load_and_alert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rule = write_rule(
        tmp_path,
        "create_user",
        title="Odd \"title\" with \\ and 'quotes'",
        description="Line one.\nLine two.",
        author="Jane Doe, John Roe",
        level="high",
        tags=["attack.persistence", "attack.t1136.003", "detection.emerging-threats"],
        references=["https://example.com/a"],
        falsepositives=["Admins.", "CI"],
    )
    out_file = tmp_path / "rules.toml"
    code, out, err = run(["sigma", "convert", str(rule), "-o", str(out_file)], capsys)
    assert code == 0
    assert err.strip().splitlines()[-1].startswith("converted 1 of 1 rules")
    (table,) = tomllib.loads(out_file.read_text())["rule"]
    assert table["name"] == "Odd \"title\" with \\ and 'quotes'"
    assert table["description"] == "Line one. Line two. (Sigma rule by Jane Doe, John Roe.)"
    assert table["severity"] == "high"
    assert table["tags"] == [
        f"sigma:{UUID}",
        "attack.persistence",
        "T1136.003",
        "detection.emerging-threats",
    ]
    assert table["runbook"] == (
        "Known false positives (Sigma): Admins; CI. References: https://example.com/a"
    )
    assert "destinations" not in table
    assert f"# Sigma rule {UUID}: " in out_file.read_text()

    # An including config routes it, and it alerts with its title.
    top = tmp_path / "top.toml"
    top.write_text(
        'include = ["rules.toml"]\ndefault_destinations = ["out"]\n'
        '[[destination]]\nid = "out"\ntype = "stdout"\n'
    )
    loaded = config.load_file(top)
    assert [r.destinations for r in loaded.rules] == [("out",)]
    record = tmp_path / "event.json"
    record.write_text(
        '{"Records": [{"eventName": "createuser", "eventID": "1", '
        '"userIdentity": {"arn": "arn:aws:iam::1:user/bob"}}]}'
    )
    code, out, _ = run(["scan", "--dry-run", "--config", str(top), str(record)], capsys)
    assert (
        code == 0
        and '"title":"Odd \\"title\\" with \\\\ and \'quotes\': createuser by arn:aws:iam::1:'
        in out
    )


def test_convert_to_stdout_and_to_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_rule(tmp_path, "one", title="One")
    write_rule(tmp_path, "two", title="Two", id="6f0b9a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b")
    code, out, _ = run(["sigma", "convert", str(tmp_path)], capsys)
    assert code == 0
    assert [r["name"] for r in tomllib.loads(out)["rule"]] == ["One", "Two"]
    target = tmp_path / "out"
    code, _, _ = run(["sigma", "convert", str(tmp_path), "-o", f"{target}/"], capsys)
    assert code == 0
    assert sorted(p.name for p in target.iterdir()) == ["one.toml", "two.toml"]


def test_a_later_conversion_keeps_tests_enabled_and_extra_tags(tmp_path: Path) -> None:
    source = write_rule(tmp_path, "rule", title="Rule")
    target = tmp_path / "out"
    assert main(["sigma", "convert", str(source), "-o", f"{target}/"]) == 0
    converted = target / "rule.toml"
    text = converted.read_text()
    text = text.replace("tags = [", "# Too noisy here.\nenabled = false\ntags = [")
    text = text.replace(f'"sigma:{UUID}"', f'"sigma:{UUID}", "stratus:aws.x.y"')
    text += (
        '\n# kept\n[[rule.test]]\nname = "t"\nevent = { eventName = "CreateUser" }\nexpect = true\n'
    )
    converted.write_text(text)
    # The Sigma rule changes upstream; converting again updates the rule, keeps the additions.
    write_rule(
        tmp_path,
        "rule",
        {"selection": {"eventName": "DeleteUser"}, "condition": "selection"},
        title="Rule",
    )
    assert main(["sigma", "convert", str(source), "-o", f"{target}/"]) == 0
    again = converted.read_text()
    (table,) = tomllib.loads(again)["rule"]
    assert "deleteuser" in table["jq_match"] and "createuser" not in table["jq_match"]
    assert table["enabled"] is False and "# Too noisy here.\nenabled = false" in again
    assert table["tags"][-1] == "stratus:aws.x.y"
    assert table["test"] == [{"name": "t", "event": {"eventName": "CreateUser"}, "expect": True}]
    assert "# kept\n[[rule.test]]" in again


def test_names_stay_unique_and_odd_rules_still_convert(tmp_path: Path) -> None:
    write_rule(tmp_path, "a", title="Same")
    write_rule(tmp_path, "b", title="Same", id="7f0b9a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b")
    write_rule(tmp_path, "b2", title="Same", id="7f0b9a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b")
    write_rule(tmp_path, "c", title="Not a UUID", id="my-rule-1")
    write_rule(
        tmp_path,
        "d",
        title="Deprecated",
        status="deprecated",
        id="8f0b9a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
    )
    write_rule(
        tmp_path,
        "e",
        title="IAM",
        logsource={"product": "aws", "service": "iam"},
        id="9f0b9a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
    )
    conversions = Converter().convert_paths([tmp_path])
    assert [c.table.name for c in conversions if c.table] == [
        "Same",
        "Same [7f0b9a3e]",
        "Same [7f0b9a3e 3]",
        "Not a UUID",
        "Deprecated",
        "IAM",
    ]
    assert conversions[3].warnings[0] == "id 'my-rule-1' is not a UUID (kept as written)"
    assert conversions[3].table is not None and "sigma:my-rule-1" in conversions[3].table.tags
    assert conversions[4].table is not None and conversions[4].table.enabled is False


def test_check_reports_each_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_rule(tmp_path, "ok", title="Fine")
    write_rule(
        tmp_path,
        "status",
        {
            "selection": {"eventName": "DeleteSAMLProvider", "status": "success"},
            "condition": "selection",
        },
        title="Status",
    )
    write_rule(
        tmp_path,
        "count",
        {
            "selection": {"eventName": "x"},
            "timeframe": "5m",
            "condition": "selection | count() < 5",
        },
        title="Count",
    )
    write_rule(
        tmp_path,
        "windows",
        title="Windows",
        logsource={"product": "windows", "category": "process_creation"},
    )
    (tmp_path / "broken.yml").write_text("title: [unclosed\n")
    code, out, _ = run(["sigma", "check", str(tmp_path)], capsys)
    assert code == 1
    lines = out.splitlines()
    assert "broken.yml: broken: unsupported: cannot read: " in lines[0]
    assert lines[1] == (
        "count.yml: Count: unsupported: aggregation `count() < 5` (timeframe: 5m): condition "
        "`lt: 5` (fewer than 5 events in a window): known only once the window has closed, and "
        "nothing runs then (a rule with memory alerts on the record that decides)"
    )
    assert lines[2] == "ok.yml: Fine: converted (native, index: eventName)"
    assert lines[3] == "status.yml: Status: warning (native, index: eventName)"
    assert lines[4].startswith("    warning: CloudTrail records have no field `status`")
    assert lines[5].startswith("windows.yml: Windows: unsupported: logsource is not AWS")
    assert lines[-1] == (
        "converted 2 of 5 rules (1 with warnings, 2 on the native fast path), 3 unsupported"
    )


def test_the_issues_command_converts_57_of_57(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["sigma", "convert", str(CLOUDTRAIL_RULES)], capsys)
    assert code == 0
    assert len(tomllib.loads(out)["rule"]) == 57
    assert err.splitlines()[-1] == (
        "converted 57 of 57 rules (4 with warnings, 57 on the native fast path), 0 unsupported"
    )


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["sigma", "convert", str(tmp_path / "nope.yml")], capsys)
    assert code == 2 and "no such file or directory" in err
    code, _, err = run(["sigma", "check", str(tmp_path)], capsys)
    assert code == 2 and "no Sigma rule" in err


def test_without_pysigma_the_command_says_how_to_install_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    found = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sigma" else found(name, *a)
    )
    code, _, err = run(["sigma", "convert", str(write_rule(tmp_path, "r"))], capsys)
    assert code == 2
    assert "pip install 'tattletail[sigma]'" in err
