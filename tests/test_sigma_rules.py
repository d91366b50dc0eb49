"""The SigmaHQ rules of ../shared/data/sigma, converted, and the copy shipped in
config/rules/sigma/: every rule converts or names what it needs; the shipped files are exactly
the converter's output (plus their tests, noise settings and Stratus tags); and over every record
of ../shared/data the engine gives libjq's alerts while answering natively, with no libjq call.
(What the aggregation rules' memory alerts on: tests/test_sigma_memory.py.)"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path
from typing import Any

import jq
import orjson
import pytest

from tattletail import config
from tattletail.native import Fallback, compile_native
from tattletail.rules import RuleSet, RuleSource
from tattletail.sigma.cli import convert
from tattletail.sigma.convert import Conversion, Converter
from tests.support import REPO, SHARED_DATA, real_records

SIGMA_DATA = SHARED_DATA / "sigma"
CLOUDTRAIL_RULES = SIGMA_DATA / "sigmahq-cloudtrail"
AGGREGATION_RULES = SIGMA_DATA / "sigmahq-aggregation"
# What the shipped folder is converted from (README.md there says the same command).
SHIPPED_FROM = [str(CLOUDTRAIL_RULES), str(AGGREGATION_RULES)]
SHIPPED = REPO / "config" / "rules" / "sigma"


@pytest.fixture(scope="module")
def conversions() -> list[Conversion]:
    return Converter().convert_paths([SIGMA_DATA])


def all_records() -> list[dict[str, Any]]:
    path = SHARED_DATA / "detections" / "panther-cloudtrail-tests.jsonl"
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return real_records() + [line["log"] for line in lines if line.get("is_cloudtrail_event")]


def test_every_sigma_rule_converts_or_names_the_construct_it_needs(
    conversions: list[Conversion],
) -> None:
    by_folder: dict[str, list[Conversion]] = {}
    for conversion in conversions:
        by_folder.setdefault(conversion.path.parent.name, []).append(conversion)
    cloudtrail = by_folder["sigmahq-cloudtrail"]
    assert len(cloudtrail) == 57
    assert all(c.table is not None and c.native and c.memory is None for c in cloudtrail)
    aggregation = {c.path.name: c for c in by_folder["sigmahq-aggregation"]}
    assert len(aggregation) == 8
    became = {name: c.memory for name, c in aggregation.items() if c.converted}
    assert became == {
        "aws_ec2_download_userdata.yml": "threshold 11 in 30m",
        "aws_enum_backup.yml": "threshold 6 in 10m",
        "aws_enum_listing.yml": "threshold 51 in 10m",
        "aws_enum_network.yml": "threshold 6 in 10m",
        "aws_enum_storage.yml": "threshold 6 in 10m",
        "aws_macic_evasion.yml": "threshold 6 in 10m by sourceIPAddress",
        "aws_ses_messaging_enabled.yml": "sequence of 2 in 5m, any order",
    }
    assert all(aggregation[name].native for name in became)
    assert aggregation["aws_lambda_function_created_or_invoked.yml"].unsupported == (
        "`near` (`selection1 | near selection2`) without a `timeframe`: how near the events "
        "must be is not said (add `timeframe: 15m`, say)"
    )


def test_the_known_pitfalls_are_flagged_and_the_rest_convert_cleanly(
    conversions: list[Conversion],
) -> None:
    warned = {
        c.path.name: c.warnings
        for c in conversions
        if c.warnings and c.path.parent.name == "sigmahq-cloudtrail"
    }
    assert set(warned) == {
        "aws_delete_saml_provider.yml",  # status: 'success'
        "aws_iam_backdoor_users_keys.yml",  # arn|contains: responseElements.accessKey.userName
        "aws_update_login_profile.yml",  # arn|fieldref: requestParameters.userName
        "aws_iam_s3browser_templated_s3_bucket_policy_creation.yml",  # quotes in a policy
    }
    assert "no field `status`" in warned["aws_delete_saml_provider.yml"][0]
    assert "did you mean `|fieldref`" in warned["aws_iam_backdoor_users_keys.yml"][0]
    assert "compares an ARN with a name" in warned["aws_update_login_profile.yml"][0]


def test_converting_twice_gives_the_same_toml(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for target in (first, second):
        assert convert(SHIPPED_FROM, f"{target}/") == 1  # the one `near` without a timeframe
        assert convert(SHIPPED_FROM, str(target / "all.toml")) == 1
    assert len(list(first.iterdir())) == 65
    for path in first.iterdir():
        assert path.read_bytes() == (second / path.name).read_bytes(), path.name


def test_the_shipped_rules_are_what_the_converter_writes(tmp_path: Path) -> None:
    copy = tmp_path / "sigma"
    shutil.copytree(SHIPPED, copy)
    assert convert(SHIPPED_FROM, f"{copy}/") == 1
    for path in SHIPPED.glob("*.toml"):
        assert (copy / path.name).read_text() == path.read_text(), path.name
    assert len(list(SHIPPED.glob("*.toml"))) == 57 + 7


def test_shipped_rules_keep_the_sigma_attribution() -> None:
    for path in SHIPPED.glob("*.toml"):
        text = path.read_text()
        for rule in tomllib.loads(text)["rule"]:
            tag = next(t for t in rule["tags"] if t.startswith("sigma:"))
            assert f"# Sigma rule {tag.removeprefix('sigma:')}: " in text and "\n# Author: " in text
            assert rule["description"].endswith(".)") and "(Sigma rule by " in rule["description"]
    assert "Detection Rule License (DRL) 1.1" in (SHIPPED / "LICENSE-DRL-1.1.md").read_text()


def libjq_verdicts(programs: list[str], records: list[dict[str, Any]]) -> list[list[bool]]:
    """libjq's match/no match per record and program, in one libjq run over all records: a
    converted rule outputs the record or nothing and never raises, so `first(...)` says it all."""
    tests = ", ".join(
        f"([first(({p}) | select(. != null and . != false))] != [])" for p in programs
    )
    batched = jq.compile(f"[.[] | [{tests}]]")
    return batched.input_text(orjson.dumps(records).decode()).first()


def test_shipped_rules_give_libjqs_alerts_natively_on_every_record() -> None:
    rules = [
        r
        for r in config.load_file(REPO / "config" / "tattletail-pack.toml").rules
        if Path(r.origin).parent.name == "sigma" and r.jq_match
    ]
    # The 57, the 6 thresholds and the 2 steps of the sequence (which has no jq_match).
    assert len(rules) == 57 + 6 + 2
    records = all_records()
    evaluation = RuleSet([RuleSource(r.name, r.jq_match) for r in rules]).evaluate(records)
    position = {id(record): n for n, record in enumerate(records)}
    got = {(m.rule_index, position[id(m.record)]) for m in evaluation.matches}
    verdicts = libjq_verdicts([rule.jq_match for rule in rules], records)
    want = {
        (index, n) for n, row in enumerate(verdicts) for index, matched in enumerate(row) if matched
    }
    assert got == want
    assert evaluation.error_counts == {}
    assert len(want) > 100
    # Natively: no record sends a rule to libjq.
    for rule in rules:
        native = compile_native(rule.jq_match)
        assert native is not None and native.evaluable
        for record in records:
            try:
                native.first_output(record)
            except Fallback:
                pytest.fail(f"{rule.name}: libjq needed for {record.get('eventID')}")


def test_shipped_rules_are_gated_by_the_index() -> None:
    loaded = config.load_file(REPO / "config" / "tattletail-pack.toml")
    sources = [
        RuleSource(r.name, r.jq_match)
        for r in loaded.rules
        if Path(r.origin).parent.name == "sigma" and r.jq_match
    ]
    compiled = RuleSet(sources).rules
    ungated = sorted(rule.name for rule in compiled if rule.key_gate is None)
    # Both read no indexed field at all: a user agent; an ARN and a source address. They are
    # their own gates, decided once per distinct value of what they read.
    assert ungated == [
        "Malicious Usage Of IMDS Credentials Outside Of AWS Infrastructure",
        "PUA - AWS TruffleHog Execution",
    ]
    assert all(rule.gate_value is not None for rule in compiled if rule.key_gate is None)
    decided = sum(rule.decided_by_key for rule in compiled)
    assert decided >= 30  # decided by eventSource/eventName/errorCode alone, once per index key
