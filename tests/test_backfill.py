"""`tattletail backfill` against the moto server.

Ten thousand generated log files across 20 accounts (organisation and account trails) and 3
regions: a backfill that crashes halfway and is resumed enqueues every key of the range exactly
once and none outside it; the handler run over the queue's messages then alerts exactly as a
local `scan` of the same range. Crash points at random (the checkpoint's promise), routing to
named destinations, and the dedupe table keeping a replay from re-sending, on smaller buckets.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tattletail import backfill, lambda_handler
from tattletail.aws import AwsClients
from tattletail.backfill import BackfillError, BackfillStats, enqueue, wait_drained
from tattletail.checkpoint import Job, default_location, open_checkpoint
from tattletail.cli import main
from tattletail.daterange import TimeRange
from tattletail.envelope import open_envelope
from tattletail.listing import Listed, TrailLister
from tests.lambda_support import LambdaContext
from tests.support import Moto
from tests.trail_support import expected_keys, generate, load, record_for, s3_on_one_loop

BUCKET = "org-trail"
FIRST, LAST = date(2023, 9, 1), date(2024, 8, 31)
SINCE, UNTIL = date(2024, 2, 1), date(2024, 2, 29)
RULES = """
[[rule]]
name = "Create User"
jq_match = 'select(.eventName == "CreateUser") | "user: \\(.responseElements.user.userName)"'
description = "A new IAM user"
destinations = ["Out"]

[[rule]]
name = "Console login in eu-west-1"
jq_match = 'select(.eventName == "ConsoleLogin" and .awsRegion == "eu-west-1")'
description = "A console login in Ireland"
destinations = ["Out"]

[[destination]]
id = "Out"
type = "stdout"
"""


@pytest.fixture(scope="module")
def moto_module(moto_server: Moto) -> Iterator[Moto]:
    """A moto server reset once for the module (loading ten thousand keys is the slow part),
    and every AWS call of the module's commands pointed at it."""
    moto_server.reset()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
        patch.setenv("TATTLETAIL_WORKERS", "1")
        patch.setenv("TATTLETAIL_METRICS", "false")
        for name in ("S3_CONFIG_BUCKET", "S3_CONFIG_PATH", "TATTLETAIL_DEDUPE_TABLE"):
            patch.delenv(name, raising=False)
        yield moto_server


@pytest.fixture(scope="module")
def trail(moto_module: Moto) -> list:
    objects = generate(10_000, 20, FIRST, LAST)
    load(moto_module, BUCKET, objects)
    return objects


def run_cli(argv: list[str]) -> tuple[int, str]:
    """main()'s exit code and what it wrote on stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, err.getvalue()


class Fleet:
    """Stands in for the queue's event source mapping while a backfill runs: takes messages as
    they arrive and deletes them, so the queue stays short as it does in AWS (moto's SQS slows
    down with every message a queue holds)."""

    def __init__(self, moto: Moto, queue_url: str) -> None:
        self.moto, self.queue_url = moto, queue_url
        self.messages: list[dict[str, Any]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._take, daemon=True)

    def __enter__(self) -> Fleet:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(60)

    def _take(self) -> None:
        # Straight from moto's SQS backend: what a receive and a delete over HTTP do, without
        # the requests competing with the command under test for the CPU.
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.sqs.models import sqs_backends

        backend = sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        name = self.queue_url.rsplit("/", 1)[1]
        while True:
            batch = backend.receive_message(name, 10, 0, 3600)
            for message in batch:
                self.messages.append(
                    {
                        "MessageId": message.id,
                        "ReceiptHandle": message.receipt_handle,
                        "Body": message.body,
                        "MD5OfBody": message.body_md5,
                    }
                )
                backend.delete_message(name, message.receipt_handle)
            if not batch:
                if self._done.is_set():
                    return
                self._done.wait(0.01)


def consumed(moto: Moto, queue_url: str, argv: list[str]) -> tuple[int, str, list[dict[str, Any]]]:
    """Run the command while the fleet takes what it enqueues."""
    with Fleet(moto, queue_url) as fleet:
        code, err = run_cli(argv)
    return code, err, fleet.messages


def keys_of(messages: list[dict[str, Any]]) -> list[str]:
    """The log files the messages name, read as the handler reads them."""
    keys = []
    for message in messages:
        refs = open_envelope(sqs_event([message])).refs
        assert refs and {ref.bucket for ref in refs} == {BUCKET}
        keys.extend(ref.key for ref in refs)
    return keys


def sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Messages as the event source mapping hands them to the function."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:trigger",
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


@dataclass
class Scenario:
    queue_url: str
    argv: list[str]
    first: tuple[int, str]
    second: tuple[int, str]
    first_messages: list[dict[str, Any]]
    second_messages: list[dict[str, Any]]
    expected: set[str]
    batches_before_crash: int
    config: Path
    extra: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def scenario(moto_module: Moto, trail: list, tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    """Backfill February 2024, crash after half the batches (SQS refusing), resume."""
    work = tmp_path_factory.mktemp("backfill")
    queue_url = moto_module.client("sqs").create_queue(QueueName="trigger")["QueueUrl"]
    expected = expected_keys(trail, SINCE, UNTIL)
    argv = [
        "backfill",
        f"s3://{BUCKET}/AWSLogs/",
        "--since",
        SINCE.isoformat(),
        "--until",
        UNTIL.isoformat(),
        "--queue",
        queue_url,
        "--checkpoint",
        str(work / "checkpoint.jsonl"),
        "--no-wait",
    ]
    real = backfill.send_batch
    half = len(expected) // backfill.BATCH // 2
    calls = 0

    async def crashing(sqs: Any, url: str, bodies: list[str]) -> None:
        nonlocal calls
        calls += 1
        if calls > half:
            raise BackfillError("injected: SQS refuses from here on")
        await real(sqs, url, bodies)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backfill, "send_batch", crashing)
        *first, first_messages = consumed(moto_module, queue_url, argv)
    # Resumed naming seven files a message: fewer calls, the same keys.
    *second, second_messages = consumed(moto_module, queue_url, [*argv, "--files-per-message", "7"])
    config = work / "tattletail.toml"
    config.write_text(RULES)
    return Scenario(
        queue_url,
        argv,
        (first[0], first[1]),
        (second[0], second[1]),
        first_messages,
        second_messages,
        expected,
        half,
        config,
    )


def test_a_message_of_long_keys_is_split_under_sqs_size_limit() -> None:
    items = [Listed("AWSLogs/" + "é" * 1000 + f"/{n}.json.gz", 1, "e") for n in range(100)]

    messages = backfill._messages("b", items, {"backfill": "r"}, "now", 100)
    batches = list(backfill._batches(messages))

    assert [item for chunk, _ in messages for item in chunk] == items
    assert all(len(body.encode()) <= backfill.MAX_BATCH_BYTES for _, body in messages)
    assert all(
        len(bodies) <= backfill.BATCH
        and sum(len(b.encode()) for b in bodies) <= backfill.MAX_BATCH_BYTES
        for _, bodies in batches
    )
    assert [item for batch_items, _ in batches for item in batch_items] == items


def test_a_crash_halfway_then_a_resume_enqueues_every_key_in_range_once_and_none_outside(
    scenario: Scenario,
) -> None:
    code, err = scenario.first
    assert code == 1 and "injected" in err and "rerun the same command" in err
    assert scenario.second[0] == 0, scenario.second[1]
    first, second = keys_of(scenario.first_messages), keys_of(scenario.second_messages)

    # About half before the crash (units end in partial batches), the rest after it.
    assert 0 < len(first) <= scenario.batches_before_crash * backfill.BATCH
    assert len(first) >= len(scenario.expected) // 4
    enqueued = Counter(first + second)
    assert set(enqueued) == scenario.expected
    assert max(enqueued.values()) == 1
    assert 600 < len(scenario.expected) < 1200  # a twelfth of 10,000 keys


def test_both_runs_carry_the_same_backfill_id_and_real_notification_fields(
    scenario: Scenario,
) -> None:
    bodies = [json.loads(m["Body"]) for m in scenario.first_messages + scenario.second_messages]
    assert len({body["tattletail"]["backfill"] for body in bodies}) == 1
    assert all("destinations" not in body["tattletail"] for body in bodies)
    record = bodies[0]["Records"][0]
    assert record["eventSource"] == "aws:s3" and record["eventName"].startswith("ObjectCreated")
    assert record["s3"]["object"]["size"] > 0


def test_a_rerun_after_it_finished_enqueues_nothing(scenario: Scenario, moto_module: Moto) -> None:
    code, err, messages = consumed(moto_module, scenario.queue_url, scenario.argv)

    assert code == 0
    assert f"0 log files enqueued ({len(scenario.expected):,} by earlier runs)" in err
    assert messages == []


def alert_key(alert: dict[str, Any]) -> tuple[Any, ...]:
    return (
        alert["name"],
        alert["record"]["eventID"],
        alert["source"],
        alert.get("account"),
        alert.get("region"),
        json.dumps(alert["match"]),
    )


def test_the_function_over_the_queues_messages_alerts_as_a_local_scan_of_the_range(
    scenario: Scenario,
    moto_module: Moto,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TATTLETAIL_CONFIG", str(scenario.config))
    # Every alert one by one: seventy files an invocation would trip flood control.
    monkeypatch.setenv("TATTLETAIL_FLOOD_THRESHOLD", "100000")
    lambda_handler.shutdown()
    messages = scenario.first_messages + scenario.second_messages
    capfd.readouterr()
    try:
        for start in range(0, len(messages), 10):
            response = lambda_handler.handler(
                sqs_event(messages[start : start + 10]), LambdaContext()
            )
            assert response == {"batchItemFailures": []}
    finally:
        lambda_handler.shutdown()
    from_function = [orjson.loads(line) for line in capfd.readouterr().out.splitlines()]

    code = main(
        [
            "scan",
            "--dry-run",
            "--config",
            str(scenario.config),
            f"s3://{BUCKET}/AWSLogs/",
            "--since",
            SINCE.isoformat(),
            "--until",
            UNTIL.isoformat(),
        ]
    )
    captured = capfd.readouterr()
    from_scan = [orjson.loads(line) for line in captured.out.splitlines()]

    assert code == 0, captured.err
    assert f"{len(scenario.expected)} objects" in captured.err
    assert sorted(map(alert_key, from_function)) == sorted(map(alert_key, from_scan))
    # The reference: each in-range file holds one record; CreateUser anywhere, ConsoleLogin in
    # eu-west-1.
    reference = 0
    for item in (o for o in _objects(moto_module) if o.key in scenario.expected):
        record = record_for(item)
        reference += record["eventName"] == "CreateUser" or (
            record["eventName"] == "ConsoleLogin" and record["awsRegion"] == "eu-west-1"
        )
    assert len(from_function) == reference > 50
    assert all(a["account"] and a["region"] for a in from_function)
    creates = [a for a in from_function if a["name"] == "Create User"]
    assert creates and all(
        a["match"] == f"user: {a['record']['responseElements']['user']['userName']}"
        for a in creates
    )


def _objects(moto: Moto) -> list:
    return generate(10_000, 20, FIRST, LAST)


# -- crash points at random, on a small bucket ----------------------------------------------

SMALL = "small-trail"


@pytest.fixture(scope="module")
def small_trail(moto_module: Moto) -> list:
    objects = generate(400, 3, date(2024, 5, 1), date(2024, 5, 31))
    load(moto_module, SMALL, objects)
    return objects


@pytest.fixture(scope="module")
def runner(moto_module: Moto) -> Iterator[tuple[asyncio.Runner, Any]]:
    with s3_on_one_loop(moto_module) as pair:
        yield pair


class Killed(BaseException):
    """The process dies: nothing after it runs (not even a finally that writes)."""


class RecordingQueue:
    """SQS for a pure unit of the enqueue loop: keeps what it accepted, and at a chosen call
    either refuses (SQS says no: the run stops cleanly) or accepts and then the process dies
    while the response is on its way (the worst moment for a crash)."""

    def __init__(self, crash_at: int | None, mode: str) -> None:
        self.accepted: list[list[str]] = []
        self.calls = 0
        self.crash_at = crash_at
        self.mode = mode

    async def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        self.calls += 1
        crash = self.calls == self.crash_at
        if crash and self.mode == "refused":
            failed = [{"Id": e["Id"], "SenderFault": True, "Code": "Refused"} for e in Entries]
            return {"Successful": [], "Failed": failed}
        keys = [
            ref.key for e in Entries for ref in open_envelope(orjson.loads(e["MessageBody"])).refs
        ]
        self.accepted.append(keys)
        await asyncio.sleep(0)  # the response travels: other calls run meanwhile
        if crash:
            raise Killed
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def small_job(queue: str = "queue") -> Job:
    return Job(SMALL, "AWSLogs/", "2024-05-01", "2024-05-31", queue)


async def run_enqueue(
    s3: Any, location: str, queue: RecordingQueue, concurrency: int, per_message: int = 1
) -> None:
    job = small_job()
    checkpoint = await open_checkpoint(location, job, "run", s3)
    lister = TrailLister(s3, SMALL, "AWSLogs/", TimeRange.parse(job.since, job.until))
    try:
        await enqueue(
            lister,
            queue,
            "queue",
            checkpoint,
            BackfillStats(),
            None,
            concurrency,
            None,
            per_message,
        )
    except Killed:
        # The process is gone: none of its tasks runs again, nothing more is written.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        raise
    except BackfillError:
        await checkpoint.close()
        raise
    await checkpoint.close()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    crash_at=st.integers(min_value=1, max_value=45),
    mode=st.sampled_from(["refused", "killed"]),
    concurrency=st.integers(min_value=1, max_value=6),
    store=st.sampled_from(["local", "s3"]),
    per_message=st.sampled_from([1, 3, 10]),
)
def test_a_resume_after_a_crash_at_any_point_misses_nothing_and_repeats_only_what_was_in_flight(
    runner: tuple[asyncio.Runner, Any],
    small_trail: list,
    tmp_path_factory: pytest.TempPathFactory,
    crash_at: int,
    mode: str,
    concurrency: int,
    store: str,
    per_message: int,
) -> None:
    loop, s3 = runner
    expected = expected_keys(small_trail, date(2024, 5, 1), date(2024, 5, 31))
    if store == "local":
        location = str(tmp_path_factory.mktemp("crash") / "checkpoint.jsonl")
    else:
        location = f"s3://{SMALL}/checkpoints/{uuid.uuid4().hex}.jsonl"
    crashing = RecordingQueue(crash_at, mode)

    try:
        loop.run(run_enqueue(s3, location, crashing, concurrency, per_message))
        crashed = False
    except (BackfillError, Killed):
        crashed = True
    assert crashed == (crashing.calls >= crash_at)  # fewer calls than crash_at: no crash
    resumed = RecordingQueue(None, mode)
    loop.run(run_enqueue(s3, location, resumed, concurrency, per_message))

    before = [key for batch in crashing.accepted for key in batch]
    after = [key for batch in resumed.accepted for key in batch]
    assert set(before + after) == expected  # none missed
    repeated = Counter(before + after) - Counter(set(before + after))
    if mode == "refused" or crash_at > len(crashing.accepted):
        # A refusal stops the run cleanly: the calls in flight finish and are recorded.
        assert not repeated
    elif store == "local":
        # Killed: only the calls SQS accepted while the process died come again.
        assert sum(repeated.values()) <= concurrency * backfill.BATCH * per_message
    # (An s3:// checkpoint is written every few seconds: a killed run repeats those seconds.)
    assert max(Counter(after).values(), default=1) == 1


# -- routing and deduplication ------------------------------------------------------------


def create_table(moto: Moto, name: str, key: str) -> None:
    moto.client("dynamodb").create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )


ROUTED = """
[[rule]]
name = "Create User"
jq_match = 'select(.eventName == "CreateUser")'
description = "A new IAM user"
destinations = ["Pager"]

[[destination]]
id = "Pager"
type = "sqs"
queue_url = "{pager}"

[[destination]]
id = "Replay"
type = "sqs"
queue_url = "{replay}"
"""


def test_destinations_route_a_replay_and_the_dedupe_table_keeps_a_second_one_silent(
    moto_module: Moto,
    small_trail: list,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sqs = moto_module.client("sqs")
    urls = {n: sqs.create_queue(QueueName=f"routed-{n}")["QueueUrl"] for n in ("t", "p", "r")}
    create_table(moto_module, "routed-dedupe", "alert_id")
    config = tmp_path / "tattletail.toml"
    config.write_text(ROUTED.format(pager=urls["p"], replay=urls["r"]))
    monkeypatch.setenv("TATTLETAIL_CONFIG", str(config))
    monkeypatch.setenv("TATTLETAIL_DEDUPE_TABLE", "routed-dedupe")

    def replay(checkpoint: str) -> tuple[int, dict[str, int]]:
        code, err, messages = consumed(
            moto_module,
            urls["t"],
            [
                "backfill",
                f"s3://{SMALL}/AWSLogs/",
                "--since",
                "2024-05-10",
                "--until",
                "2024-05-14",
                "--queue",
                urls["t"],
                "--destinations",
                "Replay",
                "--config",
                str(config),
                "--checkpoint",
                str(tmp_path / checkpoint),
                "--no-wait",
            ],
        )
        assert code == 0, err
        lambda_handler.shutdown()
        try:
            for start in range(0, len(messages), 10):
                event = sqs_event(messages[start : start + 10])
                assert lambda_handler.handler(event, LambdaContext()) == {"batchItemFailures": []}
        finally:
            lambda_handler.shutdown()
        received = {}
        for name in ("p", "r"):
            with Fleet(moto_module, urls[name]) as fleet:
                pass
            received[name] = len(fleet.messages)
        return len(messages), received

    first_messages, first = replay("first.jsonl")
    second_messages, second = replay("second.jsonl")

    creates = sum(
        record_for(o)["eventName"] == "CreateUser"
        for o in small_trail
        if o.key in expected_keys(small_trail, date(2024, 5, 10), date(2024, 5, 14))
    )
    assert first_messages == second_messages > 0
    assert first == {"p": 0, "r": creates} and creates > 3
    # The second replay evaluates every file again and sends nothing: the table remembers.
    assert second == {"p": 0, "r": 0}


def test_a_message_routing_to_a_destination_the_config_lacks_comes_back(
    moto_module: Moto,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "tattletail.toml"
    config.write_text(RULES)
    monkeypatch.setenv("TATTLETAIL_CONFIG", str(config))
    notification = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": SMALL}, "object": {"key": "AWSLogs/x.json.gz"}},
            }
        ]
    }
    unknown = {**notification, "tattletail": {"destinations": ["Nowhere"]}}
    malformed = {**notification, "tattletail": {"destinations": "Out"}}
    messages = [
        {"MessageId": name, "ReceiptHandle": "h", "Body": json.dumps(body), "MD5OfBody": "0"}
        for name, body in (("unknown", unknown), ("malformed", malformed))
    ]
    lambda_handler.shutdown()
    capfd.readouterr()
    try:
        response = lambda_handler.handler(sqs_event(messages), LambdaContext())
    finally:
        lambda_handler.shutdown()
    err = capfd.readouterr().err

    assert response == {
        "batchItemFailures": [{"itemIdentifier": "malformed"}, {"itemIdentifier": "unknown"}]
    }
    assert "unknown_destination" in err and "Nowhere" in err
    assert "message_rejected" in err


# -- the command's errors and the queue watch --------------------------------------------------


def test_a_checkpoint_written_for_another_job_is_refused_naming_it(
    moto_module: Moto, small_trail: list, tmp_path: Path
) -> None:
    queue = moto_module.client("sqs").create_queue(QueueName="other-job")["QueueUrl"]
    checkpoint = str(tmp_path / "cp.jsonl")
    base = ["backfill", f"s3://{SMALL}/AWSLogs/", "--queue", queue, "--checkpoint", checkpoint]
    first = run_cli([*base, "--since", "2024-05-01", "--until", "2024-05-02", "--no-wait"])
    other = run_cli([*base, "--since", "2024-05-01", "--until", "2024-05-03", "--no-wait"])

    assert first[0] == 0
    assert other[0] == 1
    assert "from 2024-05-01 to 2024-05-02" in other[1] and "another --checkpoint" in other[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "2024-05-02", "--until", "2024-05-01"], "is after"),
        (["--since", "2024-05-01", "--until", "2024-05-02", "--concurrency", "0"], "--concurrency"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    moto_module: Moto, small_trail: list, args: list[str], message: str
) -> None:
    code, err = run_cli(["backfill", f"s3://{SMALL}/AWSLogs/", "--queue", "q", *args])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_a_prefix_outside_the_layout_or_an_unknown_destination_exits_2(
    moto_module: Moto, small_trail: list, tmp_path: Path
) -> None:
    config = tmp_path / "tattletail.toml"
    config.write_text(RULES)
    range_args = ["--since", "2024-05-01", "--until", "2024-05-02", "--queue", "q", "--no-wait"]
    outside = run_cli(["backfill", f"s3://{SMALL}/AWSLogs/123456789012/vpcflowlogs/", *range_args])
    unknown = run_cli(
        [
            "backfill",
            f"s3://{SMALL}/AWSLogs/",
            *range_args,
            "--destinations",
            "Nope",
            "out",
            "--config",
            str(config),
        ]
    )
    assert outside[0] == 2 and "layout" in outside[1]
    assert unknown[0] == 2 and len(unknown[1].strip().splitlines()) == 1
    # Each unknown id named, a near miss with the id it was probably meant to be.
    assert "defines no Nope, out (did you mean 'Out'?)" in unknown[1]


def test_the_queue_is_watched_until_it_is_empty_twice(moto_module: Moto) -> None:
    sqs = moto_module.client("sqs")
    url = sqs.create_queue(QueueName="draining")["QueueUrl"]
    for start in range(0, 25, 10):
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(n), "MessageBody": "{}"} for n in range(start, min(start + 10, 25))
            ],
        )
    seen: list[int] = []

    async def fleet_works(_seconds: float) -> None:
        """Instead of waiting: the function takes ten messages and finishes them."""
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        for message in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    async def watch() -> bool:
        aws = AwsClients(moto_module.endpoint)
        try:
            client = await aws.client("sqs")
            return await wait_drained(
                client, url, lambda d: seen.append(d.total), sleep=fleet_works
            )
        finally:
            await aws.close()

    assert asyncio.run(watch()) is True
    assert seen == [25, 15, 5, 0, 0]


def test_the_default_checkpoint_is_named_after_bucket_prefix_and_range() -> None:
    job = Job("trail", "org/AWSLogs/o-abc/", "2024-01-01", "2024-03-31", "q")
    assert default_location(job) == (
        "tattletail-backfill-trail-org_AWSLogs_o-abc-2024-01-01-2024-03-31.checkpoint"
    )
    long = Job("trail", "ü/" * 90, "2024-01-01", "2024-01-02", "q")
    name = default_location(long)
    assert len(name) < 150 and "/" not in name and name.isascii()


STATEFUL = """
[[rule]]
name = "Two new users"
jq_match = 'select(.eventName == "CreateUser")'
description = "two users within an hour"
destinations = ["Pager"]
threshold = {{ count = 2, window = "1h" }}

[[destination]]
id = "Pager"
type = "sqs"
queue_url = "{pager}"

[[destination]]
id = "Replay"
type = "sqs"
queue_url = "{replay}"
"""


def test_a_replays_routing_applies_to_the_alerts_of_rules_with_memory(
    moto_module: Moto, small_trail: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqs = moto_module.client("sqs")
    urls = {n: sqs.create_queue(QueueName=f"stateful-{n}")["QueueUrl"] for n in ("p", "r")}
    create_table(moto_module, "stateful-state", "pk")
    config = tmp_path / "tattletail.toml"
    config.write_text(STATEFUL.format(pager=urls["p"], replay=urls["r"]))
    monkeypatch.setenv("TATTLETAIL_CONFIG", str(config))
    monkeypatch.setenv("TATTLETAIL_STATE_TABLE", "stateful-state")
    records = [
        {
            "eventVersion": "1.09",
            "eventID": f"two-users-{n}",
            "eventName": "CreateUser",
            "eventTime": f"2024-05-03T10:0{n}:00Z",
            "eventSource": "iam.amazonaws.com",
            "userIdentity": {"arn": "arn:aws:iam::100000000000:user/admin"},
        }
        for n in range(2)
    ]
    key = "AWSLogs/100000000000/CloudTrail/us-east-1/2024/05/03/two-users.json.gz"
    moto_module.client("s3").put_object(
        Bucket=SMALL, Key=key, Body=gzip.compress(orjson.dumps({"Records": records}))
    )
    body = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": SMALL}, "object": {"key": key}},
            }
        ],
        "tattletail": {"backfill": "run", "destinations": ["Replay"]},
    }
    message = {"MessageId": "m", "ReceiptHandle": "h", "Body": json.dumps(body), "MD5OfBody": "0"}
    lambda_handler.shutdown()
    try:
        response = lambda_handler.handler(sqs_event([message]), LambdaContext())
    finally:
        lambda_handler.shutdown()

    assert response == {"batchItemFailures": []}
    with Fleet(moto_module, urls["p"]) as pager, Fleet(moto_module, urls["r"]) as replay:
        pass
    assert pager.messages == []
    [alert] = [json.loads(m["Body"]) for m in replay.messages]
    assert alert["name"] == "Two new users"
