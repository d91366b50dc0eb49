"""CloudWatch Embedded Metric Format: the lines a known run writes, parsed as CloudWatch would."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tattletail import lambda_handler, metrics
from tattletail.summary import RunSummary
from tests.lambda_support import BUCKET, SEED_KEY, LambdaContext, put_seed_log, s3_event
from tests.support import Moto, gzipped

CONFIG = """
[[rule]]
name = "Create User"
jq_match = 'select(.eventName == "CreateUser") | "username: \\(.responseElements.user.userName)"'
destinations = ["Out"]

[[rule]]
name = "Broken On Strings"
jq_match = '.eventName | test(1)'
destinations = ["Out"]

[[destination]]
id = "Out"
type = "stdout"
"""


def metric_values(document: dict[str, Any]) -> dict[str, Any]:
    """What CloudWatch extracts from one EMF document: metric name -> value, per dimension."""
    directive = document["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == metrics.NAMESPACE
    for dimension_set in directive["Dimensions"]:
        for dimension in dimension_set:
            assert isinstance(document[dimension], str)
    return {m["Name"]: document[m["Name"]] for m in directive["Metrics"]}


def emf_documents(stdout: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stdout.splitlines() if '"_aws"' in line]


@pytest.fixture
def bundled(moto: Moto, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Moto]:
    put_seed_log(moto)
    s3 = moto.client("s3")
    s3.put_object(Bucket=BUCKET, Key="AWSLogs/x/CloudTrail-Digest/digest.json.gz", Body=b"x")
    s3.put_object(Bucket=BUCKET, Key="AWSLogs/x/broken.json.gz", Body=gzipped(b"")[:-4])
    (tmp_path / "tattletail.toml").write_text(CONFIG)
    monkeypatch.setenv("TATTLETAIL_CONFIG", str(tmp_path / "tattletail.toml"))
    monkeypatch.setenv("TATTLETAIL_WORKERS", "1")
    monkeypatch.delenv("S3_CONFIG_BUCKET", raising=False)
    lambda_handler.shutdown()
    yield moto
    lambda_handler.shutdown()


def test_invocation_writes_emf_metrics_for_a_known_run(
    bundled: Moto, capfd: pytest.CaptureFixture[str]
) -> None:
    event = s3_event(
        BUCKET, SEED_KEY, "AWSLogs/x/CloudTrail-Digest/digest.json.gz", "AWSLogs/x/broken.json.gz"
    )
    capfd.readouterr()
    with pytest.raises(lambda_handler.ObjectsFailed):
        lambda_handler.handler(event, LambdaContext(function_name="tt-fn"))
    documents = emf_documents(capfd.readouterr().out)

    totals = [d for d in documents if set(d) - {"_aws"} >= {"FunctionName", "Records"}]
    assert len(totals) == 1 and totals[0]["FunctionName"] == "tt-fn"
    values = metric_values(totals[0])
    assert values["Objects"] == 1
    assert values["Records"] == 3
    assert values["Matches"] == 1
    assert values["RuleErrors"] == 3  # test(1) errors on each of the 3 records
    assert values["ObjectsSkipped"] == 1
    assert values["ObjectsFailed"] == 1
    assert values["AlertsSent"] == 1
    assert values["AlertsFailed"] == 0
    assert values["EvaluationSeconds"] > 0
    assert values["FileLagSeconds"] > 0  # the seed log's events are from 2021

    by_dimension = {
        (dim, d[dim]): metric_values(d)
        for d in documents
        for dim in ("Rule", "Destination", "Reason")
        if dim in d
    }
    assert by_dimension[("Rule", "Create User")] == {"Matches": 1}
    assert by_dimension[("Rule", "Broken On Strings")] == {"RuleErrors": 3}
    assert by_dimension[("Destination", "Out")] == {"AlertsSent": 1}
    assert by_dimension[("Reason", "digest")] == {"ObjectsSkipped": 1}
    assert by_dimension[("Reason", "corrupt_gzip")] == {"ObjectsFailed": 1}


def test_a_document_never_holds_more_than_100_metrics() -> None:
    summary = RunSummary()
    for n in range(250):
        summary.matches_by_rule[f"rule {n}"] = n + 1
    documents = metrics.documents(summary, "fn", timestamp_ms=0)
    assert all(len(d["_aws"]["CloudWatchMetrics"][0]["Metrics"]) <= 100 for d in documents)
    rules = {d["Rule"]: metric_values(d)["Matches"] for d in documents if "Rule" in d}
    assert rules == {f"rule {n}": n + 1 for n in range(250)}
