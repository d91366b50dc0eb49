"""`tattletail scan --summary` (noise per rule over a replay) and the progress line."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from tattletail.cli import main
from tattletail.progress import Progress, render

pytestmark = pytest.mark.usefixtures("cli_environment")


def record(
    n: int, event: str, arn: str | None, agent: str = "aws-cli", ip: str = "10.0.0.1"
) -> dict[str, Any]:
    identity = {"type": "IAMUser", **({"arn": arn} if arn else {})}
    return {
        "eventID": f"e{n}",
        "eventTime": f"2024-05-01T10:0{n}:00Z",
        "eventName": event,
        "userIdentity": identity,
        "userAgent": agent,
        "sourceIPAddress": ip,
    }


ALICE, BOB = "arn:aws:iam::1:user/alice", "arn:aws:iam::1:user/bob"
RECORDS = [
    record(0, "CreateUser", ALICE),
    record(1, "CreateUser", ALICE),
    record(2, "CreateUser", BOB),
    record(3, "CreateUser", BOB, agent="Terraform"),
    record(4, "CreateUser", None, ip="10.0.0.2"),
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


def scan(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *options: str,
    config: str = CONFIG,
    records: list[dict[str, Any]] = RECORDS,
) -> tuple[int, str, str]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    config_file = tmp_path / "c.toml"
    config_file.write_text(config)
    log = tmp_path / "log.json"
    log.write_bytes(orjson.dumps(records))
    code = main(["scan", "--summary", *options, "--config", str(config_file), str(log)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def scanned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    return scan(tmp_path, monkeypatch, capsys)


def table_rows(out: str) -> dict[str, list[str]]:
    """The table's rows by rule: matches, alerts, suppressed, errors, %, severity."""
    lines = out.splitlines()
    header = ["matches", "alerts", "suppressed", "errors", "%", "severity", "rule"]
    assert lines[0].split() == header
    rows = {}
    for line in lines[1:]:
        if not line.strip():
            break
        (*cells,) = line.split(maxsplit=6)
        rows[cells[6]] = cells[:6]
    return rows


def test_summary_counts_matches_alerts_suppressed_and_errors_per_rule(
    scanned: tuple[int, str, str],
) -> None:
    _, out, _ = scanned
    rows = table_rows(out)

    assert rows["Creates"] == ["5", "4", "1", "0", "62.50", "low"]
    assert rows["Deletes"] == ["1", "1", "0", "0", "12.50", "high"]
    assert rows["Errors on objects"] == ["0", "0", "0", "2", "0.00", "medium"]


def test_summary_hides_rules_without_matches_or_errors_unless_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = scan(tmp_path, monkeypatch, capsys)
    assert list(table_rows(out)) == ["Creates", "Deletes", "Errors on objects"]
    assert out.strip().splitlines()[-1] == (
        "4 enabled rules, 3 with matches or errors; 1 others not shown (--all shows them)"
    )
    _, out, _ = scan(tmp_path, monkeypatch, capsys, "--all")
    assert list(table_rows(out)) == ["Creates", "Deletes", "Errors on objects", "Never"]
    assert out.strip().splitlines()[-1] == ("4 enabled rules, 3 with matches or errors")


def test_summary_shows_top_principals_and_source_ips_of_the_noisiest_rules(
    scanned: tuple[int, str, str],
) -> None:
    _, out, _ = scanned
    block = out.split("Who and where", 1)[1].splitlines()
    start = block.index("Creates (4 alerts, 3 principals, 2 source IPs)")
    assert block[start + 1 : start + 6] == [
        f"  principal   2  {ALICE}",
        f"              1  {BOB}",
        "              1  IAMUser",  # no ARN: the identity's type
        "  source IP   3  10.0.0.1",
        "              1  10.0.0.2",
    ]
    assert "Deletes (1 alert, 1 principal, 1 source IP)" in block
    # Rules that only failed have no alerts to break down.
    assert not any(line.startswith("Errors on objects") for line in block)


def test_summary_shows_the_time_range_of_the_records(scanned: tuple[int, str, str]) -> None:
    _, out, _ = scanned
    assert out.strip().splitlines()[-2] == (
        "8 records in 1 object, from 2024-05-01T10:00:00Z to 2024-05-01T10:07:00Z"
    )


def test_summary_fits_100_columns_whatever_the_names_and_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    long_arn = "arn:aws:sts::123456789012:assumed-role/" + "R" * 150 + "/session\u202e"
    records = [record(n, "CreateUser", long_arn, ip="\x1b[2J" * 40) for n in range(3)]
    long_name = "Creates " + "very " * 40 + "long\\nname"  # \\n: TOML's escape for a newline
    config = CONFIG.replace('name = "Creates"', f'name = "{long_name}"')
    _, out, _ = scan(tmp_path, monkeypatch, capsys, "--all", config=config, records=records)
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert all(line.isprintable() for line in lines)
    assert any(line.rstrip().endswith("…") for line in lines)


def test_summary_as_json_has_every_count_and_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = scan(tmp_path, monkeypatch, capsys, "--format", "json")
    assert code == 0
    report = orjson.loads(out)
    assert (report["records"], report["objects"]) == (8, 1)
    assert report["first_event_time"] == "2024-05-01T10:00:00Z"
    creates = next(rule for rule in report["rules"] if rule["name"] == "Creates")
    assert (creates["alerts"], creates["suppressed"], creates["errors"]) == (4, 1, 0)
    assert creates["principals"][0] == {"value": ALICE, "alerts": 2}
    assert [rule["name"] for rule in report["rules"]] == ["Creates", "Deletes", "Errors on objects"]


def test_summary_prints_and_sends_no_alert(scanned: tuple[int, str, str]) -> None:
    code, out, err = scanned
    assert code == 0, err
    assert '"eventID"' not in out
    assert "dry run: nothing sent" in err.splitlines()[-1]


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


def test_summary_as_json_escapes_what_a_terminal_would_act_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    arn = "arn:aws:iam::1:user/\u202eevil\x9b2J"
    records = [record(n, "CreateUser", arn, ip="\x1b]0;title\x07") for n in range(2)]
    _, out, _ = scan(tmp_path, monkeypatch, capsys, "--format", "json", records=records)
    assert all(line.isprintable() for line in out.splitlines())
    creates = next(rule for rule in orjson.loads(out)["rules"] if rule["name"] == "Creates")
    assert creates["principals"] == [{"value": arn, "alerts": 2}]
    assert creates["source_ips"] == [{"value": "\x1b]0;title\x07", "alerts": 2}]
