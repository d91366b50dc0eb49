"""The `tattletail` command: run the Lambda's pipeline over local files and S3 URIs.

Exit codes: 0 every input processed; 1 some inputs failed (each named on stderr) while the rest
were processed, or (test, validate) some rule test failed; 2 a usage or config error (one
message, never a traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from botocore.exceptions import BotoCoreError, ClientError

from tattletail import __version__, config, config_source, logs, progress, ruletests
from tattletail.alerts import Alert
from tattletail.aws import AwsClients
from tattletail.config import Config, ConfigError
from tattletail.destinations import stdout
from tattletail.dispatch import DeliveryIncomplete
from tattletail.envelope import UnrecognisedEvent, parse_s3_uri
from tattletail.objects import ObjectRef
from tattletail.service import Service
from tattletail.settings import Settings, SettingsError
from tattletail.summary import RunSummary

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2
LOG_FILE_SUFFIXES = (".json", ".json.gz", ".jsonl", ".jsonl.gz")


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"tattletail: {message} (see 'tattletail --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tattletail", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"tattletail {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log every object (JSON lines on stderr)"
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    scan = commands.add_parser("scan", help="evaluate the rules over log files and alert")
    scan.add_argument("--config", help="config file (default: $TATTLETAIL_CONFIG or S3_CONFIG_*)")
    scan.add_argument(
        "--dry-run",
        action="store_true",
        help="send nothing: print each alert to stdout as one JSON line",
    )
    scan.add_argument(
        "--summary",
        action="store_true",
        help="send and print no alert: print per rule matches, suppressed, errors and "
        "distinct principals (implies --dry-run)",
    )
    scan.add_argument("paths", nargs="+", metavar="PATH", help="file, directory or s3:// URI")

    validate = commands.add_parser(
        "validate", help="check a config, print its warnings, run its rule tests and exit"
    )
    validate.add_argument("--config", help="config file (default: $TATTLETAIL_CONFIG)")

    test = commands.add_parser("test", help="run every [[rule.test]] of a config")
    test.add_argument("--config", help="config file (default: $TATTLETAIL_CONFIG)")
    test.add_argument("--junit", metavar="PATH", help="also write the results as JUnit XML")
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
        if args.command == "validate":
            return _validate(args.config or settings.config_file)
        if args.command == "test":
            return _test(args.config or settings.config_file, args.junit)
        # With a terminal on stderr, JSON log lines would break the progress line's redraws.
        show_progress = not verbose
        return asyncio.run(
            _scan(settings, args.config, args.paths, args.dry_run, args.summary, show_progress)
        )
    except (ConfigError, UsageError) as exc:
        return _fail(str(exc))
    except BrokenPipeError:
        # `tattletail scan ... | head`: the reader left; stop quietly, as Unix tools do.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the interpreter closes it at exit
        return EXIT_PARTIAL


def _fail(message: str) -> int:
    print(f"tattletail: {message}", file=sys.stderr)
    return EXIT_USAGE


def _validate(path: str) -> int:
    loaded = config.load_file(path)
    disabled = sum(1 for rule in loaded.rules if not rule.enabled)
    files = f", {len(loaded.files)} files" if len(loaded.files) > 1 else ""
    print(
        f"{loaded.source}: OK, {len(loaded.rules)} rules"
        + (f" ({disabled} disabled)" if disabled else "")
        + f", {len(loaded.destinations)} destinations{files}"
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


def _test(path: str, junit: str | None) -> int:
    loaded = config.load_file(path)
    results = ruletests.run_tests(loaded)
    if not results:
        print(f"{loaded.source}: no [[rule.test]] in the config")
    else:
        print(ruletests.format_table(results))
    if junit is not None:
        try:
            ruletests.write_junit(results, junit)
        except OSError as exc:
            raise UsageError(f"cannot write the JUnit report {junit}: {exc.strerror}") from None
    return EXIT_PARTIAL if any(result.failed for result in results) else EXIT_OK


async def _scan(
    settings: Settings,
    config_path: str | None,
    paths: list[str],
    dry: bool,
    summary_only: bool = False,
    show_progress: bool = False,
) -> int:
    aws = AwsClients(settings.aws_endpoint_url)
    # Per rule, the distinct userIdentity.arn of its alerts (--summary).
    principals: dict[str, set[str]] = defaultdict(set)

    async def collect(alerts: Sequence[Alert]) -> None:
        for alert in alerts:
            identity = alert.record.get("userIdentity")
            arn = identity.get("arn") if isinstance(identity, dict) else None
            principals[alert.rule_name].update([arn] if isinstance(arn, str) else [])

    sink = collect if summary_only else _print_alerts if dry else None
    try:
        s3 = await aws.client("s3") if settings.config_from_s3 and not config_path else None
        loaded: Config = await config_source.load(settings, s3, config_path)
        refs, missing = await _expand(paths, aws)
        service = Service(settings, loaded, aws, local=True)
        summary = RunSummary()
        bar = progress.Progress(len(refs))
        ticker = (
            asyncio.create_task(progress.watch(bar, summary))
            if show_progress and bar.enabled
            else None
        )
        try:
            failed = await service.run(refs, summary, sink=sink)
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
    if summary_only:
        print(summary_table(loaded, summary, principals))
    for uri in [*missing, *(ref.uri for ref in failed)]:
        print(f"tattletail: failed: {uri}", file=sys.stderr)
    print(
        f"tattletail: {summary.objects} objects, {summary.records} records, "
        f"{summary.matches} matches, {summary.suppressed} suppressed, "
        f"{summary.alerts_sent} alerts sent, "
        f"{summary.alerts_failed} failed, {summary.rule_errors} rule errors, "
        f"{summary.objects_skipped} skipped, {summary.objects_failed + len(missing)} failed inputs"
        + (
            f"; rules with memory: {summary.stateful_alerts} alerts, {summary.state_held} "
            "matches held by dedup"
            if any(rule.stateful is not None for rule in loaded.rules)
            else ""
        ),
        file=sys.stderr,
    )
    failed_any = failed or missing or summary.alerts_failed
    return EXIT_PARTIAL if failed_any else EXIT_OK


async def _print_alerts(alerts: Sequence[Alert]) -> None:
    sys.stdout.buffer.write(b"".join(stdout.render(alert) for alert in alerts))


SUMMARY_COLUMNS = ("matches", "suppressed", "alerts", "errors", "principals", "% records")


def summary_table(loaded: Config, summary: RunSummary, principals: dict[str, set[str]]) -> str:
    """`scan --summary`: how noisy each enabled rule is over the scanned files, noisiest first.

    matches counts every record the rule matched, suppressed or not; alerts the matches left
    after `suppress` (for a rule with memory, the alerts it decided; for a step rule with alert
    = false, none); principals the distinct userIdentity.arn of those alerts.
    """
    rows = []
    for rule in loaded.rules:
        if not rule.enabled:
            continue
        suppressed = summary.suppressed_by_rule[rule.name]
        matches = summary.matches_by_rule[rule.name] + suppressed
        alerts = (
            summary.stateful_alerts_by_rule[rule.name]
            if rule.stateful is not None
            else summary.matches_by_rule[rule.name]
            if rule.alert
            else 0
        )
        share = 100 * matches / summary.records if summary.records else 0.0
        cells = (matches, suppressed, alerts, summary.rule_errors_by_rule[rule.name])
        rows.append(
            (
                rule.name,
                rule.severity,
                *map(str, cells),
                str(len(principals[rule.name])),
                f"{share:.2f}",
            )
        )
    rows.sort(key=lambda row: -int(row[2]))  # stable: config order among equals
    header = ("rule", "severity", *SUMMARY_COLUMNS)
    widths = [max(len(row[n]) for row in [header, *rows]) for n in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(width) if n < 2 else cell.rjust(width)
            for n, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in [header, *rows]
    ]
    lines.append(
        f"{summary.records} records in {summary.objects} objects; "
        f"{len(rows)} rules, {sum(1 for row in rows if row[2] != '0')} matched"
    )
    return "\n".join(lines)


async def _expand(paths: list[str], aws: AwsClients) -> tuple[list[ObjectRef], list[str]]:
    """Turn the command line's paths into objects; also return inputs that do not exist."""
    refs: list[ObjectRef] = []
    missing: list[str] = []
    for path in paths:
        if path.startswith("s3://"):
            try:
                refs.extend(await _s3_objects(path, aws))
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


async def _s3_objects(uri: str, aws: AwsClients) -> list[ObjectRef]:
    """An s3://bucket/key is one object; s3://bucket/prefix/ (or a bare bucket) lists them."""
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
    refs = []
    async for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        refs.extend(
            ObjectRef(key=item["Key"], bucket=bucket)
            for item in page.get("Contents", [])
            if item["Key"].endswith(LOG_FILE_SUFFIXES)
        )
    return refs
