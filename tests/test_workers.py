"""The worker pool: real spawned processes over pipes, a scrubbed environment, and a runaway
rule that costs its worker but not the rest of the evaluation."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator

import orjson
import pytest

from tattletail.objects import ObjectError
from tattletail.rules import RuleSource
from tattletail.worker_process import ENV_ALLOW_LIST
from tattletail.workers import WorkerPool
from tests.support import SEED_LOG

CREATE_USER = RuleSource(
    "Create User",
    'select(.eventName == "CreateUser") | "username: \\(.responseElements.user.userName)"',
)


def log_file(records: int) -> bytes:
    """A gzipped CloudTrail document with the seed log's records repeated."""
    seed = orjson.loads(SEED_LOG.read_bytes())["Records"]
    body = [dict(seed[n % len(seed)], eventID=f"id-{n}") for n in range(records)]
    return gzip.compress(orjson.dumps({"Records": body}), mtime=0)


@pytest.fixture
def secrets_in_environment(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    secrets = {
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI-secret",
        "AWS_SESSION_TOKEN": "session-token-secret",
        "SLACK_WEBHOOK": "https://hooks.slack.com/services/T/B/secret",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    return secrets


def start_pool(
    rules: list[RuleSource], batch_size: int = 1000, timeout: float = 30.0
) -> WorkerPool:
    pool = WorkerPool(rules, size=1, batch_size=batch_size, batch_timeout=timeout)
    pool.start()
    return pool


@pytest.fixture
def pools() -> Iterator[list[WorkerPool]]:
    started: list[WorkerPool] = []
    yield started
    for pool in started:
        pool.close()


async def test_rules_see_only_the_allow_listed_environment(
    secrets_in_environment: dict[str, str], pools: list[WorkerPool]
) -> None:
    pool = start_pool(
        [
            RuleSource("env keys", 'select(.eventName == "CreateUser") | $ENV | keys'),
            RuleSource("env builtin", 'select(.eventName == "CreateUser") | env | tojson'),
        ]
    )
    pools.append(pool)
    evaluation = await pool.evaluate(log_file(3), 10**8)

    by_rule = {m.rule_index: m.annotation for m in evaluation.matches}
    assert set(by_rule[0]) <= ENV_ALLOW_LIST
    for value in secrets_in_environment.values():
        assert value not in by_rule[1]
    # The parent keeps its environment: only the workers are scrubbed.
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == secrets_in_environment["AWS_SECRET_ACCESS_KEY"]


async def test_a_runaway_rule_is_skipped_and_everything_else_still_evaluated(
    pools: list[WorkerPool],
) -> None:
    rules = [
        CREATE_USER,
        RuleSource("Runaway", 'select(.eventName == "CreateUser") | def f: f; f'),
        RuleSource("Create User again", 'select(.eventName == "CreateUser") | "again"'),
    ]
    pool = start_pool(rules, batch_size=2, timeout=2.0)
    pools.append(pool)
    first_worker = pool._workers[0].process.pid

    evaluation = await pool.evaluate(log_file(9), 10**8)

    assert evaluation.timed_out_rules == [1]
    assert evaluation.records == 9
    # The seed's CreateUser is every third record: 3 of them, for both healthy rules.
    annotations = sorted((m.rule_index, m.annotation) for m in evaluation.matches)
    assert annotations == [(0, "username: user1")] * 3 + [(2, "again")] * 3
    # The worker that ran away was killed and replaced by a fresh one.
    assert pool._workers[0].process.pid != first_worker
    assert pool._workers[0].process.is_alive()

    # The pool keeps working for the next file.
    again = await pool.evaluate(log_file(3), 10**8)
    assert again.records == 3


async def test_a_bad_file_is_an_object_error_and_the_worker_stays(pools: list[WorkerPool]) -> None:
    pool = start_pool([CREATE_USER])
    pools.append(pool)
    worker = pool._workers[0].process.pid
    with pytest.raises(ObjectError) as error:
        await pool.evaluate(log_file(3)[:-20], 10**8)
    assert error.value.reason == "corrupt_gzip"
    assert pool._workers[0].process.pid == worker
    evaluation = await pool.evaluate(log_file(3), 10**8)
    assert [m.annotation for m in evaluation.matches] == ["username: user1"]


async def test_batches_of_one_file_are_merged_in_record_order(pools: list[WorkerPool]) -> None:
    pool = start_pool([CREATE_USER], batch_size=4)
    pools.append(pool)
    evaluation = await pool.evaluate(log_file(30), 10**8)
    assert evaluation.records == 30
    assert [m.record["eventID"] for m in evaluation.matches] == [f"id-{n}" for n in range(1, 30, 3)]


async def test_a_file_that_gunzips_to_nothing_is_skipped_not_failed(
    pools: list[WorkerPool],
) -> None:
    from tattletail.objects import SkippedObject

    pool = start_pool([CREATE_USER])
    pools.append(pool)
    with pytest.raises(SkippedObject) as skipped:
        await pool.evaluate(gzip.compress(b"", mtime=0), 10**8)
    assert skipped.value.reason == "empty"


async def test_a_worker_killed_mid_file_is_replaced_and_the_pool_goes_on(
    pools: list[WorkerPool],
) -> None:
    from tattletail.workers import WorkerCrashed

    pool = start_pool([CREATE_USER])
    pools.append(pool)
    victim = pool._workers[0]
    victim.process.kill()
    victim.process.join(5)
    with pytest.raises(WorkerCrashed):
        await pool.evaluate(log_file(3), 10**8)
    assert pool._workers[0] is not victim and pool._workers[0].process.is_alive()
    evaluation = await pool.evaluate(log_file(3), 10**8)
    assert [m.annotation for m in evaluation.matches] == ["username: user1"]
