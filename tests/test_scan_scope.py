"""What a replay needs from `tattletail scan`: `--since`/`--until` on eventTime (and, under an
s3:// prefix, on the date in each key), `--rule NAME`, `-` for standard input, and `-v` after
the subcommand. Expected alerts come from a reference: every record, its eventTime parsed
with datetime, the rules run by libjq."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jq
import orjson
import pytest

from tests.support import CLOUDTRAIL, REPO, SEED_LOG, Moto, gzipped, run_cli

pytestmark = pytest.mark.usefixtures("cli_environment")

INVICTUS = sorted((CLOUDTRAIL / "invictus").glob("*.json"))
RULES = """
[[rule]]
name = "Every event"
jq_match = '.eventName'
description = "all"
destinations = ["Out"]

[[rule]]
name = "Console login"
jq_match = 'select(.eventName == "ConsoleLogin")'
description = "login"
destinations = ["Out"]

[[rule]]
name = "Tuning"
jq_match = 'select(.eventSource == "iam.amazonaws.com") | .eventName'
description = "not yet on"
destinations = ["Out"]
enabled = false

[[destination]]
id = "Out"
type = "stdout"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "tattletail.toml"
    path.write_text(RULES)
    return path


def alerts_of(out: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in out.splitlines() if line]


def records(paths: list[Path]) -> list[dict[str, Any]]:
    found = []
    for path in paths:
        document = orjson.loads(path.read_bytes())
        found.extend(document["Records"] if isinstance(document, dict) else document)
    return found


def in_range(record: dict[str, Any], since: datetime, until: datetime) -> bool:
    moment = datetime.fromisoformat(record["eventTime"]).astimezone(UTC).replace(microsecond=0)
    return since <= moment <= until


def test_since_and_until_keep_the_records_whose_event_time_is_in_range(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    since, until = "2023-07-10T12:10:00Z", "2023-07-10T12:40:59Z"
    everything = records(INVICTUS)
    low, high = (datetime.fromisoformat(t) for t in (since, until))
    wanted = sorted(r["eventID"] for r in everything if in_range(r, low, high))

    code = run_cli(
        ["scan", "--dry-run", "--rule", "Every event", "--config", str(config), "--since", since]
        + ["--until", until, *map(str, INVICTUS)]
    )
    captured = capsys.readouterr()

    assert code == 0, captured.err
    got = sorted(a["record"]["eventID"] for a in alerts_of(captured.out))
    assert got == wanted
    assert 0 < len(wanted) < len(everything)
    assert f"{len(everything) - len(wanted)} records outside --since/--until" in captured.err


def test_a_date_until_covers_its_whole_day_and_a_date_since_its_first_second(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    times = [
        "2024-02-28T23:59:59Z",
        "2024-02-29T00:00:00Z",
        "2024-02-29T23:59:59Z",
        "2024-03-01T00:00:00Z",
    ]
    log = tmp_path / "leap.json"
    log.write_text(json.dumps([{"eventID": t, "eventName": "X", "eventTime": t} for t in times]))

    code = run_cli(
        ["scan", "--dry-run", "--config", str(config), "--rule", "Every event"]
        + ["--since", "2024-02-29", "--until", "2024-02-29", str(log)]
    )

    assert code == 0
    got = [a["record"]["eventID"] for a in alerts_of(capsys.readouterr().out)]
    assert sorted(got) == ["2024-02-29T00:00:00Z", "2024-02-29T23:59:59Z"]


def test_rule_runs_only_the_named_rules_even_a_disabled_one(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_cli(
        [
            "scan",
            "--dry-run",
            "--config",
            str(config),
            "--rule",
            "Tuning",
            "--rule",
            "Console login",
        ]
        + list(map(str, INVICTUS))
    )
    captured = capsys.readouterr()

    assert code == 0, captured.err
    names = {a["name"] for a in alerts_of(captured.out)}
    assert names == {"Tuning", "Console login"}
    program = jq.compile('select(.eventSource == "iam.amazonaws.com") | .eventName')
    tuning = [a for a in alerts_of(captured.out) if a["name"] == "Tuning"]
    assert len(tuning) == sum(
        1 for r in records(INVICTUS) if program.input_value(r).all() not in ([], [None])
    )


def test_an_unknown_rule_name_exits_2_and_suggests_the_closest(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_cli(
        ["scan", "--dry-run", "--config", str(config), "--rule", "Console logon", str(SEED_LOG)]
    )
    err = capsys.readouterr().err

    assert code == 2
    assert "did you mean 'Console login'?" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("compress", [False, True])
def test_dash_reads_one_log_file_from_standard_input(config: Path, compress: bool) -> None:
    data = SEED_LOG.read_bytes()
    completed = subprocess.run(
        [sys.executable, "-m", "tattletail", "scan", "--dry-run", "--config", str(config)]
        + ["--rule", "Every event", "-"],
        input=gzipped(data) if compress else data,
        capture_output=True,
        env={**os.environ, "TATTLETAIL_WORKERS": "1"},
        cwd=REPO,
        timeout=120,
    )

    assert completed.returncode == 0, completed.stderr
    alerts = alerts_of(completed.stdout.decode())
    assert [a["source"] for a in alerts] == ["-"] * 3
    assert sorted(a["record"]["eventID"] for a in alerts) == sorted(
        r["eventID"] for r in records([SEED_LOG])
    )


def test_dash_twice_is_a_usage_error(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["scan", "--dry-run", "--config", str(config), "-", "-"]) == 2
    assert "once" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_is_accepted_before_or_after_the_subcommand(
    config: Path, where: str, capfd: pytest.CaptureFixture[str]
) -> None:
    argv = ["scan", "--dry-run", "--config", str(config), str(SEED_LOG)]
    code = run_cli(["-v", *argv] if where == "before" else [argv[0], "-v", *argv[1:]])
    err = capfd.readouterr().err

    assert code == 0
    # -v: one JSON log line per object processed.
    assert any('"event":"object_processed"' in line for line in err.splitlines())


def test_without_v_no_object_is_logged(config: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["scan", "--dry-run", "--config", str(config), str(SEED_LOG)]) == 0
    assert "object_processed" not in capfd.readouterr().err


def test_an_s3_prefix_with_a_range_reads_only_files_dated_in_it(
    moto: Moto, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same selection as `backfill`: the date in each key, every account and region."""
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="trail")
    body = SEED_LOG.read_bytes()
    seed_day = records([SEED_LOG])[0]["eventTime"][:10].replace("-", "/")
    keys = {
        f"AWSLogs/o-a1b2c3d4e5/111111111111/CloudTrail/{region}/{day}/f.json.gz"
        for region in ("us-east-1", "eu-west-1")
        for day in ("2021/07/09", seed_day, "2021/07/11")
    }
    for key in keys:
        s3.put_object(Bucket="trail", Key=key, Body=gzipped(body))

    both = run_cli(
        ["scan", "--dry-run", "--config", str(config), "--rule", "Every event", "s3://trail/"]
        + ["--since", seed_day.replace("/", "-"), "--until", seed_day.replace("/", "-")]
    )
    out_both = capsys.readouterr()
    one = run_cli(
        ["scan", "--dry-run", "--config", str(config), "--rule", "Every event", "s3://trail/"]
        + ["--until", seed_day.replace("/", "-")]
    )
    out_one = capsys.readouterr()

    assert both == one == 0
    sources = {a["source"] for a in alerts_of(out_both.out)}
    assert sources == {f"s3://trail/{k}" for k in keys if seed_day in k}
    assert "2 objects" in out_both.err
    # Only --until: no date-folder listing, but keys dated after it are still left out.
    assert {a["source"] for a in alerts_of(out_one.out)} == {
        f"s3://trail/{k}" for k in keys if "2021/07/11" not in k
    }


def test_an_s3_prefix_of_copied_files_is_listed_and_filtered_by_eventtime(
    moto: Moto, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No AWSLogs/ layout under the prefix: every log file is read, its records by eventTime."""
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="exports")
    s3.put_object(Bucket="exports", Key="copies/seed.json.gz", Body=gzipped(SEED_LOG.read_bytes()))
    day = records([SEED_LOG])[0]["eventTime"][:10]

    inside = run_cli(
        ["scan", "--dry-run", "--config", str(config), "--rule", "Every event", "s3://exports/"]
        + ["--since", day, "--until", day]
    )
    out_inside = capsys.readouterr().out
    outside = run_cli(
        ["scan", "--dry-run", "--config", str(config), "--rule", "Every event", "s3://exports/"]
        + ["--since", "2030-01-01", "--until", "2030-01-02"]
    )
    out_outside = capsys.readouterr().out

    assert inside == outside == 0
    assert len(alerts_of(out_inside)) == 3 and alerts_of(out_outside) == []


# -- the scope with i12's output formats ------------------------------------------------------


def organisation_trail_copy(root: Path) -> tuple[Path, list[dict[str, Any]]]:
    """The seed log's records under an organisation trail's key layout, a minute apart, each
    with its own eventID and without the fields that say where they happened: only the key
    tells (account 111111111111, eu-west-1)."""
    folder = root / "AWSLogs/o-a1b2c3d4e5/111111111111/CloudTrail/eu-west-1/2021/07/10"
    folder.mkdir(parents=True)
    placed = [
        {
            **{k: v for k, v in record.items() if k not in ("recipientAccountId", "awsRegion")},
            "eventID": f"event-{n}",
            "eventTime": f"2021-07-10T16:4{n}:00Z",
        }
        for n, record in enumerate(records([SEED_LOG]))
    ]
    log = folder / "111111111111_CloudTrail_eu-west-1_20210710T1645Z_seed.json.gz"
    log.write_bytes(gzipped(orjson.dumps({"Records": placed})))
    return root / "AWSLogs", placed


def test_text_of_a_scoped_scan_is_one_line_per_alert_placed_by_the_trail_key(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trail, placed = organisation_trail_copy(tmp_path)
    times = sorted(record["eventTime"] for record in placed)
    scope = ["--since", times[1], "--until", times[-1], "--rule", "Every event"]

    text = run_cli(
        ["scan", "--dry-run", "--format", "text", "--config", str(config), *scope, str(trail)]
    )
    lines = capsys.readouterr().out.splitlines()
    as_json = run_cli(
        ["scan", "--dry-run", "--format", "json", "--config", str(config), *scope, str(trail)]
    )
    alerts = alerts_of(capsys.readouterr().out)

    assert text == as_json == 0
    wanted = sorted(r["eventID"] for r in placed if times[1] <= r["eventTime"] <= times[-1])
    assert len(wanted) == len(placed) - 1
    assert sorted(a["record"]["eventID"] for a in alerts) == wanted
    assert {(a["account"], a["region"]) for a in alerts} == {("111111111111", "eu-west-1")}
    assert len(lines) == len(wanted)
    assert all(" Every event - " in line for line in lines)
    assert all(line.endswith("  in 111111111111/eu-west-1  -> Out") for line in lines)


def test_summary_of_a_scoped_scan_counts_what_the_range_left_out(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trail, placed = organisation_trail_copy(tmp_path)
    last = max(record["eventTime"] for record in placed)
    scope = ["--since", last, "--rule", "Every event", str(trail)]

    text = run_cli(["scan", "--summary", "--all", "--config", str(config), *scope])
    report = capsys.readouterr().out
    as_json = run_cli(["scan", "--summary", "--format", "json", "--config", str(config), *scope])
    document = orjson.loads(capsys.readouterr().out)

    assert text == as_json == 0
    inside = sum(1 for record in placed if record["eventTime"] >= last)
    outside = len(placed) - inside
    assert f"{inside} record" in report and f"from {last} to {last}" in report
    assert f"{outside} records outside --since/--until left out" in report
    # Only the rule named is enabled: the others are not rows, even with --all.
    assert "Console login" not in report and "Tuning" not in report
    assert document["records"] == inside and document["records_out_of_range"] == outside
    assert [rule["name"] for rule in document["rules"]] == ["Every event"]
    assert document["rules"][0]["alerts"] == inside
