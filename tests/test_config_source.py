"""The S3 config: loaded once per container, re-checked by ETag at most once per TTL, and a
broken new config never replaces the running one."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from tattletail import config_source, lambda_handler
from tests.lambda_support import (
    BUCKET,
    CONFIG_BUCKET,
    SEED_KEY,
    LambdaContext,
    put_seed_log,
    s3_event,
    stdout_config,
)
from tests.support import Moto

CREATE_USER = 'select(.eventName == "CreateUser") | "username: \\(.responseElements.user.userName)"'
CREATE_USER_V2 = 'select(.eventName == "CreateUser") | "v2 \\(.responseElements.user.userName)"'


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(config_source.time, "monotonic", fake)
    return fake


@pytest.fixture
def s3_config(moto: Moto, monkeypatch: pytest.MonkeyPatch) -> Iterator[Moto]:
    put_seed_log(moto)
    moto.client("s3").create_bucket(Bucket=CONFIG_BUCKET)
    monkeypatch.setenv("S3_CONFIG_BUCKET", CONFIG_BUCKET)
    monkeypatch.setenv("S3_CONFIG_PATH", "tattletail.toml")
    monkeypatch.setenv("TATTLETAIL_CONFIG_TTL", "60")
    monkeypatch.setenv("TATTLETAIL_WORKERS", "1")
    monkeypatch.setenv("TATTLETAIL_METRICS", "false")
    lambda_handler.shutdown()
    yield moto
    lambda_handler.shutdown()


def upload(moto: Moto, text: str) -> None:
    moto.client("s3").put_object(Bucket=CONFIG_BUCKET, Key="tattletail.toml", Body=text.encode())


def invoke_and_read_alerts(capfd: pytest.CaptureFixture[str]) -> list[dict]:
    capfd.readouterr()
    lambda_handler.handler(s3_event(BUCKET, SEED_KEY), LambdaContext())
    out = capfd.readouterr().out
    return [orjson.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_broken_config_keeps_last_good_one_until_a_good_one_arrives(
    s3_config: Moto, clock: Clock, capfd: pytest.CaptureFixture[str]
) -> None:
    upload(s3_config, stdout_config(CREATE_USER))
    assert [a["match"] for a in invoke_and_read_alerts(capfd)] == ["username: user1"]

    upload(s3_config, "[[rule]]\nname = 'broken'\njq_match = 'select('\n")
    clock.now += 61
    capfd.readouterr()
    lambda_handler.handler(s3_event(BUCKET, SEED_KEY), LambdaContext())
    captured = capfd.readouterr()
    alerts = [orjson.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    assert [a["match"] for a in alerts] == ["username: user1"]
    failures = [
        orjson.loads(line) for line in captured.err.splitlines() if '"config_reload_failed"' in line
    ]
    assert len(failures) == 1
    assert "jq_match does not compile" in failures[0]["error"]

    # Checked again (and failing again) on the next TTL, still alerting with the old rules.
    clock.now += 61
    capfd.readouterr()
    lambda_handler.handler(s3_event(BUCKET, SEED_KEY), LambdaContext())
    captured = capfd.readouterr()
    assert captured.err.count('"config_reload_failed"') == 1
    assert '"username: user1"' in captured.out

    upload(s3_config, stdout_config(CREATE_USER_V2))
    clock.now += 61
    assert [a["match"] for a in invoke_and_read_alerts(capfd)] == ["v2 user1"]


def test_config_is_checked_at_most_once_per_ttl(
    s3_config: Moto, clock: Clock, capfd: pytest.CaptureFixture[str]
) -> None:
    upload(s3_config, stdout_config(CREATE_USER))
    invoke_and_read_alerts(capfd)
    watcher = lambda_handler._watcher
    assert watcher is not None and watcher.checks == 0

    upload(s3_config, stdout_config(CREATE_USER_V2))
    for _ in range(3):
        clock.now += 10
        # Within the TTL the new config is not even looked at.
        assert [a["match"] for a in invoke_and_read_alerts(capfd)] == ["username: user1"]
    assert watcher.checks == 0

    clock.now += 31
    assert [a["match"] for a in invoke_and_read_alerts(capfd)] == ["v2 user1"]
    assert watcher.checks == 1


async def test_unchanged_config_is_a_conditional_get_that_returns_nothing(
    s3_config: Moto, clock: Clock
) -> None:
    from tattletail.aws import AwsClients

    upload(s3_config, stdout_config(CREATE_USER))
    aws = AwsClients(s3_config.endpoint)
    try:
        s3 = await aws.client("s3")
        loaded, etag = await config_source.load_from_s3_with_etag(
            s3, CONFIG_BUCKET, "tattletail.toml"
        )
        assert etag and loaded.rules[0].name == "Create User"
        watcher = config_source.S3ConfigWatcher(CONFIG_BUCKET, "tattletail.toml", 60, etag)
        clock.now += 61
        assert await watcher.poll(s3) is None
        assert watcher.checks == 1 and watcher.etag == etag
    finally:
        await aws.close()
