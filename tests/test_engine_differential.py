"""The engine (index, gates, prefilters, native fast path, libjq fallback) gives exactly libjq's
results: every rule of the README, the 50-rule bench pack and the bundled rule pack, on every
real record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tattletail import config
from tattletail.rules import RuleSet, RuleSource
from tests.engine_support import engine_result, libjq_truth, typed
from tests.support import REPO, SHARED_DATA, real_records

RULE_FILES = [
    REPO / "config" / "tattletail.toml",
    REPO / "bench" / "rules-50.toml",
    REPO / "config" / "tattletail-pack.toml",
]


def rule_sources(path: Path) -> list[RuleSource]:
    # Through the config loader: the pack is split into files joined by `include`. A sequence
    # rule has no jq of its own (its steps' rules match for it). The converted Sigma rules
    # (config/rules/sigma/) have their own, batched, check: tests/test_sigma_rules.py.
    rules = config.load_file(path).rules
    return [
        RuleSource(rule.name, rule.jq_match)
        for rule in rules
        if rule.jq_match and Path(rule.origin).parent.name != "sigma"
    ]


def panther_events() -> list[dict[str, Any]]:
    path = SHARED_DATA / "detections" / "panther-cloudtrail-tests.jsonl"
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return [line["log"] for line in lines if line.get("is_cloudtrail_event")]


@pytest.mark.parametrize("rules_file", RULE_FILES, ids=lambda p: p.name)
def test_engine_equals_libjq_on_every_real_record(rules_file: Path) -> None:
    sources = rule_sources(rules_file)
    records = real_records() + panther_events()
    assert len(records) > 3000

    evaluation = RuleSet(sources).evaluate(records)
    expected_matches, expected_errors = libjq_truth(sources, records)

    got = [(p, r, typed(a)) for p, r, a in engine_result(evaluation.matches, records)]
    want = [(p, r, typed(a)) for p, r, a in expected_matches]
    assert got == want
    assert evaluation.error_counts == expected_errors
    # The data really exercises the rules: something matches, most rules are not trivial.
    assert len(want) > 0


def test_rule_by_rule_order_gives_the_same_results_as_record_by_record() -> None:
    sources = rule_sources(REPO / "bench" / "rules-50.toml")
    records = real_records()
    rules = RuleSet(sources)
    announced: list[int] = []
    by_rule = rules.evaluate_rule_by_rule(records, frozenset({3}), announced.append)
    by_record = rules.evaluate(records, frozenset({3}))
    assert engine_result(by_rule.matches, records) == engine_result(by_record.matches, records)
    assert by_rule.error_counts == by_record.error_counts
    assert announced == [n for n in range(len(sources)) if n != 3]
