"""The `tattletail` command: run the Lambda's pipeline over local files and S3 URIs.

Each subcommand is a pair of functions, `_add_<name>` (its parser: arguments, help, examples)
and `_<name>` (what it does, returning the exit code), joined in `build_parser`. Exit codes: 0
every input processed; 1 some inputs failed (each named on stderr) while the rest were processed,
or (test, validate) some rule test failed; 2 a usage or config error (one message, never a
traceback); 130 (backfill) stopped by Ctrl-C, resumable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from botocore.exceptions import BotoCoreError, ClientError

from tattletail import __version__, backfill, config, config_source, logs, progress, ruletests
from tattletail.aws import AwsClients
from tattletail.backfill import BackfillError, BackfillStats
from tattletail.checkpoint import CheckpointError, Job, default_location, open_checkpoint
from tattletail.config import Config, ConfigError, Rule
from tattletail.daterange import EARLIEST, LATEST, RangeError, TimeRange
from tattletail.dispatch import DeliveryIncomplete
from tattletail.envelope import UnrecognisedEvent, parse_s3_uri
from tattletail.listing import (
    LOG_FILE_SUFFIXES,
    ListingError,
    NoAWSLogsFolder,
    TrailLister,
    select_objects,
)
from tattletail.noise import NoiseReport
from tattletail.objects import STDIN, ObjectRef
from tattletail.scan_output import (
    AlertPrinter,
    Format,
    colour_wanted,
    default_format,
    safe_json,
)
from tattletail.service import Service
from tattletail.settings import Settings, SettingsError
from tattletail.summary import RunSummary
from tattletail.text import did_you_mean, one_line, plural
from tattletail.trail_keys import parse_key

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130
VERBOSE_HELP = "log every object (JSON lines on stderr)"
LOCAL_CONFIG = "$TATTLETAIL_CONFIG when set, else ./tattletail.toml"
SCAN_CONFIG = (
    "the S3 object S3_CONFIG_BUCKET/S3_CONFIG_PATH when both are set, else " + LOCAL_CONFIG
)


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"tattletail: {message} (see '{self.prog} --help')\n")


HELP_WIDTH = 79


def _help(examples: Sequence[str], exit_codes: Sequence[str]) -> str:
    """A subcommand's epilog: examples (as they are, to be copied), then its exit codes."""
    lines = ["examples:", *(f"  {example}" for example in examples), "", "exit codes:"]
    lines.extend(
        textwrap.fill(code, HELP_WIDTH, initial_indent="  ", subsequent_indent="     ")
        for code in exit_codes
    )
    return "\n".join(lines)


def _subcommand(
    commands: argparse._SubParsersAction, name: str, summary: str, description: str, epilog: str
) -> argparse.ArgumentParser:
    command = commands.add_parser(
        name,
        help=summary,
        description=textwrap.fill(description, HELP_WIDTH),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_verbose_flag(command)
    return command


def _add_verbose_flag(command: argparse.ArgumentParser) -> None:
    """`-v` after the subcommand too (`tattletail scan -v ...`); SUPPRESS keeps the value given
    before it when it is not repeated here."""
    command.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tattletail",
        description=textwrap.fill(
            "Tattletail: CloudTrail alerting. Run the Lambda's pipeline over local log files "
            "and S3, and check and test configs before they are deployed.",
            HELP_WIDTH,
        ),
        epilog=_help(
            [
                "tattletail validate --config tattletail.toml",
                "tattletail test --config tattletail.toml --rule 'IAM user created'",
                "tattletail scan --config tattletail.toml --dry-run ~/Downloads/AWSLogs/",
                "tattletail scan --config tattletail.toml --summary s3://trail-bucket/AWSLogs/",
                "tattletail backfill s3://trail-bucket --since 2024-01-01 --until 2024-03-31 "
                "--queue QUEUE_URL",
            ],
            [
                "0  done: every input processed, every test passed",
                "1  something failed (an input, a delivery, a rule test); the rest was done",
                "2  usage or config error",
                "130  (backfill) stopped by Ctrl-C; rerun the same command to resume",
            ],
        )
        + "\n\n'tattletail COMMAND --help' describes each command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tattletail {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    commands = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser, metavar="COMMAND"
    )
    _add_scan(commands)
    _add_backfill(commands)
    _add_validate(commands)
    _add_test(commands)
    _add_sigma(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        return _fail(str(exc))
    # The CLI prints its own summary; JSON logs below WARNING only when asked for.
    verbose = args.verbose or "TATTLETAIL_LOG_LEVEL" in os.environ
    logs.configure(settings.log_level if verbose else "WARNING")
    try:
        return args.run(args, settings)
    except (ConfigError, UsageError, RangeError) as exc:
        return _fail(str(exc))
    except BrokenPipeError:
        # `tattletail scan ... | head`: the reader left; stop quietly, as Unix tools do.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the interpreter closes it at exit
        return EXIT_PARTIAL


def _fail(message: str) -> int:
    print(f"tattletail: {message}", file=sys.stderr)
    return EXIT_USAGE


def _config_path(explicit: str | None, settings: Settings, command: str) -> str:
    """The config file to read: --config, else the default, which must then exist (a missing
    default says how to name one, rather than only that a file is missing)."""
    if explicit is not None:
        return explicit
    if not Path(settings.config_file).exists():
        raise UsageError(
            f"no config: {settings.config_file} does not exist (name one with 'tattletail "
            f"{command} --config PATH', or set TATTLETAIL_CONFIG)"
        )
    return settings.config_file


# -- validate -------------------------------------------------------------------------------


def _add_validate(commands: argparse._SubParsersAction) -> None:
    validate = _subcommand(
        commands,
        "validate",
        "check a config, print its warnings and run its rule tests",
        "Check a config (every problem is reported at once), print its warnings (expired "
        "suppressions, rules that alert nowhere) on stderr, and run its [[rule.test]] cases, "
        "printing only the failures.",
        _help(
            [
                "tattletail validate --config tattletail.toml",
                "TATTLETAIL_CONFIG=config/tattletail-pack.toml tattletail validate",
            ],
            [
                "0  the config is valid and every rule test passed",
                "1  the config is valid but a rule test failed or errored",
                "2  the config is invalid or cannot be read",
            ],
        ),
    )
    validate.add_argument("--config", metavar="PATH", help=f"config file (default: {LOCAL_CONFIG})")
    validate.set_defaults(run=_validate)


def _validate(args: argparse.Namespace, settings: Settings) -> int:
    loaded = config.load_file(_config_path(args.config, settings, "validate"))
    disabled = sum(1 for rule in loaded.rules if not rule.enabled)
    files = f", {plural(len(loaded.files), 'file')}" if len(loaded.files) > 1 else ""
    print(
        f"{loaded.source}: OK, {plural(len(loaded.rules), 'rule')}"
        + (f" ({disabled} disabled)" if disabled else "")
        + f", {plural(len(loaded.destinations), 'destination')}{files}"
    )
    for warning in loaded.warnings():
        print(f"tattletail: warning: {warning}", file=sys.stderr)
    results = ruletests.run_tests(loaded)
    if not results:
        return EXIT_OK
    for line in ruletests.format_failures(results):
        print(line)
    print(ruletests.summary_line(results))
    return EXIT_PARTIAL if any(result.failed for result in results) else EXIT_OK


# -- test -----------------------------------------------------------------------------------


def _add_test(commands: argparse._SubParsersAction) -> None:
    test = _subcommand(
        commands,
        "test",
        "run the config's [[rule.test]] cases",
        "Run the [[rule.test]] cases of the config's rules through the engine that alerts "
        "(index, native fast path, libjq, suppressions, title), one row per test, then what "
        "each failing rule produced against what was expected. Sample events live in "
        "config/rules/events/ (a test names one with event_file).",
        _help(
            [
                "tattletail test --config config/tattletail-pack.toml",
                "tattletail test --config config/tattletail-pack.toml --rule 'IAM user created'",
                "tattletail test --config config/tattletail-pack.toml "
                "--file config/rules/persistence.toml",
                "tattletail test --config tattletail.toml --junit rule-tests.xml",
            ],
            [
                "0  every selected test passed (or there is none)",
                "1  a test failed or errored",
                "2  usage or config error (an unknown --rule or --file included)",
            ],
        ),
    )
    test.add_argument("--config", metavar="PATH", help=f"config file (default: {LOCAL_CONFIG})")
    test.add_argument(
        "--rule",
        metavar="NAME",
        action="append",
        default=[],
        help="only the tests of the rule with this name (repeatable)",
    )
    test.add_argument(
        "--file",
        metavar="PATH",
        action="append",
        default=[],
        help="only the tests of the rules written in this file, the config or one it "
        "includes (repeatable)",
    )
    test.add_argument("--junit", metavar="PATH", help="also write the results as JUnit XML")
    test.set_defaults(run=_test)


def _test(args: argparse.Namespace, settings: Settings) -> int:
    loaded = config.load_file(_config_path(args.config, settings, "test"))
    selected = _select_rules(loaded, args.rule, args.file)
    results = ruletests.run_tests(loaded, rules=selected)
    if results:
        print(ruletests.format_table(results))
    elif selected is None:
        print(f"{loaded.source}: no [[rule.test]] in the config")
    else:
        print(f"{loaded.source}: no [[rule.test]] in the {plural(len(selected), 'selected rule')}")
    if args.junit is not None:
        try:
            ruletests.write_junit(results, args.junit)
        except OSError as exc:
            raise UsageError(
                f"cannot write the JUnit report {args.junit}: {exc.strerror}"
            ) from None
    return EXIT_PARTIAL if any(result.failed for result in results) else EXIT_OK


def _select_rules(loaded: Config, names: Sequence[str], files: Sequence[str]) -> set[int] | None:
    """The indexes of the rules named (--rule) and written in the files (--file); None when
    neither was given (every rule). A name or file that selects nothing is a usage error."""
    if not names and not files:
        return None
    selected = {rule.index for rule in loaded.rules}
    if names:
        _check_rule_names(loaded, names)
        selected &= {rule.index for rule in loaded.rules if rule.name in names}
    if files:
        by_file: dict[Path, list[Rule]] = {}
        for rule in loaded.rules:
            by_file.setdefault(Path(rule.origin).resolve(), []).append(rule)
        chosen: set[int] = set()
        for file in files:
            rules = by_file.get(Path(file).resolve())
            if rules is None:
                hint = (
                    did_you_mean(file, loaded.files) or f" (its files: {', '.join(loaded.files)})"
                )
                raise UsageError(f"{loaded.source}: no rule is written in {file}{hint}")
            chosen.update(rule.index for rule in rules)
        selected &= chosen
    return selected


def _check_rule_names(loaded: Config, names: Sequence[str]) -> None:
    """A `--rule` that names no rule of the config is a usage error (with the closest name)."""
    known = [rule.name for rule in loaded.rules]
    for name in names:
        if name not in known:
            raise UsageError(f"{loaded.source}: no rule named {name!r}{did_you_mean(name, known)}")


# -- sigma ----------------------------------------------------------------------------------


def _add_sigma(commands: argparse._SubParsersAction) -> None:
    sigma = _subcommand(
        commands,
        "sigma",
        "convert Sigma rules to Tattletail rules (pySigma)",
        "Convert Sigma rules for AWS CloudTrail into [[rule]] tables whose jq matches what the "
        "Sigma rule matches (needs pySigma: pip install 'tattletail[sigma]'). See docs/sigma.md.",
        _help(
            [
                "tattletail sigma check my-sigma-rules/",
                "tattletail sigma convert my-sigma-rules/ -o rules/sigma.toml",
                "tattletail sigma convert my-sigma-rules/ -o converted/",
            ],
            [
                "0  every rule converted",
                "1  some rule could not be converted (each is named, with why)",
                "2  usage error, or pySigma is not installed",
            ],
        ),
    )
    sigma_commands = sigma.add_subparsers(
        dest="sigma_command", required=True, parser_class=_Parser, metavar="SUBCOMMAND"
    )
    convert = sigma_commands.add_parser(
        "convert", help="write [[rule]] tables for Sigma rules (files or directories)"
    )
    _add_verbose_flag(convert)
    convert.add_argument("paths", nargs="+", metavar="PATH", help="Sigma .yml file or directory")
    convert.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="a .toml file, or a directory for one file per Sigma file (default: stdout)",
    )
    check = sigma_commands.add_parser(
        "check", help="per rule: converted, warning or unsupported (and why), native, index gate"
    )
    _add_verbose_flag(check)
    check.add_argument("paths", nargs="+", metavar="PATH", help="Sigma .yml file or directory")
    sigma.set_defaults(run=_sigma)


def _sigma(args: argparse.Namespace, settings: Settings) -> int:
    # pySigma is optional (the Lambda image does not carry it): imported only for this command.
    from tattletail.sigma import SigmaUnavailable, require_pysigma

    try:
        require_pysigma()
        from tattletail.sigma import cli as sigma_cli

        if args.sigma_command == "convert":
            return sigma_cli.convert(args.paths, args.output)
        return sigma_cli.check(args.paths)
    except SigmaUnavailable as exc:
        return _fail(str(exc))
    except sigma_cli.SigmaUsageError as exc:
        return _fail(f"sigma: {exc}")


# -- scan -----------------------------------------------------------------------------------


def _add_scan(commands: argparse._SubParsersAction) -> None:
    scan = _subcommand(
        commands,
        "scan",
        "evaluate the rules over log files and alert",
        "Evaluate the rules over CloudTrail log files (.json, .json.gz, .jsonl, directories, "
        "s3:// objects and prefixes, - for standard input) and send the alerts to the rules' "
        "destinations, exactly as the Lambda function does. With --dry-run, print them instead "
        "(text on a terminal: one line per alert; JSON lines otherwise), each with the "
        "destinations it would have gone to. With --summary, print how noisy each rule is. "
        "--since/--until keep the records whose eventTime is in range (under an s3:// prefix, "
        "only the files dated in it are listed, as a backfill does); --rule runs only the "
        "rules named.",
        _help(
            [
                "tattletail scan --config tattletail.toml --dry-run ~/Downloads/AWSLogs/",
                "tattletail scan --dry-run --format json s3://trail-bucket/AWSLogs/ > alerts.jsonl",
                "tattletail scan --config config/tattletail-pack.toml --summary config/samples",
                "tattletail scan --summary --all --format json config/samples > noise.json",
                "tattletail scan --dry-run --since 2024-03-01 --until 2024-03-07 "
                "--rule 'Root user access key created' s3://trail-bucket/AWSLogs/",
                "aws s3 cp s3://trail-bucket/KEY.json.gz - | tattletail scan --dry-run -",
            ],
            [
                "0  every input processed (and, without --dry-run, every alert delivered)",
                "1  some inputs failed or some alerts were not delivered (each is named on "
                "stderr); the rest were processed",
                "2  usage or config error (a bad --since/--until or an unknown --rule included)",
            ],
        ),
    )
    scan.add_argument("--config", metavar="PATH", help=f"config (default: {SCAN_CONFIG})")
    scan.add_argument(
        "--dry-run",
        action="store_true",
        help="send nothing: print each alert and the destinations it would have gone to",
    )
    scan.add_argument(
        "--format",
        choices=[f.value for f in Format],
        help="how --dry-run prints alerts: text (one line each, at most 200 characters; the "
        "default on a terminal) or json (one JSON object per line; the default otherwise); "
        "--summary prints text unless given json",
    )
    scan.add_argument(
        "--summary",
        action="store_true",
        help="send and print no alert: per rule, alerts, suppressed matches and errors, and "
        "the top principals and source IPs of the noisiest rules (implies --dry-run)",
    )
    scan.add_argument(
        "--all", action="store_true", help="with --summary: list the rules with no match too"
    )
    scan.add_argument(
        "--since",
        metavar="DATE",
        help="only records whose eventTime is on or after DATE (YYYY-MM-DD, or a UTC time "
        "YYYY-MM-DDTHH:MM:SSZ); under an s3:// prefix, only files whose key is dated from DATE",
    )
    scan.add_argument(
        "--until",
        metavar="DATE",
        help="only records whose eventTime is on or before DATE (a date covers its whole day); "
        "under an s3:// prefix, only files whose key is dated up to DATE",
    )
    scan.add_argument(
        "--rule",
        action="append",
        default=[],
        metavar="NAME",
        dest="rules",
        help="run only this rule (repeatable); a rule named here runs even if disabled",
    )
    scan.add_argument(
        "paths", nargs="+", metavar="PATH", help="file, directory, s3:// URI, or - (stdin)"
    )
    scan.set_defaults(run=_scan)


def _scan(args: argparse.Namespace, settings: Settings) -> int:
    if args.format is not None and not (args.dry_run or args.summary):
        raise UsageError(
            "--format applies to --dry-run and --summary (a scan that sends prints no alert)"
        )
    if args.all and not args.summary:
        raise UsageError("--all applies to --summary")
    time_range = TimeRange.parse(args.since, args.until) if args.since or args.until else None
    if not settings.config_from_s3:
        args.config = _config_path(args.config, settings, "scan")
    return asyncio.run(_scan_async(settings, args, time_range, _show_progress(args)))


def _show_progress(args: argparse.Namespace) -> bool:
    # With a terminal on stderr, JSON log lines would break the progress line's redraws.
    return not (args.verbose or "TATTLETAIL_LOG_LEVEL" in os.environ)


async def _scan_async(
    settings: Settings,
    args: argparse.Namespace,
    time_range: TimeRange | None,
    show_progress: bool,
) -> int:
    window = time_range.event_window() if time_range else None
    aws = AwsClients(settings.aws_endpoint_url)
    noise = NoiseReport()
    dry = args.dry_run or args.summary
    if args.summary:
        sink = noise.collect
    elif args.dry_run:
        fmt = Format(args.format) if args.format else default_format(sys.stdout)
        sink = AlertPrinter(sys.stdout.buffer, fmt, colour_wanted(sys.stdout))
    else:
        sink = None
    try:
        from_s3 = settings.config_from_s3 and not args.config
        s3 = await aws.client("s3") if from_s3 else None
        loaded: Config = await config_source.load(settings, s3, args.config)
        loaded = _enable_only(loaded, args.rules)
        refs, missing = await _expand(args.paths, aws, time_range)
        service = Service(settings, loaded, aws, local=True)
        summary = RunSummary()
        bar = progress.Progress(len(refs))
        ticker = (
            asyncio.create_task(progress.watch(bar, summary))
            if show_progress and bar.enabled
            else None
        )
        try:
            failed = await service.run(refs, summary, sink=sink, window=window)
        except DeliveryIncomplete as exc:
            # Counted in the summary (alerts_failed) and reported below; exit code 1.
            logs.log(logging.ERROR, "delivery_incomplete", error=str(exc))
            failed = []
        finally:
            if ticker is not None:
                ticker.cancel()
                bar.close()
            await service.aclose()
            service.close_pool()
    finally:
        await aws.close()
    logs.log(logging.INFO, "scan_summary", **summary.fields())
    if args.summary and args.format == Format.JSON:
        report = noise.as_json(loaded, summary, show_all=args.all)
        sys.stdout.buffer.write(safe_json(report, indent=True) + b"\n")
    elif args.summary:
        print(noise.render(loaded, summary, show_all=args.all))
    for uri in [*missing, *(ref.uri for ref in failed)]:
        # An S3 key may hold any character: shown escaped, never acting on the terminal.
        print(f"tattletail: failed: {one_line(uri)}", file=sys.stderr)
    print(summary_line(loaded, summary, len(missing), dry, window is not None), file=sys.stderr)
    failed_any = failed or missing or summary.alerts_failed
    return EXIT_PARTIAL if failed_any else EXIT_OK


def _enable_only(loaded: Config, names: Sequence[str]) -> Config:
    """The config with only the rules named by `scan --rule` enabled: a named rule runs even
    when disabled, so a rule under development can be replayed before it is switched on."""
    if not names:
        return loaded
    _check_rule_names(loaded, names)
    chosen = set(names)
    rules = tuple(replace(rule, enabled=rule.name in chosen) for rule in loaded.rules)
    return replace(loaded, rules=rules)


def summary_line(
    loaded: Config, summary: RunSummary, missing: int, dry: bool, windowed: bool = False
) -> str:
    """The last line of every scan, on stderr."""
    sent = (
        "dry run: nothing sent"
        if dry
        else f"{plural(summary.alerts_sent, 'alert')} sent, {summary.alerts_failed} failed"
    )
    return (
        "tattletail: "
        + ", ".join(
            [
                plural(summary.objects, "object"),
                plural(summary.records, "record"),
                plural(summary.matches, "match", "matches"),
                f"{summary.suppressed} suppressed",
                sent,
                plural(summary.rule_errors, "rule error"),
                f"{summary.objects_skipped} skipped",
                plural(summary.objects_failed + missing, "failed input"),
            ]
        )
        + (
            f", {plural(summary.records_out_of_range, 'record')} outside --since/--until"
            if windowed
            else ""
        )
        + (
            f"; rules with memory: {plural(summary.stateful_alerts, 'alert')}, "
            f"{plural(summary.state_held, 'match', 'matches')} held by dedup"
            if any(rule.stateful is not None for rule in loaded.rules)
            else ""
        )
    )


async def _expand(
    paths: list[str], aws: AwsClients, time_range: TimeRange | None = None
) -> tuple[list[ObjectRef], list[str]]:
    """Turn the command line's paths into objects; also return inputs that do not exist. `-`
    is standard input; under an s3:// prefix, a time range selects files by their key's date."""
    refs: list[ObjectRef] = []
    missing: list[str] = []
    if paths.count(STDIN) > 1:
        raise UsageError("- (standard input) can be given once")
    for path in paths:
        if path == STDIN:
            refs.append(ObjectRef(key=STDIN))
            continue
        if path.startswith("s3://"):
            try:
                refs.extend(await _s3_objects(path, aws, time_range))
            except ListingError as exc:
                raise UsageError(str(exc)) from None
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "Unknown")
                missing.append(f"{path} (S3 ListObjectsV2 failed: {code})")
            except BotoCoreError as exc:
                missing.append(f"{path} (S3 ListObjectsV2 failed: {exc})")
            continue
        local = Path(path)
        if local.is_dir():
            refs.extend(
                ObjectRef(key=str(p))
                for p in sorted(local.rglob("*"))
                if p.is_file() and p.name.endswith(LOG_FILE_SUFFIXES)
            )
        elif local.exists():
            refs.append(ObjectRef(key=str(local)))
        else:
            missing.append(f"{path} (no such file or directory)")
    return refs, missing


async def _s3_objects(
    uri: str, aws: AwsClients, time_range: TimeRange | None = None
) -> list[ObjectRef]:
    """An s3://bucket/key is one object; s3://bucket/prefix/ (or a bare bucket) lists them:
    with both --since and --until, only the date folders of the range (as `backfill` does),
    with one of them, every key whose date is in range."""
    bucket_and_key = uri[5:]
    if "/" in bucket_and_key and not bucket_and_key.endswith("/"):
        try:
            return [parse_s3_uri(uri)]
        except UnrecognisedEvent as exc:
            raise UsageError(str(exc)) from None
    bucket, _, prefix = bucket_and_key.partition("/")
    if not bucket:
        raise UsageError(f"not an s3:// URI with a bucket: {uri!r}")
    s3 = await aws.client("s3")
    if time_range is not None and time_range.since != EARLIEST and time_range.until != LATEST:
        with contextlib.suppress(NoAWSLogsFolder):  # copied files: listed and filtered below
            return await select_objects(s3, bucket, prefix, time_range)
    refs = []
    async for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        refs.extend(
            ObjectRef(key=item["Key"], bucket=bucket)
            for item in page.get("Contents", [])
            if item["Key"].endswith(LOG_FILE_SUFFIXES) and _dated_in(item["Key"], time_range)
        )
    return refs


def _dated_in(key: str, time_range: TimeRange | None) -> bool:
    """Whether a key's date is in range; keys with no date in them are kept (their records are
    still selected by eventTime)."""
    if time_range is None:
        return True
    trail = parse_key(key)
    return trail is None or trail.day is None or time_range.contains_day(trail.day)


# -- backfill -------------------------------------------------------------------------------


def _add_backfill(commands: argparse._SubParsersAction) -> None:
    command = _subcommand(
        commands,
        "backfill",
        "enqueue a date range of log files to the deployed function's SQS queue",
        "List the log files of a date range under s3://BUCKET/PREFIX (every organisation, "
        "account and region, by the date in their keys) and send them to the function's SQS "
        "trigger queue, so the deployed function evaluates them in parallel; then watch the "
        "queue drain. A checkpoint records what was enqueued: rerunning the same command "
        "enqueues only the rest. See deploy/README.md.",
        _help(
            [
                "tattletail backfill s3://trail-bucket/AWSLogs/ --since 2024-01-01 "
                "--until 2024-03-31 --queue QUEUE_URL",
                "tattletail backfill s3://trail-bucket/AWSLogs/o-a1b2c3d4e5/ --since 2024-01-01 "
                "--until 2024-03-31 --queue QUEUE_URL --destinations Archive "
                "--config tattletail.toml",
                "tattletail backfill s3://trail-bucket/ --since 2023-01-01 --until 2023-12-31 "
                "--queue QUEUE_URL --files-per-message 20 --no-wait",
            ],
            [
                "0  every file in the range enqueued (and, without --no-wait, the queue drained "
                "or no longer watched)",
                "1  an AWS call or the checkpoint failed; rerun the same command to enqueue the "
                "rest",
                "2  usage or config error (a bad range, an unknown --destinations id)",
                "130  stopped by Ctrl-C; rerun the same command to resume",
            ],
        ),
    )
    command.add_argument("uri", metavar="s3://BUCKET/PREFIX", help="where the trail writes")
    command.add_argument("--since", required=True, metavar="DATE", help="first day (UTC)")
    command.add_argument("--until", required=True, metavar="DATE", help="last day (UTC)")
    command.add_argument(
        "--queue", required=True, metavar="QUEUE_URL", help="the stack's TriggerQueueUrl"
    )
    command.add_argument(
        "--destinations",
        nargs="+",
        metavar="ID",
        help="send the backfill's alerts to these destinations only (e.g. an s3 archive), "
        "instead of each rule's",
    )
    command.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="where to record what was enqueued: a local file or s3://BUCKET/KEY (default: a "
        "local file named after the bucket, prefix and range); rerun to enqueue only the rest",
    )
    command.add_argument(
        "--config",
        metavar="PATH",
        help="check --destinations against this config (the one the function runs)",
    )
    command.add_argument(
        "--no-wait",
        action="store_true",
        help="exit once everything is enqueued, without watching the queue drain",
    )
    command.add_argument(
        "--files-per-message",
        type=int,
        default=1,
        metavar="N",
        help="log files named in one SQS message (1-100, default 1, as S3 notifies); more "
        "make far fewer SQS calls and invocations when files are small",
    )
    command.add_argument(
        "--concurrency",
        type=int,
        default=16,
        metavar="N",
        help="listings and SendMessageBatch calls in flight at once (default 16)",
    )
    command.set_defaults(run=_backfill)


def _backfill(args: argparse.Namespace, settings: Settings) -> int:
    """`tattletail backfill`: enqueue, then (unless --no-wait) watch the queue drain."""
    if not args.uri.startswith("s3://") or not args.uri[5:].partition("/")[0]:
        raise UsageError(f"not an s3://BUCKET/PREFIX URI: {args.uri!r}")
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if not 1 <= args.files_per_message <= 100:
        raise UsageError("--files-per-message must be between 1 and 100")
    time_range = TimeRange.parse(args.since, args.until)
    destinations = tuple(dict.fromkeys(args.destinations)) if args.destinations else None
    if args.config:
        defined = config.load_file(args.config).destinations
        unknown = [d + did_you_mean(d, defined) for d in destinations or () if d not in defined]
        if unknown:
            raise UsageError(f"--destinations: {args.config} defines no {', '.join(unknown)}")
    if destinations is None:
        print(
            "tattletail: note: without --destinations, alerts go to each rule's own "
            "destinations (an archive-only replay: --destinations ARCHIVE_ID)",
            file=sys.stderr,
        )
    return asyncio.run(
        _backfill_async(settings, args, time_range, destinations, _show_progress(args))
    )


async def _backfill_async(
    settings: Settings,
    args: argparse.Namespace,
    time_range: TimeRange,
    destinations: tuple[str, ...] | None,
    show_progress: bool,
) -> int:
    bucket, _, prefix = args.uri[5:].partition("/")
    job = Job(
        bucket=bucket,
        prefix=prefix,
        since=time_range.first_day.isoformat(),
        until=time_range.last_day.isoformat(),
        queue=args.queue,
        destinations=destinations,
    )
    location = args.checkpoint or default_location(job)
    aws = AwsClients(settings.aws_endpoint_url)
    bar = progress.Progress(0)
    stats = BackfillStats()
    stop = asyncio.Event()
    try:
        s3, sqs = await aws.client("s3"), await aws.client("sqs")
        checkpoint = await open_checkpoint(location, job, uuid.uuid4().hex, s3)
        before = checkpoint.state.enqueued
        lister = TrailLister(s3, bucket, prefix, time_range, args.concurrency, stats.listing)
        ticker = _ticker(bar, lambda _: backfill.render_listing(stats), show_progress)
        try:
            with _first_interrupt_sets(stop, "finishing the SendMessageBatch calls in flight"):
                await backfill.enqueue(
                    lister,
                    sqs,
                    args.queue,
                    checkpoint,
                    stats,
                    destinations,
                    args.concurrency,
                    stop,
                    args.files_per_message,
                )
        finally:
            ticker.cancel()
            bar.close()
            await checkpoint.close()
            _print_backfill_summary(stats, location, before)
        if args.no_wait:
            return EXIT_OK
        return await _watch_drain(sqs, args.queue, bar, show_progress)
    except ListingError as exc:
        raise UsageError(str(exc)) from None
    except (CheckpointError, BackfillError) as exc:
        print(f"tattletail: {exc}", file=sys.stderr)
        print(
            f"tattletail: {location} records what was enqueued: rerun the same command to "
            "enqueue the rest",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED if isinstance(exc, backfill.Interrupted) else EXIT_PARTIAL
    except (ClientError, BotoCoreError) as exc:
        print(f"tattletail: backfill failed: {exc}", file=sys.stderr)
        return EXIT_PARTIAL
    finally:
        await aws.close()


@contextlib.contextmanager
def _first_interrupt_sets(stop: asyncio.Event, doing: str) -> Iterator[None]:
    """While inside: the first Ctrl-C sets `stop` (a clean stop), the second interrupts."""
    loop = asyncio.get_running_loop()

    def interrupted() -> None:
        stop.set()
        loop.remove_signal_handler(signal.SIGINT)
        print(f"\ntattletail: stopping: {doing} (Ctrl-C again to quit now)", file=sys.stderr)

    try:
        loop.add_signal_handler(signal.SIGINT, interrupted)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, Windows
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def _ticker(bar: progress.Progress, line: Callable[[float], str], show: bool) -> asyncio.Task[None]:
    async def tick() -> None:
        while True:
            bar.draw(line)
            await asyncio.sleep(0.2)

    return asyncio.create_task(tick() if show and bar.enabled else asyncio.sleep(0))


def _print_backfill_summary(stats: BackfillStats, location: str, before: int) -> None:
    listing = stats.listing
    skipped = ", ".join(f"{n:,} {why}" for why, n in sorted(listing.skipped_keys.items()))
    folders = ", ".join(f"{n:,} {why}" for why, n in sorted(listing.skipped_folders.items()))
    print(
        f"tattletail: backfill: {stats.enqueued:,} log files enqueued"
        + (f" ({before:,} by earlier runs)" if before else "")
        + f"; {listing.units_done:,}/{listing.units_total:,} date prefixes listed, "
        f"{listing.keys_seen:,} keys"
        + (f"; keys skipped: {skipped}" if skipped else "")
        + (f"; folders skipped: {folders}" if folders else "")
        + f"; checkpoint: {location}",
        file=sys.stderr,
    )


async def _watch_drain(sqs: Any, queue_url: str, bar: progress.Progress, show: bool) -> int:
    """Show the queue draining until it is empty; Ctrl-C stops watching (the work goes on)."""
    polls = 0

    def on_poll(depth: backfill.QueueDepth) -> None:
        nonlocal polls
        polls += 1
        if show and bar.enabled:
            bar.draw(lambda _: backfill.render_depth(depth))
        elif polls % 12 == 1:
            print(f"tattletail: {backfill.render_depth(depth)}", file=sys.stderr)

    stop = asyncio.Event()
    try:
        with _first_interrupt_sets(stop, "no longer watching the queue"):
            drained = await backfill.wait_drained(sqs, queue_url, on_poll, stop=stop)
    except (ClientError, BotoCoreError) as exc:
        print(f"tattletail: cannot read the queue's depth: {exc}", file=sys.stderr)
        return EXIT_PARTIAL
    finally:
        bar.close()
    if drained:
        print("tattletail: the queue is empty: every enqueued file was processed", file=sys.stderr)
    else:
        print("tattletail: the function goes on processing the queue", file=sys.stderr)
    return EXIT_OK
