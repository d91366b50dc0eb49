"""Rules with memory through the Lambda handler, over real protocols: log files in moto's S3,
state in moto's DynamoDB (reached over HTTP by the same aioboto3 code as in Lambda), alerts to
a local webhook receiver. Concurrent invocations are separate OS processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import tattletail
from tattletail import lambda_handler
from tests.destinations.http_stand_in import HttpStandIn, Reply
from tests.lambda_support import BUCKET, LambdaContext, s3_event
from tests.state.state_support import STATE_TABLE, create_state_table
from tests.support import Moto, gzipped

T0 = "2023-07-10T12:00:00Z"


def record(n: int, at: str, name: str = "ListUsers", who: str = "alice", **extra: Any) -> dict:
    return {
        "eventVersion": "1.08",
        "eventID": f"event-{n:05}",
        "eventTime": at,
        "eventName": name,
        "eventSource": "iam.amazonaws.com",
        "userIdentity": {"type": "IAMUser", "arn": f"arn:aws:iam::123456789012:user/{who}"},
        "sourceIPAddress": "198.51.100.7",
        **extra,
    }


def minute(m: float, hour: int = 12) -> str:
    return f"2023-07-10T{hour:02}:{int(m):02}:{int(m * 60) % 60:02}Z"


class World:
    """A trail bucket, a state table, a webhook receiver and the handler's bundled config."""

    def __init__(self, moto: Moto, receiver: HttpStandIn, config_path: Path) -> None:
        self.moto = moto
        self.receiver = receiver
        self.config_path = config_path
        moto.client("s3").create_bucket(Bucket=BUCKET)
        create_state_table(moto)

    def configure(self, rules: str) -> None:
        self.config_path.write_text(
            rules
            + f"""
[[destination]]
id = "Hook"
type = "webhook"
url = "{self.receiver.url()}"
rate_limit = 1000
"""
        )

    def put(self, key: str, records: list[dict[str, Any]]) -> str:
        body = gzipped(orjson.dumps({"Records": records}))
        self.moto.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)
        return key

    def invoke(self, *keys: str, request: str = "req") -> dict[str, Any]:
        return lambda_handler.handler(s3_event(BUCKET, *keys), LambdaContext(request))

    def alerts(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.receiver.received() if r.status == 200]


def base_env(config_path: Path) -> dict[str, str]:
    return {
        "TATTLETAIL_CONFIG": str(config_path),
        "TATTLETAIL_WORKERS": "1",
        "TATTLETAIL_METRICS": "false",
        "TATTLETAIL_RETRY_BASE": "0.01",
        "TATTLETAIL_RETRY_CAP": "0.05",
        "TATTLETAIL_STATE_TABLE": STATE_TABLE,
    }


def child_env(world: World) -> dict[str, str]:
    """The environment of a handler process of its own, importing the package under test."""
    package_root = str(Path(tattletail.__file__).resolve().parents[1])
    return {
        **os.environ,
        **base_env(world.config_path),
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
    }


@pytest.fixture
def world(moto: Moto, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[World]:
    lambda_handler.shutdown()
    for name, value in base_env(tmp_path / "tattletail.toml").items():
        monkeypatch.setenv(name, value)
    for name in ("S3_CONFIG_BUCKET", "S3_CONFIG_PATH", "TATTLETAIL_DEDUPE_TABLE"):
        monkeypatch.delenv(name, raising=False)
    with HttpStandIn.running(Reply(200, body="ok")) as receiver:
        yield World(moto, receiver, tmp_path / "tattletail.toml")
        lambda_handler.shutdown()


THRESHOLD_RULE = """
[[rule]]
name = "List burst"
jq_match = 'select(.eventName | startswith("List")) | "\\(.eventName) by \\(.userIdentity.arn)"'
threshold = { count = 3, window = "10m", group_by = ".userIdentity.arn" }
destinations = ["Hook"]
"""


def test_a_threshold_alerts_once_on_the_file_that_brings_the_count_to_exactly_count(
    world: World,
) -> None:
    world.configure(THRESHOLD_RULE)
    first = world.put("AWSLogs/1.json.gz", [record(1, minute(0)), record(2, minute(1))])
    second = world.put("AWSLogs/2.json.gz", [record(3, minute(2)), record(4, minute(3))])
    third = world.put("AWSLogs/3.json.gz", [record(5, minute(4))])

    assert world.invoke(first)["stateful_alerts"] == 0
    assert world.alerts() == []
    result = world.invoke(second)
    assert result["stateful_alerts"] == 1
    world.invoke(third)

    [alert] = world.alerts()
    assert alert["name"] == "List burst"
    assert alert["record"]["eventID"] == "event-00003"
    threshold = alert["threshold"]
    assert threshold["count"] == 3
    assert (threshold["first_event_id"], threshold["last_event_id"]) == (
        "event-00001",
        "event-00003",
    )
    assert threshold["group"] == "arn:aws:iam::123456789012:user/alice"
    assert (threshold["window_start"], threshold["window_end"]) == (T0, minute(10))
    assert alert["match"]["match"] == "ListUsers by arn:aws:iam::123456789012:user/alice"
    assert result["state_calls"]["BatchGetItem"] == 1


def test_records_in_the_next_window_start_counting_again(world: World) -> None:
    world.configure(THRESHOLD_RULE)
    key = world.put(
        "AWSLogs/edge.json.gz",
        [record(1, minute(8)), record(2, "2023-07-10T12:09:59Z"), record(3, minute(10))],
    )
    world.invoke(key)
    assert world.alerts() == []
    world.invoke(world.put("AWSLogs/more.json.gz", [record(4, minute(11)), record(5, minute(12))]))
    [alert] = world.alerts()
    assert alert["threshold"]["window_start"] == minute(10)


def test_a_retried_invocation_counts_nothing_twice(world: World) -> None:
    """The first attempt fails after its file was counted (another object of the event is
    missing): the retry counts the file again, which must change nothing."""
    world.configure(THRESHOLD_RULE)
    two = world.put("AWSLogs/two.json.gz", [record(1, minute(0)), record(2, minute(1))])
    for attempt in range(3):
        with pytest.raises(lambda_handler.ObjectsFailed):
            world.invoke(two, "AWSLogs/missing.json.gz", request=f"attempt-{attempt}")
    assert world.alerts() == []

    world.invoke(world.put("AWSLogs/one.json.gz", [record(3, minute(2))]))
    [alert] = world.alerts()
    assert alert["threshold"]["count"] == 3


def test_an_alert_whose_delivery_failed_is_sent_by_the_retry_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TATTLETAIL_SEND_RETRIES", "0")
    world.configure(THRESHOLD_RULE)
    key = world.put("AWSLogs/burst.json.gz", [record(n, minute(n)) for n in range(5)])
    world.receiver.reply_next(500)

    with pytest.raises(Exception, match="alert deliveries failed"):
        world.invoke(key, request="first")
    assert [r.status for r in world.receiver.received()] == [500]

    world.invoke(key, request="retry")
    world.invoke(key, request="duplicate notification")
    assert [r.status for r in world.receiver.received()] == [500, 200]
    [alert] = world.alerts()
    assert alert["threshold"]["count"] == 3


# A rule without memory beside it: its alerts must go out whatever happens to the state.
EVERY_LIST_RULE = """
[[rule]]
name = "Every List"
jq_match = 'select(.eventName == "ListUsers")'
destinations = ["Hook"]
"""

DEDUP_RULE = """
[[rule]]
name = "Denied"
jq_match = 'select(.errorCode == "AccessDenied") | .eventName'
dedup = { key = '"\\(.userIdentity.arn) \\(.eventName)"', period = "1h" }
destinations = ["Hook"]
"""


def test_dedup_holds_repeats_within_the_period_and_reports_them_after_it(world: World) -> None:
    world.configure(DEDUP_RULE)
    denied = {"errorCode": "AccessDenied"}
    world.invoke(world.put("AWSLogs/a.json.gz", [record(n, minute(n), **denied) for n in range(5)]))
    result = world.invoke(
        world.put("AWSLogs/b.json.gz", [record(n, minute(n), **denied) for n in range(10, 13)])
    )
    assert result["state_held"] == 3
    assert [a["record"]["eventID"] for a in world.alerts()] == ["event-00000"]

    world.invoke(world.put("AWSLogs/c.json.gz", [record(20, minute(5, hour=13), **denied)]))
    alerts = world.alerts()
    assert [a["record"]["eventID"] for a in alerts] == ["event-00000", "event-00020"]
    dedup = alerts[1]["dedup"]
    assert dedup["held_before"] == 7
    assert dedup["previous_alert_event_id"] == "event-00000"
    assert alerts[1]["match"] == "ListUsers"


SEQUENCE_RULES = """
[[rule]]
name = "Access key created"
jq_match = 'select(.eventName == "CreateAccessKey")'
alert = false

[[rule]]
name = "Policy attached"
jq_match = 'select(.eventName == "AttachUserPolicy")'
alert = false

[[rule]]
name = "Key then policy"
destinations = ["Hook"]

[rule.sequence]
steps = ["Access key created", "Policy attached"]
within = "15m"
group_by = ".userIdentity.arn"
"""


def test_a_sequence_out_of_order_is_not_one_and_a_late_first_step_completes_one(
    world: World,
) -> None:
    world.configure(SEQUENCE_RULES)
    # bob: the policy first, then the key: not the sequence.
    for key, records in [
        ("AWSLogs/b1.json.gz", [record(1, minute(0), "AttachUserPolicy", "bob")]),
        ("AWSLogs/b2.json.gz", [record(2, minute(5), "CreateAccessKey", "bob")]),
    ]:
        world.invoke(world.put(key, records))
    assert world.alerts() == []
    # carol: in order, but the file with the first step is delivered last.
    for key, records in [
        ("AWSLogs/c2.json.gz", [record(4, minute(9), "AttachUserPolicy", "carol")]),
        ("AWSLogs/c1.json.gz", [record(3, minute(2), "CreateAccessKey", "carol")]),
    ]:
        world.invoke(world.put(key, records))
    [alert] = world.alerts()
    assert alert["name"] == "Key then policy"
    steps = alert["sequence"]["steps"]
    assert [(s["rule"], s["event_id"]) for s in steps] == [
        ("Access key created", "event-00003"),
        ("Policy attached", "event-00004"),
    ]


def test_the_state_table_unavailable_fails_the_objects_loudly_and_loses_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TATTLETAIL_STATE_TABLE", "no-such-table")
    world.configure(THRESHOLD_RULE + EVERY_LIST_RULE)
    stateful = world.put("AWSLogs/stateful.json.gz", [record(n, minute(n)) for n in range(3)])
    quiet = world.put("AWSLogs/quiet.json.gz", [record(9, minute(1), "GetUser")])

    with pytest.raises(lambda_handler.ObjectsFailed) as raised:
        world.invoke(stateful, quiet)

    assert str(raised.value).startswith("1 of 2 objects failed")
    assert "stateful.json.gz" in str(raised.value) and "quiet" not in str(raised.value)
    # The stateless rule's alerts went out all the same.
    assert [a["name"] for a in world.alerts()] == ["Every List"] * 3
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if '"event"' in line]
    [failed] = [line for line in lines if line["event"] == "object_failed"]
    assert failed["reason"] == "state_unavailable"
    assert "no-such-table" in failed["error"] and "ResourceNotFoundException" in failed["error"]

    # Once the table is back, the retried object alerts (once).
    monkeypatch.setenv("TATTLETAIL_STATE_TABLE", STATE_TABLE)
    lambda_handler.shutdown()
    world.invoke(stateful, quiet)
    assert [a["name"] for a in world.alerts()].count("List burst") == 1


def test_rules_with_memory_without_a_state_table_fail_their_files_and_say_why(
    world: World, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TATTLETAIL_STATE_TABLE")
    world.configure(THRESHOLD_RULE + EVERY_LIST_RULE)
    key = world.put("AWSLogs/x.json.gz", [record(1, minute(0))])
    with pytest.raises(lambda_handler.ObjectsFailed):
        world.invoke(key)
    assert [a["name"] for a in world.alerts()] == ["Every List"]
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if '"event"' in line]
    [missing] = [line for line in lines if line["event"] == "state_table_missing"]
    assert "'List burst'" in missing["error"] and "TATTLETAIL_STATE_TABLE" in missing["error"]
    [failed] = [line for line in lines if line["event"] == "object_failed"]
    assert failed["reason"] == "state_unavailable" and "need a state table" in failed["error"]


# -- two processes at the same time -----------------------------------------------------------

CHILD = textwrap.dedent(
    """\
    import json, os, sys, time
    from pathlib import Path


    class Context:
        aws_request_id = "child"
        function_name = "tattletail"

        def get_remaining_time_in_millis(self):
            return 60_000


    def main():
        from tattletail import lambda_handler  # the cold start happens here (EAGER_INIT)

        directory = Path(sys.argv[1])
        events = json.loads(sys.argv[2])
        (directory / f"ready-{os.getpid()}").touch()
        results = []
        for round_number, event in enumerate(events):
            go = directory / f"go-{round_number}"
            while not go.exists():
                time.sleep(0.005)
            results.append(lambda_handler.handler(event, Context()))
        lambda_handler.shutdown()
        print("RESULT " + json.dumps(results), flush=True)


    if __name__ == "__main__":
        main()
    """
)


def test_two_processes_counting_one_group_at_the_same_time_send_exactly_one_alert(
    world: World, tmp_path: Path
) -> None:
    """Each round, two handler processes get a file each, released at the same instant: two
    matches of one group each, with count = 3, so only both together cross the threshold."""
    world.configure(THRESHOLD_RULE)
    rounds = 4
    events: list[list[dict[str, Any]]] = [[], []]
    for round_number in range(rounds):
        who = f"group-{round_number}"
        for side in (0, 1):
            n = 10 * round_number + 2 * side
            key = world.put(
                f"AWSLogs/r{round_number}-{side}.json.gz",
                [record(n, minute(n % 10), who=who), record(n + 1, minute(n % 10), who=who)],
            )
            events[side].append(s3_event(BUCKET, key))
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**child_env(world), "TATTLETAIL_EAGER_INIT": "1"}
    children = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path), json.dumps(events[side])],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for side in (0, 1)
    ]
    try:
        waited = time.monotonic()
        while len(list(tmp_path.glob("ready-*"))) < 2:
            assert all(child.poll() is None for child in children), "a child exited early"
            assert time.monotonic() - waited < 120
            time.sleep(0.01)
        for round_number in range(rounds):
            (tmp_path / f"go-{round_number}").touch()
            expected = round_number + 1
            while len(world.alerts()) < expected and time.monotonic() - waited < 120:
                time.sleep(0.01)
        outputs = [child.communicate(timeout=120) for child in children]
    finally:
        for child in children:
            child.kill()
    for child, (_, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
    results = [json.loads(out.split("RESULT ", 1)[1]) for out, _ in outputs]

    alerts = world.alerts()
    groups = sorted(a["threshold"]["group"].rsplit("/", 1)[1] for a in alerts)
    assert groups == [f"group-{n}" for n in range(rounds)]
    assert all(a["threshold"]["count"] == 3 for a in alerts)
    sent = [sum(r[n]["stateful_alerts"] for r in results) for n in range(rounds)]
    assert sent == [1] * rounds


KILLED_CHILD = textwrap.dedent(
    """\
    import json, os, signal, sys


    class Context:
        aws_request_id = "killed"
        function_name = "tattletail"

        def get_remaining_time_in_millis(self):
            return 3_000  # its claims outlive it by at most this plus the 5 s margin


    def main():
        from tattletail import dispatch, lambda_handler

        # The crash under test: the process dies once the state write has decided (and
        # claimed) an alert, before anything is sent.
        def die(self, alerts):
            if any(alert.aggregate is not None for alert in alerts):
                os.kill(os.getpid(), signal.SIGKILL)
            return original(self, alerts)

        original = dispatch.Dispatcher.deliver_all
        dispatch.Dispatcher.deliver_all = die
        lambda_handler.handler(json.loads(sys.argv[1]), Context())


    if __name__ == "__main__":
        main()
    """
)


def test_an_invocation_killed_after_deciding_an_alert_has_it_sent_by_its_retry_once(
    world: World, tmp_path: Path
) -> None:
    world.configure(THRESHOLD_RULE)
    key = world.put("AWSLogs/burst.json.gz", [record(n, minute(n)) for n in range(4)])
    script = tmp_path / "killed.py"
    script.write_text(KILLED_CHILD)
    env = child_env(world)
    # Its 3 s left are inside the default deadline margin: let it evaluate anyway.
    env["TATTLETAIL_DEADLINE_MARGIN"] = "0.5"
    child = subprocess.run(
        [sys.executable, str(script), json.dumps(s3_event(BUCKET, key))],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -9, child.stderr
    assert world.alerts() == []

    # Lambda retries the event: the retry finds the alert decided and claimed by an
    # invocation that is gone, waits for the claim to lapse, and sends it.
    result = world.invoke(key, request="retry")
    assert result["stateful_alerts"] == 1
    world.invoke(key, request="another retry")
    [alert] = world.alerts()
    assert alert["threshold"]["count"] == 3 and alert["record"]["eventID"] == "event-00002"
