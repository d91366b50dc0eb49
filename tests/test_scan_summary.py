"""`tattletail scan --summary` (noise per rule over a replay) and the progress line."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from tattletail.cli import main
from tattletail.progress import Progress, render


@pytest.fixture(autouse=True)
def _one_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TATTLETAIL_WORKERS", "1")
    for name in ("TATTLETAIL_CONFIG", "S3_CONFIG_BUCKET", "S3_CONFIG_PATH", "TATTLETAIL_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)


def record(n: int, event: str, arn: str | None, agent: str = "aws-cli") -> dict[str, Any]:
    identity = {"type": "IAMUser", **({"arn": arn} if arn else {})}
    return {"eventID": f"e{n}", "eventName": event, "userIdentity": identity, "userAgent": agent}


ALICE, BOB = "arn:aws:iam::1:user/alice", "arn:aws:iam::1:user/bob"
RECORDS = [
    record(0, "CreateUser", ALICE),
    record(1, "CreateUser", ALICE),
    record(2, "CreateUser", BOB),
    record(3, "CreateUser", BOB, agent="Terraform"),
    record(4, "CreateUser", None),
    record(5, "DeleteUser", ALICE),
    record(6, "PutObject", ALICE),
    record(7, "PutObject", ALICE),
]

# An SNS topic that does not exist: were anything sent, the scan would fail and exit 1.
CONFIG = """
[[rule]]
name = "Deletes"
severity = "high"
jq_match = 'select(.eventName == "DeleteUser")'
destinations = ["SNS"]

[[rule]]
name = "Creates"
severity = "low"
jq_match = 'select(.eventName == "CreateUser")'
suppress = '.userAgent == "Terraform"'
destinations = ["SNS"]

[[rule]]
name = "Errors on objects"
jq_match = 'select(.eventName == "PutObject") | .userAgent | test(1)'
destinations = ["SNS"]

[[rule]]
name = "Never"
jq_match = 'select(.eventName == "Nothing")'
destinations = ["SNS"]

[[rule]]
name = "Off"
enabled = false
jq_match = '.'
destinations = ["SNS"]

[[destination]]
id = "SNS"
type = "sns"
sns_arn = "arn:aws:sns:us-east-1:123456789012:does-not-exist"
"""


@pytest.fixture
def scanned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    config_file = tmp_path / "c.toml"
    config_file.write_text(CONFIG)
    log = tmp_path / "log.json"
    log.write_bytes(orjson.dumps(RECORDS))
    code = main(["scan", "--summary", "--config", str(config_file), str(log)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table_rows(out: str) -> dict[str, list[str]]:
    lines = out.strip().splitlines()
    header = ["rule", "severity", "matches", "suppressed", "alerts", "errors", "principals"]
    assert lines[0].split() == [*header, "%", "records"]
    rows = {}
    for line in lines[1:-1]:
        name, rest = line[: lines[0].index("severity")].rstrip(), line.split()[-7:]
        rows[name] = rest
    return rows


def test_summary_counts_matches_suppressed_errors_and_distinct_principals_per_rule(
    scanned: tuple[int, str, str],
) -> None:
    _, out, _ = scanned
    rows = table_rows(out)

    # severity, matches, suppressed, alerts, errors, principals, % of records
    assert rows["Creates"] == ["low", "5", "1", "4", "0", "2", "62.50"]
    assert rows["Deletes"] == ["high", "1", "0", "1", "0", "1", "12.50"]
    assert rows["Errors on objects"] == ["medium", "0", "0", "0", "2", "0", "0.00"]
    assert rows["Never"] == ["medium", "0", "0", "0", "0", "0", "0.00"]


def test_summary_lists_enabled_rules_sorted_by_matches(scanned: tuple[int, str, str]) -> None:
    _, out, _ = scanned
    assert list(table_rows(out)) == ["Creates", "Deletes", "Errors on objects", "Never"]
    assert out.strip().splitlines()[-1] == "8 records in 1 objects; 4 rules, 2 matched"


def test_summary_prints_and_sends_no_alert(scanned: tuple[int, str, str]) -> None:
    code, out, err = scanned
    assert code == 0, err
    assert '"eventID"' not in out
    assert "0 alerts sent, 0 failed" in err.splitlines()[-1]


def test_summary_line_on_stderr_counts_the_suppressed(scanned: tuple[int, str, str]) -> None:
    _, _, err = scanned
    assert "5 matches, 1 suppressed" in err.splitlines()[-1]


# -- progress ---------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_line_shows_objects_done_of_total_and_records_per_second() -> None:
    assert render(3, 12, 24_000, 2.0) == (
        "[######..................] 3/12 objects  24,000 records  12,000 records/s"
    )
    assert render(0, 0, 0, 0.0).startswith("[" + "#" * 24 + "] 0/0 objects")


def test_progress_is_silent_when_stderr_is_not_a_terminal() -> None:
    stream = io.StringIO()
    clock = Clock()
    progress = Progress(10, stream=stream, clock=clock)
    clock.now += 60
    progress.update(5, 1000)
    progress.close()

    assert not progress.enabled
    assert stream.getvalue() == ""


def test_progress_redraws_in_place_on_a_terminal_after_a_moment_and_erases_itself() -> None:
    stream, clock = Terminal(), Clock()
    progress = Progress(4, stream=stream, clock=clock, delay=0.5)

    progress.update(0, 0)
    assert stream.getvalue() == ""  # a short scan never draws

    clock.now += 2
    progress.update(1, 500)
    clock.now += 2
    progress.update(2, 2_000)
    drawn = stream.getvalue()
    assert drawn == "\r" + render(1, 4, 500, 2.0) + "\r" + render(2, 4, 2_000, 4.0)

    progress.close()
    assert stream.getvalue().endswith("\r" + " " * len(render(2, 4, 2_000, 4.0)) + "\r")
