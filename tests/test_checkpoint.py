"""The backfill checkpoint: what it records, read back after a clean end, a crash (a torn last
line), a compaction, or from S3; and refused for another job."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tattletail import checkpoint as checkpoints
from tattletail.aws import AwsClients
from tattletail.checkpoint import CheckpointError, Job, open_checkpoint
from tests.support import Moto

JOB = Job("trail", "AWSLogs/", "2024-01-01", "2024-01-31", "https://sqs/queue", ("Archive",))
UNIT = "AWSLogs/111111111111/CloudTrail/us-east-1/2024/01/"


def test_a_new_checkpoint_is_written_at_its_first_record(tmp_path: Path) -> None:
    path = tmp_path / "cp.jsonl"

    async def run() -> bool:
        checkpoint = await open_checkpoint(str(path), JOB, "run")
        await checkpoint.close()
        return path.exists()

    assert asyncio.run(run()) is False  # a run that sent nothing leaves no file


def test_a_checkpoint_read_back_skips_what_was_sent_and_finished(tmp_path: Path) -> None:
    location = str(tmp_path / "cp.jsonl")

    async def write() -> None:
        cp = await open_checkpoint(location, JOB, "run-1")
        await cp.record(UNIT, 2, after="k02")
        await cp.record(UNIT, 2, sent=["k05", "k06"])  # acknowledged before k03, k04
        await cp.record("AWSLogs/x/", 3, done=True)

    asyncio.run(write())  # not closed: as after a crash, only the journal is there
    state = asyncio.run(open_checkpoint(location, JOB, "run-2")).state

    assert state.run_id == "run-1" and state.enqueued == 7
    unit = state.units[UNIT]
    assert [unit.covers(k) for k in ("k01", "k02", "k03", "k04", "k05", "k06", "k07")] == [
        True,
        True,
        False,
        False,
        True,
        True,
        False,
    ]
    assert state.units["AWSLogs/x/"].done


def test_a_torn_last_line_is_ignored_and_a_torn_middle_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "cp.jsonl"

    async def write() -> None:
        cp = await open_checkpoint(str(path), JOB, "run")
        await cp.record(UNIT, 1, after="k1")
        await cp.record(UNIT, 1, after="k2")

    asyncio.run(write())
    whole = path.read_bytes()
    path.write_bytes(whole[:-7])  # the process died while writing the last line
    assert asyncio.run(open_checkpoint(str(path), JOB, "x")).state.units[UNIT].after == "k1"

    lines = whole.splitlines(keepends=True)
    path.write_bytes(lines[0] + b'{"u": broken\n' + b"".join(lines[1:]))
    with pytest.raises(CheckpointError, match="line 2 is not JSON"):
        asyncio.run(open_checkpoint(str(path), JOB, "x"))


def test_a_checkpoint_of_another_job_or_no_checkpoint_at_all_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cp.jsonl"

    async def write() -> None:
        await (await open_checkpoint(str(path), JOB, "run")).record(UNIT, 1, after="k1")

    asyncio.run(write())
    other = Job("trail", "AWSLogs/", "2024-01-01", "2024-01-31", "https://sqs/queue", None)

    with pytest.raises(CheckpointError, match="not of s3://trail/AWSLogs/"):
        asyncio.run(open_checkpoint(str(path), other, "run"))
    path.write_text("hello\n")
    with pytest.raises(CheckpointError, match="not a tattletail backfill checkpoint"):
        asyncio.run(open_checkpoint(str(path), JOB, "run"))


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([UNIT, "AWSLogs/2/", "AWSLogs/3/"]),
            st.lists(st.from_regex(r"\Ak[0-9]{3}\Z"), min_size=1, max_size=4),
            st.booleans(),
        ),
        max_size=40,
    ),
    st.integers(min_value=1, max_value=7),
)
def test_compacting_the_journal_keeps_exactly_what_it_said(
    tmp_path_factory: pytest.TempPathFactory,
    changes: list[tuple[str, list[str], bool]],
    every: int,
) -> None:
    """However often the journal is rewritten as one line per unit, reading it back gives the
    same state as reading every line."""
    path = tmp_path_factory.mktemp("compact") / "cp.jsonl"

    async def write(compact_after: int) -> checkpoints.State:
        checkpoints.COMPACT_AFTER_LINES = compact_after
        cp = await open_checkpoint(str(path), JOB, "run")
        for unit, keys, advance in changes:
            if advance:
                await cp.record(unit, len(keys), after=max(keys))
            else:
                await cp.record(unit, len(keys), sent=keys)
        return cp.state

    saved = checkpoints.COMPACT_AFTER_LINES
    try:
        path.unlink(missing_ok=True)
        in_memory = asyncio.run(write(every))
    finally:
        checkpoints.COMPACT_AFTER_LINES = saved
    read_back = asyncio.run(open_checkpoint(str(path), JOB, "other")).state

    assert read_back.enqueued == in_memory.enqueued
    assert {u: (s.after, s.sent, s.done) for u, s in read_back.units.items()} == {
        u: (s.after, s.sent, s.done) for u, s in in_memory.units.items() if s.after or s.sent
    }


def test_an_s3_checkpoint_is_written_when_closed_and_read_back(moto: Moto) -> None:
    moto.client("s3").create_bucket(Bucket="state")

    async def run() -> tuple[int, bool]:
        aws = AwsClients(moto.endpoint)
        try:
            s3 = await aws.client("s3")
            cp = await open_checkpoint("s3://state/backfill/cp.jsonl", JOB, "run", s3)
            await cp.record(UNIT, 10, done=True)
            await cp.close()
            again = await open_checkpoint("s3://state/backfill/cp.jsonl", JOB, "other", s3)
            return again.state.enqueued, again.state.units[UNIT].done
        finally:
            await aws.close()

    assert asyncio.run(run()) == (10, True)
