"""The `tattletail` command: run the Lambda's pipeline over local files and S3 URIs.

Exit codes: 0 every input processed; 1 some inputs failed (each named on stderr) while the rest
were processed, or (test, validate) some rule test failed; 2 a usage or config error (one
message, never a traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import logging
import os
import signal
import sys
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

from botocore.exceptions import BotoCoreError, ClientError

from tattletail import __version__, backfill, config, config_source, logs, progress, ruletests
from tattletail.alerts import Alert
from tattletail.aws import AwsClients
from tattletail.backfill import BackfillError, BackfillStats
from tattletail.checkpoint import CheckpointError, Job, default_location, open_checkpoint
from tattletail.config import Config, ConfigError
from tattletail.daterange import EARLIEST, LATEST, RangeError, TimeRange
from tattletail.destinations import stdout
from tattletail.dispatch import DeliveryIncomplete
from tattletail.envelope import UnrecognisedEvent, parse_s3_uri
from tattletail.listing import (
    LOG_FILE_SUFFIXES,
    ListingError,
    NoAWSLogsFolder,
    TrailLister,
    select_objects,
)
from tattletail.objects import STDIN, ObjectRef
from tattletail.service import Service
from tattletail.settings import Settings, SettingsError
from tattletail.summary import RunSummary
from tattletail.trail_keys import parse_key

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130
VERBOSE_HELP = "log every object (JSON lines on stderr)"


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"tattletail: {message} (see 'tattletail --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tattletail", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"tattletail {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
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
    scan.add_argument(
        "paths", nargs="+", metavar="PATH", help="file, directory, s3:// URI, or - (stdin)"
    )
    _add_scan_scope_flags(scan)
    _add_backfill_parser(commands)

    validate = commands.add_parser(
        "validate", help="check a config, print its warnings, run its rule tests and exit"
    )
    validate.add_argument("--config", help="config file (default: $TATTLETAIL_CONFIG)")

    test = commands.add_parser("test", help="run every [[rule.test]] of a config")
    test.add_argument("--config", help="config file (default: $TATTLETAIL_CONFIG)")
    test.add_argument("--junit", metavar="PATH", help="also write the results as JUnit XML")

    sigma = commands.add_parser("sigma", help="convert Sigma rules to Tattletail rules (pySigma)")
    sigma_commands = sigma.add_subparsers(dest="sigma_command", required=True, parser_class=_Parser)
    convert = sigma_commands.add_parser(
        "convert", help="write [[rule]] tables for Sigma rules (files or directories)"
    )
    convert.add_argument("paths", nargs="+", metavar="PATH", help="Sigma .yml file or directory")
    convert.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="a .toml file, or a directory for one file per Sigma file (default: stdout)",
    )
    sigma_check = sigma_commands.add_parser(
        "check", help="per rule: converted, warning or unsupported (and why), native, index gate"
    )
    sigma_check.add_argument(
        "paths", nargs="+", metavar="PATH", help="Sigma .yml file or directory"
    )
    for command in commands.choices.values():
        _add_verbose_flag(command)
    return parser


def _add_verbose_flag(command: argparse.ArgumentParser) -> None:
    """`-v` after the subcommand too (`tattletail scan -v ...`); SUPPRESS keeps the value given
    before it when it is not repeated here."""
    command.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP
    )


def _add_scan_scope_flags(scan: argparse.ArgumentParser) -> None:
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


def _add_backfill_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    backfill = commands.add_parser(
        "backfill",
        help="enqueue a date range of log files to the deployed function's SQS queue",
        description="List the log files of a date range under s3://BUCKET/PREFIX (every account "
        "and region, by the date in their keys) and send them to the function's SQS trigger "
        "queue, so the deployed function evaluates them in parallel. Resumable.",
    )
    backfill.add_argument("uri", metavar="s3://BUCKET/PREFIX", help="where the trail writes")
    backfill.add_argument("--since", required=True, metavar="DATE", help="first day (UTC)")
    backfill.add_argument("--until", required=True, metavar="DATE", help="last day (UTC)")
    backfill.add_argument(
        "--queue", required=True, metavar="QUEUE_URL", help="the stack's TriggerQueueUrl"
    )
    backfill.add_argument(
        "--destinations",
        nargs="+",
        metavar="ID",
        help="send the backfill's alerts to these destinations only (e.g. an s3 archive), "
        "instead of each rule's",
    )
    backfill.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="where to record what was enqueued: a local file or s3://BUCKET/KEY (default: a "
        "local file named after the bucket, prefix and range); rerun to enqueue only the rest",
    )
    backfill.add_argument(
        "--config",
        help="check --destinations against this config (the one the function runs)",
    )
    backfill.add_argument(
        "--no-wait",
        action="store_true",
        help="exit once everything is enqueued, without watching the queue drain",
    )
    backfill.add_argument(
        "--files-per-message",
        type=int,
        default=1,
        metavar="N",
        help="log files named in one SQS message (1-100, default 1, as S3 notifies); more "
        "make far fewer SQS calls and invocations when files are small",
    )
    backfill.add_argument(
        "--concurrency",
        type=int,
        default=16,
        metavar="N",
        help="listings and SendMessageBatch calls in flight at once (default 16)",
    )


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
        if args.command == "sigma":
            return _sigma(args)
        # With a terminal on stderr, JSON log lines would break the progress line's redraws.
        show_progress = not verbose
        if args.command == "backfill":
            return asyncio.run(_backfill(settings, args, show_progress))
        scope = _scan_scope(args)
        return asyncio.run(
            _scan(
                settings,
                args.config,
                args.paths,
                args.dry_run,
                args.summary,
                show_progress,
                scope,
            )
        )
    except (ConfigError, UsageError, RangeError) as exc:
        return _fail(str(exc))
    except BrokenPipeError:
        # `tattletail scan ... | head`: the reader left; stop quietly, as Unix tools do.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the interpreter closes it at exit
        return EXIT_PARTIAL


def _sigma(args: argparse.Namespace) -> int:
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


@dataclass(frozen=True)
class ScanScope:
    """What `--since`, `--until` and `--rule` narrow a scan to."""

    time_range: TimeRange | None = None
    rules: tuple[str, ...] = ()


def _scan_scope(args: argparse.Namespace) -> ScanScope:
    time_range = TimeRange.parse(args.since, args.until) if args.since or args.until else None
    return ScanScope(time_range, tuple(dict.fromkeys(args.rules)))


def select_rules(loaded: Config, names: Sequence[str]) -> Config:
    """The config with only the named rules enabled (`--rule`): a named rule runs even when
    disabled, so a rule under development can be replayed before it is switched on."""
    if not names:
        return loaded
    known = [rule.name for rule in loaded.rules]
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"--rule {name!r}: {loaded.source} has no rule of that name{hint}")
    chosen = set(names)
    rules = tuple(replace(rule, enabled=rule.name in chosen) for rule in loaded.rules)
    return replace(loaded, rules=rules)


async def _scan(
    settings: Settings,
    config_path: str | None,
    paths: list[str],
    dry: bool,
    summary_only: bool = False,
    show_progress: bool = False,
    scope: ScanScope | None = None,
) -> int:
    scope = scope or ScanScope()
    window = scope.time_range.event_window() if scope.time_range else None
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
        loaded = select_rules(loaded, scope.rules)
        refs, missing = await _expand(paths, aws, scope.time_range)
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
        )
        + (
            f", {summary.records_out_of_range} records outside --since/--until"
            if window is not None
            else ""
        ),
        file=sys.stderr,
    )
    failed_any = failed or missing or summary.alerts_failed
    return EXIT_PARTIAL if failed_any else EXIT_OK


async def _backfill(settings: Settings, args: argparse.Namespace, show_progress: bool) -> int:
    """`tattletail backfill`: enqueue, then (unless --no-wait) watch the queue drain."""
    if not args.uri.startswith("s3://") or not args.uri[5:].partition("/")[0]:
        raise UsageError(f"not an s3://BUCKET/PREFIX URI: {args.uri!r}")
    bucket, _, prefix = args.uri[5:].partition("/")
    time_range = TimeRange.parse(args.since, args.until)
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if not 1 <= args.files_per_message <= 100:
        raise UsageError("--files-per-message must be between 1 and 100")
    destinations = tuple(dict.fromkeys(args.destinations)) if args.destinations else None
    if args.config:
        defined = config.load_file(args.config).destinations
        unknown = [d for d in destinations or () if d not in defined]
        if unknown:
            raise UsageError(f"--destinations: {args.config} defines no {', '.join(unknown)}")
    if destinations is None:
        print(
            "tattletail: note: without --destinations, alerts go to each rule's own "
            "destinations (an archive-only replay: --destinations ARCHIVE_ID)",
            file=sys.stderr,
        )
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
