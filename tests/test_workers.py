"""The worker pool: real spawned processes over pipes, a scrubbed environment, and a runaway
rule that costs its worker but not the rest of the evaluation."""

from __future__ import annotations

import asyncio
import gzip
import os
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tattletail.json_output import dumps
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


MIB = 1024 * 1024


def start_pool(
    rules: list[RuleSource],
    batch_size: int = 1000,
    timeout: float = 30.0,
    memory_allowance: int | None = None,
) -> WorkerPool:
    pool = WorkerPool(rules, 1, batch_size, timeout, memory_allowance)
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


async def test_a_runaway_rule_is_quarantined_and_everything_else_still_evaluated(
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

    assert [(q.rule_index, q.reason) for q in evaluation.quarantined] == [(1, "overrun")]
    assert evaluation.records == 9
    # The seed's CreateUser is every third record: 3 of them, for both healthy rules.
    annotations = sorted((m.rule_index, m.annotation) for m in evaluation.matches)
    assert annotations == [(0, "username: user1")] * 3 + [(2, "again")] * 3
    # The worker that ran away was killed and replaced by a fresh one.
    assert pool._workers[0].process.pid != first_worker
    assert pool._workers[0].process.is_alive()

    # The pool keeps working for the next file, without the quarantined rule: it is not
    # reported again, and it costs no worker.
    worker = pool._workers[0].process.pid
    again = await pool.evaluate(log_file(3), 10**8)
    assert again.records == 3 and again.quarantined == []
    assert sorted(m.rule_index for m in again.matches) == [0, 2]
    assert pool._workers[0].process.pid == worker


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


async def test_a_worker_that_died_while_idle_is_replaced_before_it_is_given_a_file(
    pools: list[WorkerPool],
) -> None:
    pool = start_pool([CREATE_USER])
    pools.append(pool)
    victim = pool._workers[0]
    victim.process.kill()
    victim.process.join(5)

    evaluation = await pool.evaluate(log_file(3), 10**8)

    assert [m.annotation for m in evaluation.matches] == ["username: user1"]
    assert evaluation.quarantined == []
    assert pool._workers[0] is not victim and pool._workers[0].process.is_alive()


async def test_a_worker_killed_mid_file_costs_no_rule_and_no_record(
    pools: list[WorkerPool],
) -> None:
    # Killed from outside (the OOM killer, an operator) while it works: the batch is run again
    # by a fresh worker, rule by rule, and nothing is blamed on a rule that did not do it.
    slow = RuleSource("Slow", 'select(.eventName == "CreateUser") | last(range(300000))')
    pool = start_pool([CREATE_USER, slow], batch_size=3)
    pools.append(pool)
    victim = pool._workers[0].process

    async def kill_soon() -> None:
        # Whenever it lands (before, during or between batches) the outcome is the same.
        await asyncio.sleep(0.2)
        victim.kill()

    evaluation, _ = await asyncio.gather(pool.evaluate(log_file(12), 10**8), kill_soon())

    assert evaluation.records == 12 and evaluation.quarantined == []
    assert sorted((m.rule_index, m.record["eventID"]) for m in evaluation.matches) == sorted(
        (rule, f"id-{n}") for n in range(1, 12, 3) for rule in (0, 1)
    )


async def test_records_and_outputs_orjson_cannot_write_cross_to_the_main_process_whole(
    pools: list[WorkerPool],
) -> None:
    # Issue 10, defects 1 and 2: a record nested 300 deep (orjson writes 255 levels) and
    # outputs holding integers beyond 64 bits or nesting deeper than pickle goes.
    deep = orjson.loads(b"[" * 300 + b"]" * 300)
    seed = orjson.loads(SEED_LOG.read_bytes())["Records"]
    records = [dict(seed[1], eventID="deep", deep=deep), dict(seed[1], eventID="plain")]
    payload = gzip.compress(dumps({"Records": records}))
    rules = [
        CREATE_USER,
        RuleSource("Paths", 'select(.eventName == "CreateUser") | [paths] | length'),
        RuleSource("Big", 'select(.eventName == "CreateUser") | {n: 100000000000000000000}'),
        RuleSource(
            "Deeper", 'select(.eventName == "CreateUser") | reduce range(3000) as $i (0; [.])'
        ),
    ]
    pool = start_pool(rules)
    pools.append(pool)
    worker = pool._workers[0].process.pid

    evaluation = await pool.evaluate(payload, 10**8)

    by_rule: dict[int, list[Any]] = {}
    for match in evaluation.matches:
        by_rule.setdefault(match.rule_index, []).append(match)
    assert [m.record["eventID"] for m in by_rule[0]] == ["deep", "plain"]
    assert by_rule[0][0].record["deep"] == deep
    assert [m.annotation for m in by_rule[2]] == [{"n": 10**20}] * 2
    assert len(by_rule[1]) == len(by_rule[3]) == 2
    written = dumps(by_rule[3][0].annotation)
    assert written == b"[" * 3000 + b"0" + b"]" * 3000
    assert pool._workers[0].process.pid == worker


async def test_rules_slow_only_together_are_quarantined_by_the_time_each_took(
    pools: list[WorkerPool],
) -> None:
    # Issue 10, defect 5: each rule alone is under the batch limit, the two together over it.
    slow = "select((last(range(2000000)) >= 0) and (.eventID|length) > 0)"
    rules = [RuleSource("Slow A", slow), RuleSource("Slow B", slow), CREATE_USER]
    pool = start_pool(rules, batch_size=1, timeout=1.0)
    pools.append(pool)

    evaluation = await pool.evaluate(log_file(8), 10**8)

    # Both are blamed: after the costlier one, the other still takes over half the limit.
    assert sorted(q.rule_index for q in evaluation.quarantined) == [0, 1]
    assert evaluation.records == 8
    # Every other rule's alerts arrive: the seed's CreateUser is every third record.
    assert [m.record["eventID"] for m in evaluation.matches if m.rule_index == 2] == [
        "id-1",
        "id-4",
        "id-7",
    ]


def test_the_time_of_a_batch_that_overran_goes_to_the_rules_that_took_it() -> None:
    from tattletail.workers import slow_rules

    # Costliest first, until what is left takes at most half the limit.
    assert slow_rules({0: 1.5, 1: 1.5, 2: 0.01}, 2.0) == [0, 1]
    assert slow_rules({0: 0.2, 1: 1.9, 2: 0.1}, 2.0) == [1]
    assert slow_rules({0: 0.4, 1: 0.6, 2: 0.7}, 1.0) == [2, 1]
    # The overrun was not the rules' (decoding, a pause): nobody is blamed.
    assert slow_rules({0: 0.1, 1: 0.2}, 2.0) == []
    assert slow_rules({}, 2.0) == []


async def test_entries_that_are_not_records_and_records_nobody_reads_cost_only_themselves(
    pools: list[WorkerPool],
) -> None:
    # Issue 10, defect 8 (a number, a string, null among the records) and defect 1's
    # record_failed: a record nested deeper than libjq reads names its eventID and why.
    seed = orjson.loads(SEED_LOG.read_bytes())["Records"]
    too_deep = b'{"eventVersion":"1.08","eventID":"too-deep","d":' + b"[" * 10_001
    too_deep += b"]" * 10_001 + b"}"
    first, last = (orjson.dumps(dict(seed[1], eventID=name)) for name in ("first", "last"))
    entries = [first, b"5", b'"text"', b"null", too_deep, last]
    for head in (b'{"Records":[', b'{"Records": [\n'):
        payload = gzip.compress(head + b",".join(entries) + b"]}")
        pool = start_pool([CREATE_USER])
        pools.append(pool)

        evaluation = await pool.evaluate(payload, 10**8)

        assert evaluation.records == 2 and evaluation.records_invalid == 3
        assert evaluation.records_failed == 1
        [failure] = evaluation.failure_samples
        assert (failure.event_id, failure.reason) == ("too-deep", "too_deep")
        assert [m.record["eventID"] for m in evaluation.matches] == ["first", "last"]


def memory_of(pid: int, field: str) -> int:
    """A process's VmRSS (now) or VmHWM (its peak), in bytes, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(field))


@pytest.mark.parametrize("head", [b'{"Records":[', b'{"Records": [\n'], ids=["compact", "other"])
async def test_a_worker_stays_under_its_memory_bound_and_a_record_that_would_cross_it_fails_alone(
    pools: list[WorkerPool], head: bytes
) -> None:
    # Issue 10, defect 3: 24 MiB of {} (a 25 KB gzip) decodes to about 780 MB.
    allowance = 160 * MIB
    pool = start_pool([CREATE_USER], memory_allowance=allowance)
    pools.append(pool)
    pid = pool._workers[0].process.pid
    started = memory_of(pid, "VmRSS")
    junk = b'{"eventVersion":"1.08","eventName":"ListUsers","eventID":"amp","junk":['
    junk += b"{}," * (8 << 20) + b"{}]}"
    seed = orjson.loads(SEED_LOG.read_bytes())["Records"]
    after = orjson.dumps(dict(seed[1], eventID="after"))
    # Compact: cut at record boundaries. Other: decoded whole first, which would cross it.
    separator = b"," if head.endswith(b"[") else b",\n"
    payload = gzip.compress(head + junk + separator + after + b"]}")

    evaluation = await pool.evaluate(payload, 64 * MIB)

    [failure] = evaluation.failure_samples
    assert (failure.event_id, failure.reason) == ("amp", "too_large")
    assert [m.record["eventID"] for m in evaluation.matches] == ["after"]
    # The bound: what it held once started, plus the allowance (code pages come and go).
    assert pool._workers[0].process.pid == pid
    assert memory_of(pid, "VmHWM") <= started + allowance + 16 * MIB


async def test_a_record_matched_by_many_rules_is_held_and_sent_once(
    pools: list[WorkerPool],
) -> None:
    rules = [RuleSource(f"Rule {n}", 'select(.eventName == "CreateUser")') for n in range(20)]
    pool = start_pool(rules)
    pools.append(pool)
    seed = orjson.loads(SEED_LOG.read_bytes())["Records"]
    big = dict(seed[1], requestParameters={"policy": "x" * (4 * MIB)})
    payload = gzip.compress(orjson.dumps({"Records": [big]}))

    evaluation = await pool.evaluate(payload, 64 * MIB)

    assert len(evaluation.matches) == 20
    assert len({id(match.record) for match in evaluation.matches}) == 1


async def test_a_rule_that_keeps_allocating_is_quarantined_at_the_memory_bound(
    pools: list[WorkerPool],
) -> None:
    # libjq aborts the worker when an allocation fails: the rule is found and quarantined
    # long before the 60 s batch limit, and every other rule's alerts arrive.
    hog = RuleSource("Hog", 'select(.eventName == "CreateUser") | [repeat(1)] | length')
    pool = start_pool([CREATE_USER, hog], timeout=60.0, memory_allowance=48 * MIB)
    pools.append(pool)

    evaluation = await pool.evaluate(log_file(3), 10**8)

    assert [(q.rule_index, q.reason) for q in evaluation.quarantined] == [(1, "crashed")]
    assert [(m.rule_index, m.annotation) for m in evaluation.matches] == [(0, "username: user1")]


async def test_a_record_nested_deeper_than_python_recurses_is_evaluated_like_any_other(
    pools: list[WorkerPool],
) -> None:
    # orjson refuses it (past 1,024 levels), libjq reads it, and comparing libjq's output
    # with the record (a plain select) recurses past Python's limit: evaluated again with
    # the nesting allowed, one rule at a time.
    deep = b'{"eventVersion":"1.08","eventName":"CreateUser","eventID":"deep","d":'
    deep += b"[" * 3000 + b"]" * 3000 + b"}"
    rules = [
        RuleSource("Select", 'select(.eventName == "CreateUser") | select([..] | length > 0)'),
        CREATE_USER,
    ]
    pool = start_pool(rules)
    pools.append(pool)

    evaluation = await pool.evaluate(gzip.compress(b'{"Records":[' + deep + b"]}"), 10**8)

    assert evaluation.records_failed == 0 and evaluation.quarantined == []
    assert [(m.rule_index, m.annotation) for m in evaluation.matches] == [
        (0, None),
        (1, "username: null"),
    ]
    assert dumps(evaluation.matches[0].record["d"]) == b"[" * 3000 + b"]" * 3000


def test_a_new_config_keeps_its_unchanged_rules_quarantined() -> None:
    from tattletail.rules import QuarantinedRule

    runaway = RuleSource("Runaway", "def f: f; f")
    old = WorkerPool([CREATE_USER, runaway, RuleSource("Edited", "1")], 1, 10, 1.0)
    old.quarantined = {
        1: QuarantinedRule(1, "overrun", "ran past"),
        2: QuarantinedRule(2, "slow", "took 1 s"),
    }
    # Rules moved around; the slow one was edited (a fix, perhaps): it gets another chance.
    new = WorkerPool([runaway, RuleSource("Edited", "2"), CREATE_USER], 1, 10, 1.0)

    new.inherit_quarantine(old)

    assert new.quarantined == {0: QuarantinedRule(0, "overrun", "ran past")}
