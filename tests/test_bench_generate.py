"""The benchmark's bundle generator and rule packs: deterministic, CloudTrail-shaped, compilable."""

import gzip
import re
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import jq
import orjson
import pytest

from bench import generate
from bench.__main__ import RULE_SETS, jq_program

KEY = re.compile(
    r"AWSLogs/(?P<account>\d{12})/CloudTrail/(?P<region>[a-z]{2}-[a-z]+-\d)/"
    r"(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/"
    r"(?P=account)_CloudTrail_(?P=region)_(?P=y)(?P=m)(?P=d)T\d{4}Z_[A-Za-z0-9]{16}\.json\.gz"
)
ISO_SECOND = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")

README_RULES = [
    {
        "name": "Create User",
        "jq_match": 'select(.eventName == "CreateUser") | '
        '"username: \\(.responseElements.user.userName)"',
        "description": "A new IAM user has been created",
    },
    {
        "name": "Create AccessKey",
        "jq_match": 'select(.eventName == "CreateAccessKey")',
        "description": "A new Access Key has been created",
    },
    {
        "name": "Modifications",
        "jq_match": 'select(.eventName|test("^(List|Get|Describe|AssumeRole|Decrypt|CreateLog|'
        'ConsoleLogin)")|not)',
        "description": "A config change occurred",
    },
]


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _records(out: Path) -> dict[str, list[dict[str, Any]]]:
    return {
        str(p.relative_to(out)): orjson.loads(gzip.decompress(p.read_bytes()))["Records"]
        for p in sorted((out / "AWSLogs").rglob("*.json.gz"))
    }


@pytest.fixture(scope="module")
def mixed_bundle(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Big enough for the rare events (CreateUser is ~0.05%) to show up."""
    out = tmp_path_factory.mktemp("mixed")
    generate.generate(out, files=6, records=16_000, seed=3, jobs=1)
    return _records(out)


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    generate.generate(tmp_path / "a", files=3, records=900, seed=7, jobs=1)
    generate.generate(tmp_path / "b", files=3, records=900, seed=7, jobs=1)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_parallel_generation_gives_the_same_bytes_as_serial(tmp_path: Path) -> None:
    generate.generate(tmp_path / "serial", files=4, records=800, seed=2, jobs=1)
    generate.generate(tmp_path / "parallel", files=4, records=800, seed=2, jobs=2)
    assert _files(tmp_path / "serial") == _files(tmp_path / "parallel")


def test_different_seed_gives_different_bundle(tmp_path: Path) -> None:
    generate.generate(tmp_path / "a", files=3, records=900, seed=1, jobs=1)
    generate.generate(tmp_path / "b", files=3, records=900, seed=2, jobs=1)
    a, b = _records(tmp_path / "a"), _records(tmp_path / "b")
    assert a.keys() != b.keys()
    ids_a = {r["eventID"] for recs in a.values() for r in recs}
    ids_b = {r["eventID"] for recs in b.values() for r in recs}
    assert not ids_a & ids_b


def test_requested_counts_and_cloudtrail_key_layout(tmp_path: Path) -> None:
    stats = generate.generate(tmp_path, files=5, records=1_234, seed=1, jobs=1)
    records = _records(tmp_path)
    assert len(records) == stats.files == 5
    assert sum(len(r) for r in records.values()) == stats.records == 1_234
    for key in records:
        assert KEY.fullmatch(key), key
    manifest = generate.read_manifest(tmp_path)
    assert manifest is not None
    assert sorted(manifest["paths"]) == sorted(records)
    assert manifest["raw_bytes"] == stats.raw_bytes


def test_files_hold_cloudtrail_records_of_their_account_and_region(tmp_path: Path) -> None:
    generate.generate(tmp_path, files=4, records=2_000, seed=5, jobs=1)
    event_ids = []
    for key, records in _records(tmp_path).items():
        match = KEY.fullmatch(key)
        assert match
        times = [r["eventTime"] for r in records]
        assert all(ISO_SECOND.fullmatch(t) for t in times)
        assert times == sorted(times), "eventTime increases through a file"
        for record in records:
            assert record["recipientAccountId"] == match["account"]
            assert record["awsRegion"] == match["region"]
            assert record["eventVersion"].startswith("1.")
            assert record["eventSource"].endswith(".amazonaws.com")
            assert {"eventName", "userIdentity", "eventType"} <= record.keys()
            event_ids.append(record["eventID"])
    assert len(event_ids) == len(set(event_ids)) == 2_000


def test_generating_again_replaces_the_bundle_but_never_foreign_files(tmp_path: Path) -> None:
    generate.generate(tmp_path, files=3, records=300, seed=1, jobs=1)
    generate.generate(tmp_path, files=2, records=300, seed=2, jobs=1)
    assert len(_records(tmp_path)) == 2

    foreign = tmp_path / "foreign"
    (foreign / "AWSLogs").mkdir(parents=True)
    with pytest.raises(FileExistsError):
        generate.generate(foreign, files=2, records=300, seed=1, jobs=1)


def test_mix_looks_like_a_production_trail(mixed_bundle: dict[str, list[dict[str, Any]]]) -> None:
    records = [r for recs in mixed_bundle.values() for r in recs]
    identity = Counter(r["userIdentity"].get("type") for r in records)
    errors = Counter(r.get("errorCode") for r in records)
    names = Counter(r["eventName"] for r in records)

    assert {"AssumedRole", "IAMUser", "AWSService", "FederatedUser", "Root"} <= identity.keys()
    assert identity["AssumedRole"] > len(records) / 2
    assert {"AccessDenied", "Client.UnauthorizedOperation", "ThrottlingException"} <= errors.keys()
    assert 0.005 < 1 - errors[None] / len(records) < 0.05
    assert names["CreateUser"] > 0 and names["CreateAccessKey"] > 0
    # ~0.1% over the default bundle; a small one swings with how many files land in us-east-1.
    assert (names["CreateUser"] + names["CreateAccessKey"]) / len(records) < 0.006
    read_only = sum(1 for r in records if r.get("readOnly"))
    assert read_only / len(records) > 0.85
    assert len({r["eventSource"] for r in records}) >= 15


def test_record_sizes_average_under_two_kb_with_a_long_tail(
    mixed_bundle: dict[str, list[dict[str, Any]]],
) -> None:
    sizes = [len(orjson.dumps(r)) for recs in mixed_bundle.values() for r in recs]
    assert 1_400 < sum(sizes) / len(sizes) < 2_100
    assert max(sizes) > 10_000


def _rules(name: str) -> list[dict[str, Any]]:
    with RULE_SETS[name].open("rb") as fh:
        return tomllib.load(fh)["rule"]


@pytest.mark.parametrize("rule_set", sorted(RULE_SETS))
def test_every_rule_compiles_with_libjq_and_sends_to_the_stdout_destination(
    rule_set: str,
) -> None:
    with RULE_SETS[rule_set].open("rb") as fh:
        config = tomllib.load(fh)
    assert config["destination"] == [{"id": "Discard", "type": "stdout"}]
    for rule in config["rule"]:
        jq.compile(rule["jq_match"])
        assert rule["destinations"] == ["Discard"]
        assert rule["description"]


def test_fifty_pack_has_fifty_distinct_rules_starting_with_the_readme_three() -> None:
    rules = _rules("50")
    assert len(rules) == 50
    assert len({r["name"] for r in rules}) == 50
    fields = ("name", "jq_match", "description")
    assert [{k: r[k] for k in fields} for r in rules[:3]] == README_RULES
    assert [{k: r[k] for k in fields} for r in _rules("3")] == README_RULES


def test_combined_jq_program_keeps_each_rules_first_output_semantics() -> None:
    rules = [
        'select(.eventName == "CreateUser")',  # the record: a match
        ".missing",  # null: no match
        '.eventName == "Nope"',  # false: no match
        "empty",  # no output: no match
        'error("boom")',  # an error: no match, and the next rules still run
        '"first", null',  # only the first output counts
        'null, "second"',  # ... even when it is null
    ]
    program = jq.compile(jq_program(rules))
    document = {"Records": [{"eventName": "CreateUser", "eventID": "e1"}]}
    assert program.input_value(document).all() == [[0, "e1"], [5, "e1"]]
