"""The `tattletail` command, in-process and as a real process: alerts, summary and exit codes.

Expected alerts are computed here with libjq directly (the `jq` package), from the config's
rules and the matching contract, never copied from a previous run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jq
import orjson
import pytest

from tattletail import config
from tests.support import CLOUDTRAIL, REPO, SEED_LOG, Moto, gzipped, run_cli

pytestmark = pytest.mark.usefixtures("cli_environment")

EXAMPLE_CONFIG = REPO / "config" / "tattletail.toml"
INVICTUS = sorted((CLOUDTRAIL / "invictus").glob("*.json"))
INVICTUS_TRAIL = (
    CLOUDTRAIL
    / "invictus"
    / "218007301253_CloudTrail_us-east-1_20230710T1205Z_SjF3IkuNXJkoHyar.json"
)

STRATUS_STOP = CLOUDTRAIL / "stratus-red-team" / "aws.defense-evasion.cloudtrail-stop.json"
WEBHOOK = "https://hooks.slack.com/services/T0SECRET/B0SECRET/s3cr3tw3bh00kt0k3n"
# Singular stems: "1 object" and "2 objects" both hold "object".
SUMMARY_WORDS = ("object", "record", "match", "rule error", "failed input")


def records_of(data: bytes) -> list[dict[str, Any]]:
    document = orjson.loads(data)
    return document["Records"] if isinstance(document, dict) else document


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def expected_alerts(files: dict[str, bytes]) -> dict[tuple[str, str, str], str]:
    """(source, eventID, rule name) -> match as canonical JSON, for every alert the example
    config's rules must give on these files (source -> plain JSON bytes)."""
    rules = config.load_file(EXAMPLE_CONFIG).rules
    programs = [(rule.name, jq.compile(rule.jq_match)) for rule in rules]
    alerts: dict[tuple[str, str, str], str] = {}
    for source, data in files.items():
        for record in records_of(data):
            for name, program in programs:
                outputs = iter(program.input_text(json.dumps(record)))
                try:
                    first = next(outputs)
                except (StopIteration, ValueError):
                    continue
                if first is None or first is False:
                    continue
                match = None if isinstance(first, dict) and first == record else first
                key = (source, record["eventID"], name)
                assert key not in alerts
                alerts[key] = canonical(match)
    return alerts


def printed_alerts(stdout: str, files: dict[str, bytes]) -> dict[tuple[str, str, str], str]:
    """The alerts on stdout, keyed like expected_alerts; each line is checked to be one alert
    carrying its source's record unchanged."""
    by_id = {
        (source, record["eventID"]): record
        for source, data in files.items()
        for record in records_of(data)
    }
    alerts: dict[tuple[str, str, str], str] = {}
    for line in stdout.splitlines():
        alert = orjson.loads(line)
        # The original's keys plus source; rule metadata (severity, ...) may come with them.
        assert {"name", "description", "record", "match", "source"} <= set(alert)
        key = (alert["source"], alert["record"]["eventID"], alert["name"])
        assert alert["record"] == by_id[key[:2]]
        assert key not in alerts
        alerts[key] = canonical(alert["match"])
    return alerts


def assert_summary_line(stderr: str) -> str:
    summary = stderr.strip().splitlines()[-1]
    assert summary.startswith("tattletail: ")
    assert all(word in summary for word in SUMMARY_WORDS)
    return summary


def assert_one_line_error(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("tattletail: ")
    return lines[0]


# -- scan --dry-run over local files --------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """A directory of log files in every local form: .json, .json.gz, nested, plus a file
    that is not a log (ignored when a directory is scanned)."""
    root = tmp_path / "logs"
    (root / "a" / "b").mkdir(parents=True)
    (root / "seed").mkdir()
    seed = root / "seed" / "1.json"
    shutil.copy(SEED_LOG, seed)
    invictus = root / "a" / "b" / (INVICTUS_TRAIL.name + ".gz")
    invictus.write_bytes(gzipped(INVICTUS_TRAIL.read_bytes()))
    stratus = root / "a" / STRATUS_STOP.name
    shutil.copy(STRATUS_STOP, stratus)
    (root / "a" / "README.txt").write_text("not a log file")
    files = {
        str(seed): SEED_LOG.read_bytes(),
        str(invictus): INVICTUS_TRAIL.read_bytes(),
        str(stratus): STRATUS_STOP.read_bytes(),
    }
    return root, files


def test_scan_dry_run_of_a_directory_prints_every_alert_of_every_log_file_in_it(
    tree: tuple[Path, dict[str, bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, files = tree
    code = run_cli(["scan", "--dry-run", "--config", str(EXAMPLE_CONFIG), str(root)])
    captured = capsys.readouterr()

    assert code == 0, captured.err
    want = expected_alerts(files)
    assert printed_alerts(captured.out, files) == want
    # The data exercises the config: all three files alert, and the added rule fires.
    assert {source for source, _, _ in want} == set(files)
    assert "CloudTrail Stopped Or Deleted" in {name for _, _, name in want}
    summary = assert_summary_line(captured.err)
    assert f"{len(want)} matches" in summary
    assert "3 objects" in summary
    assert "0 failed inputs" in summary


def test_scan_exits_1_naming_each_failed_input_while_good_files_still_alert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.json.gz"
    good.write_bytes(gzipped(SEED_LOG.read_bytes()))
    corrupt = tmp_path / "corrupt.json.gz"
    corrupt.write_bytes(gzipped(SEED_LOG.read_bytes())[:-40])
    missing = tmp_path / "missing.json"

    code = run_cli(
        [
            "scan",
            "--dry-run",
            "--config",
            str(EXAMPLE_CONFIG),
            str(good),
            str(missing),
            str(corrupt),
        ]
    )
    captured = capsys.readouterr()

    assert code == 1
    files = {str(good): SEED_LOG.read_bytes()}
    assert printed_alerts(captured.out, files) == expected_alerts(files)
    failed = [line for line in captured.err.splitlines() if line.startswith("tattletail: failed")]
    assert len(failed) == 2
    assert any(str(missing) in line for line in failed)
    assert any(str(corrupt) in line for line in failed)
    assert "2 failed inputs" in assert_summary_line(captured.err)
    assert "Traceback" not in captured.err


def test_scan_with_a_broken_config_exits_2_with_one_line_and_no_alerts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[[rule]]\nname = 'x'\njq_match =\n")

    code = run_cli(["scan", "--dry-run", "--config", str(broken), str(SEED_LOG)])
    captured = capsys.readouterr()

    assert code == 2
    assert captured.out == ""
    line = assert_one_line_error(captured.err)
    assert str(broken) in line
    assert "invalid TOML" in line


def test_scan_with_a_missing_config_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_cli(["scan", "--dry-run", "--config", str(tmp_path / "nope.toml"), str(SEED_LOG)])
    captured = capsys.readouterr()

    assert code == 2
    assert "nope.toml" in assert_one_line_error(captured.err)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["scan"],
        ["scan", "--dry-run", "--no-such-option", "x.json"],
        ["scan", "--dry-run", "--config", str(EXAMPLE_CONFIG), "s3://"],
        ["scan", "--dry-run", "--config", str(EXAMPLE_CONFIG), "s3:///key.json.gz"],
    ],
    ids=["no-command", "unknown-command", "no-paths", "unknown-option", "no-bucket", "no-bucket2"],
)
def test_usage_error_exits_2_with_a_one_line_message(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_cli(argv)
    captured = capsys.readouterr()

    assert code == 2
    assert captured.out == ""
    assert_one_line_error(captured.err)


def test_bad_environment_exits_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TATTLETAIL_WORKERS", "none")
    code = run_cli(["validate", "--config", str(EXAMPLE_CONFIG)])
    captured = capsys.readouterr()

    assert code == 2
    assert "TATTLETAIL_WORKERS" in assert_one_line_error(captured.err)


# -- validate -------------------------------------------------------------------------------


def test_validate_exits_0_on_the_example_config(capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli(["validate", "--config", str(EXAMPLE_CONFIG)])
    captured = capsys.readouterr()

    assert code == 0
    loaded = config.load_file(EXAMPLE_CONFIG)
    assert f"{len(loaded.rules)} rules" in captured.out
    assert f"{len(loaded.destinations)} destinations" in captured.out


def test_validate_takes_the_config_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TATTLETAIL_CONFIG", str(EXAMPLE_CONFIG))
    assert run_cli(["validate"]) == 0
    assert str(EXAMPLE_CONFIG) in capsys.readouterr().out


def test_validate_exits_2_listing_every_problem_without_the_webhook_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        f"""
[[rule]]
name = "Typo"
jq_match = 'select(.eventName == "CreateUser")'
destination = ["Slack"]

[[rule]]
name = "Broken"
jq_match = 'select(.eventName =='
destinations = ["Slack", "Pager"]

[[destination]]
id = "Slack"
type = "slack_webhook"
webhook_url = "{WEBHOOK}"
channel = "#alerts"
"""
    )
    code = run_cli(["validate", "--config", str(bad)])
    captured = capsys.readouterr()

    assert code == 2
    assert "Traceback" not in captured.err
    for expected in [
        "rule #0 'Typo': unknown key 'destination'",
        "rule #1 'Broken': jq_match does not compile",
        "rule #1 'Broken': unknown destination 'Pager'",
        "destination #0 'Slack': unknown key 'channel'",
    ]:
        assert expected in captured.err
    assert "s3cr3t" not in captured.err + captured.out


# -- a real process -------------------------------------------------------------------------


def test_module_run_as_a_process_prints_the_seed_files_create_user_alert() -> None:
    env = {**os.environ, "TATTLETAIL_WORKERS": "1"}
    completed = subprocess.run(
        [sys.executable, "-m", "tattletail", "scan", "--dry-run", "--config", str(EXAMPLE_CONFIG)]
        + [str(SEED_LOG)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )

    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr
    files = {str(SEED_LOG): SEED_LOG.read_bytes()}
    alerts = printed_alerts(completed.stdout, files)
    assert alerts == expected_alerts(files)
    create_user = [key for key in alerts if key[2] == "Create User"]
    assert len(create_user) == 1
    assert alerts[create_user[0]] == canonical("username: user1")
    assert "3 records" in assert_summary_line(completed.stderr)


# -- s3://bucket/prefix/ against the moto server --------------------------------------------


def test_scan_of_an_s3_prefix_evaluates_every_object_under_it(
    moto: Moto, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="trail")
    prefix = "AWSLogs/218007301253/CloudTrail/us-east-1/2023/07/10/"
    files: dict[str, bytes] = {}
    for path in [*INVICTUS[2:5], SEED_LOG]:
        key = prefix + path.name + ".gz"
        s3.put_object(Bucket="trail", Key=key, Body=gzipped(path.read_bytes()))
        files[f"s3://trail/{key}"] = path.read_bytes()
    # Outside the prefix: never read. A digest under it: listed, skipped, not a failure.
    s3.put_object(Bucket="trail", Key="elsewhere/x.json.gz", Body=b"not gzip, would fail")
    s3.put_object(
        Bucket="trail",
        Key="AWSLogs/218007301253/CloudTrail-Digest/us-east-1/2023/07/10/d.json.gz",
        Body=gzipped(b'{"digestStartTime": "2023-07-10T11:00:00Z"}'),
    )

    code = run_cli(["scan", "--dry-run", "--config", str(EXAMPLE_CONFIG), "s3://trail/AWSLogs/"])
    captured = capsys.readouterr()

    assert code == 0, captured.err
    want = expected_alerts(files)
    assert want
    assert printed_alerts(captured.out, files) == want
    summary = assert_summary_line(captured.err)
    assert f"{len(files)} objects" in summary
    assert "1 skipped" in summary


def test_scan_of_a_missing_bucket_is_a_failed_input_not_a_crash(
    moto: Moto, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_cli(["scan", "--dry-run", "--config", str(EXAMPLE_CONFIG), "s3://no-such-bucket/"])
    captured = capsys.readouterr()

    assert code == 1
    assert "Traceback" not in captured.err
    assert any(
        line.startswith("tattletail: failed: s3://no-such-bucket/")
        for line in captured.err.splitlines()
    )


# -- output formats -------------------------------------------------------------------------

SGR = re.compile(r"\x1b\[[0-9;]*m")


def expected_destinations() -> dict[str, list[str]]:
    return {rule.name: list(rule.destinations) for rule in config.load_file(EXAMPLE_CONFIG).rules}


def test_dry_run_json_names_the_destinations_each_alert_would_have_gone_to(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = run_cli(["scan", "--dry-run", "--config", str(EXAMPLE_CONFIG), str(SEED_LOG)])
    captured = capsys.readouterr()

    assert code == 0
    routes = expected_destinations()
    lines = [orjson.loads(line) for line in captured.out.splitlines()]
    assert lines and all(line["destinations"] == routes[line["name"]] for line in lines)
    summary = assert_summary_line(captured.err)
    assert "dry run: nothing sent" in summary and "alerts sent" not in summary
    assert "1 object, 3 records" in summary


def test_text_format_prints_one_plain_line_per_alert_when_piped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["scan", "--dry-run", "--format", "text", "--config", str(EXAMPLE_CONFIG)]
    code = run_cli([*argv, str(INVICTUS_TRAIL)])
    lines = capsys.readouterr().out.splitlines()

    assert code == 0
    files = {str(INVICTUS_TRAIL): INVICTUS_TRAIL.read_bytes()}
    assert len(lines) == len(expected_alerts(files)) > 0
    routes = expected_destinations()
    for line in lines:
        assert len(line) <= 200 and line.isprintable() and "\x1b" not in line
        time, severity, rest = line.split(" ", 2)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", time) and severity == "MEDIUM"
        rule = next(name for name in routes if rest.lstrip().startswith(name))
        assert line.endswith("  -> " + ", ".join(routes[rule]))
        assert re.search(r"  in \d{12}/us-east-1  -> ", line)


def run_on_a_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """The command as a process whose stdout is a pseudo-terminal, as a person runs it."""
    import pty

    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "tattletail", *argv],
        stdout=terminal,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TATTLETAIL_WORKERS": "1", "TERM": "xterm", **env},
        cwd=REPO,
    )
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the other end closed: the process has finished writing
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    code = process.wait(timeout=120)
    # The terminal turns each \n into \r\n.
    return code, b"".join(chunks).decode().replace("\r\n", "\n")


@pytest.mark.parametrize("no_color", [False, True], ids=["colour", "NO_COLOR"])
def test_on_a_terminal_dry_run_prints_text_one_line_per_alert(no_color: bool) -> None:
    # An empty NO_COLOR counts as unset (no-color.org).
    env = {"NO_COLOR": "1" if no_color else ""}
    argv = ["scan", "--dry-run", "--config", str(EXAMPLE_CONFIG), str(SEED_LOG)]
    code, out = run_on_a_terminal(argv, env)

    assert code == 0, out
    lines = out.splitlines()
    files = {str(SEED_LOG): SEED_LOG.read_bytes()}
    assert len(lines) == len(expected_alerts(files))
    assert not any(line.startswith("{") for line in lines)
    assert ("\x1b[" in out) is not no_color
    for line in lines:
        plain = SGR.sub("", line)
        assert len(plain) <= 200 and plain.isprintable()
    assert any("Create User - username: user1" in SGR.sub("", line) for line in lines)


def test_format_and_all_without_what_they_apply_to_are_usage_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = ["scan", "--config", str(EXAMPLE_CONFIG)]
    assert run_cli([*base, "--format", "text", str(SEED_LOG)]) == 2
    assert "--format applies to --dry-run" in assert_one_line_error(capsys.readouterr().err)
    assert run_cli([*base, "--dry-run", "--all", str(SEED_LOG)]) == 2
    assert "--all applies to --summary" in assert_one_line_error(capsys.readouterr().err)


def test_scan_without_a_config_points_at_the_config_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_cli(["scan", "--dry-run", str(SEED_LOG)]) == 2
    line = assert_one_line_error(capsys.readouterr().err)
    assert "no config: tattletail.toml does not exist" in line and "--config PATH" in line


# -- help -----------------------------------------------------------------------------------


def help_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert run_cli([*argv, "--help"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", ["scan", "validate", "test"])
def test_help_of_each_command_has_examples_exit_codes_and_the_real_config_default(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = help_of([command], capsys)

    assert "examples:\n  tattletail " + command in text
    codes = text.split("exit codes:\n", 1)[1]
    assert [line.split()[0] for line in codes.splitlines() if line[:3].strip()] == ["0", "1", "2"]
    flat = " ".join(text.split())
    assert "$TATTLETAIL_CONFIG when set, else ./tattletail.toml" in flat
    assert ("S3_CONFIG_BUCKET/S3_CONFIG_PATH when both are set" in flat) is (command == "scan")


def test_help_of_backfill_has_examples_and_its_exit_codes_with_the_interrupted_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = help_of(["backfill"], capsys)

    assert "examples:\n  tattletail backfill s3://" in text
    codes = text.split("exit codes:\n", 1)[1]
    assert [line.split()[0] for line in codes.splitlines() if line[:3].strip()] == [
        "0",
        "1",
        "2",
        "130",
    ]


def test_scan_help_documents_the_scope_flags_and_standard_input(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = help_of(["scan"], capsys)
    flat = " ".join(text.split())
    for flag in ("--since DATE", "--until DATE", "--rule NAME"):
        assert flag in flat
    examples = text.split("examples:\n", 1)[1].split("\n\n", 1)[0]
    assert "--since" in examples and "--rule" in examples and "scan --dry-run -" in examples


@pytest.mark.parametrize(
    "argv",
    [
        ["scan", "x.json"],
        ["backfill", "s3://b/", "--since", "2024-01-01", "--until", "2024-01-02", "--queue", "q"],
        ["validate"],
        ["test"],
        ["sigma", "check", "rules/"],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_verbose_is_accepted_before_and_after_every_subcommand(argv: list[str]) -> None:
    from tattletail.cli import build_parser

    parse = build_parser().parse_args
    where = 2 if argv[0] == "sigma" else 1
    assert parse(argv).verbose is False
    assert parse(["-v", *argv]).verbose is True
    assert parse([*argv[:where], "-v", *argv[where:]]).verbose is True


def test_every_example_in_the_help_is_a_command_the_parser_accepts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import shlex

    from tattletail.cli import build_parser

    examples = []
    for argv in ([], ["scan"], ["backfill"], ["validate"], ["test"], ["sigma"]):
        text = help_of(argv, capsys)
        section = text.split("examples:\n", 1)[1].split("\n\n", 1)[0]
        examples.extend(line.strip() for line in section.splitlines())
    assert len(examples) >= 12
    for example in examples:
        words = shlex.split(example.split(" > ", 1)[0])
        words = words[next(n for n, w in enumerate(words) if w == "tattletail") + 1 :]
        build_parser().parse_args(words)  # a usage error would exit 2 here


# -- hostile records (issue 10) -------------------------------------------------------------


def _scan_lines(argv: list[str], capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    code = run_cli(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err
    return [json.loads(line) for line in captured.out.splitlines()]


def test_scan_alerts_on_a_record_nested_300_deep_and_on_every_other_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The reproduction: orjson reads 1,024 levels but writes 255.
    deep = json.loads("[" * 300 + "]" * 300)
    records = [
        {"eventVersion": "1.08", "eventName": "CreateUser", "eventID": "x", "deep": deep},
        {"eventVersion": "1.08", "eventName": "CreateUser", "eventID": "y"},
    ]
    path = tmp_path / "n300.json"
    path.write_text(json.dumps({"Records": records}))
    rules = tmp_path / "rules.toml"
    rules.write_text(
        EXAMPLE_CONFIG.read_text()
        + """
[[rule]]
name = "Paths"
jq_match = 'select(.eventName == "CreateUser") | [paths] | length'
description = "libjq reads the record's text"
destinations = ["Slack Warnings"]
"""
    )

    alerts = _scan_lines(["scan", "--dry-run", "--config", str(rules), str(path)], capsys)

    got = {(alert["name"], alert["record"]["eventID"]): alert for alert in alerts}
    assert set(got) == {
        (name, event) for name in ("Create User", "Modifications", "Paths") for event in ("x", "y")
    }
    assert got["Create User", "x"]["record"]["deep"] == deep
    paths = jq.compile("[paths] | length")
    for record in records:
        expected = paths.input_text(json.dumps(record)).first()
        assert got["Paths", record["eventID"]]["match"] == expected


def test_scan_writes_integers_beyond_64_bits_in_a_rule_output_as_libjq_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = {"eventVersion": "1.08", "eventName": "CreateUser", "eventID": "a", "n": 1e20}
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"Records": [record]}))
    programs = {
        "Literal": 'select(.eventName == "CreateUser") | {x: 100000000000000000000}',
        "Rewritten": 'select(.eventName == "CreateUser") | .n |= . + 1 | {n}',
        "Huge": 'select(.eventName == "CreateUser") | [1e300, -pow(2; 70)]',
    }
    rules = tmp_path / "rules.toml"
    rules.write_text(
        "".join(
            f"[[rule]]\nname = \"{name}\"\njq_match = '{program}'\n"
            'description = "d"\ndestinations = ["out"]\n'
            for name, program in programs.items()
        )
        + '[[destination]]\nid = "out"\ntype = "stdout"\n'
    )

    code = run_cli(["scan", "--dry-run", "--config", str(rules), str(path)])
    captured = capsys.readouterr()

    assert code == 0 and "Traceback" not in captured.err
    printed = {json.loads(line)["name"]: line for line in captured.out.splitlines()}
    assert set(printed) == set(programs)
    for name, program in programs.items():
        # libjq's own output for the record, as the jq package writes it.
        expected = jq.compile(program).input_text(json.dumps(record)).text()
        assert f'"match":{expected.replace(" ", "")}' in printed[name]


def test_scan_with_a_rule_with_memory_keeps_values_orjson_cannot_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The state of rules with memory holds their outputs: nesting past 255 levels and
    # integers beyond 64 bits are written as everywhere else (issue 10, defects 1 and 2).
    deep = json.loads("[" * 300 + "]" * 300)
    records = [
        {
            "eventVersion": "1.08",
            "eventName": "CreateUser",
            "eventID": f"e{n}",
            "eventTime": f"2023-07-10T12:00:0{n}Z",
            "deep": deep,
        }
        for n in range(3)
    ]
    path = tmp_path / "burst.json"
    path.write_text(json.dumps({"Records": records}))
    rules = tmp_path / "rules.toml"
    rules.write_text(
        """
[[rule]]
name = "Burst"
jq_match = 'select(.eventName == "CreateUser") | {deep, n: 100000000000000000000}'
threshold = { count = 2, window = "600s", group_by = "[.eventName, 100000000000000000000]" }
description = "d"
destinations = ["out"]

[[destination]]
id = "out"
type = "stdout"
"""
    )

    alerts = _scan_lines(["scan", "--dry-run", "--config", str(rules), str(path)], capsys)

    assert [alert["name"] for alert in alerts] == ["Burst"]
    assert "100000000000000000000" in json.dumps(alerts[0])
