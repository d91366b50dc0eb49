"""The worker pool: rule evaluation (and the gunzip and decode before it) in child processes.

Built on `multiprocessing.Process` + `Pipe` only: Lambda has no usable /dev/shm, so `Pool`,
`Queue` and `ProcessPoolExecutor` (which need POSIX semaphores) fail there with OSError, while a
process and a socket pair work. Children are spawned, not forked, so they never inherit the
event loop's threads or locks, and they scrub their environment before compiling any rule, so
a rule reading `$ENV` or `env` sees no credentials. What a worker runs is in
`tattletail.worker_process`.

A worker that overruns a batch's time limit, or dies, is replaced, and the batch is evaluated
again rule by rule, each rule timed, to find the rule to blame: a rule that overruns or kills
its worker on its own, or the rules that took most of a batch that overran only with all of
them together. Those are quarantined for the life of the pool (the container): never
evaluated again, each reported once. Every other rule and record is still evaluated, and
nothing is failed for a worker that died before it was given the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import sys
import time
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tattletail.objects import ObjectError, SkippedObject
from tattletail.records import Position
from tattletail.rules import Evaluation, QuarantinedRule, RuleSource
from tattletail.worker_process import Job, worker_main

_START_TIMEOUT = 60.0


class WorkerCrashed(Exception):
    """A worker could not get through a log file: it died or overran with no rule running."""


class DeadlineReached(Exception):
    """The invocation's time ran out before the object was evaluated (it comes back later)."""


@dataclass
class _Outcome:
    """How a job ended: `done`, `overrun` (the time limit), `died`, or `deadline`.

    `batch` and `position` say where to resume; `rule` is the rule running at the end, when the
    batch ran rule by rule; `rule_seconds` the time each rule took on an isolated batch.
    """

    kind: str
    batch: int
    position: Position | None
    rule: int | None = None
    finished: bool = False
    exit_code: int | None = None
    rule_seconds: dict[int, float] = field(default_factory=dict)


def slow_rules(seconds: Mapping[int, float], limit: float) -> list[int]:
    """The rules to blame for a batch that overran `limit` only with all its rules together:
    the costliest first, until what the others take is at most half the limit (so the next
    batch is not the same story)."""
    left = sum(seconds.values())
    blamed = []
    for rule, spent in sorted(seconds.items(), key=lambda item: (-item[1], item[0])):
        if left <= limit / 2:
            break
        blamed.append(rule)
        left -= spent
    return blamed


_BARE_MAIN = types.ModuleType("__main__")


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Spawn a worker without making it re-import the parent's __main__.

    multiprocessing's spawn re-runs the parent's main script in the child (as __mp_main__) in
    case the target lives there. Ours lives in this module, and the main script is the CLI or
    the Lambda runtime client, whose imports (boto3, aiohttp) would cost each worker about a
    second of CPU at every cold start for nothing. The spawn reads __main__ while start() runs.
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = _BARE_MAIN
    try:
        yield
    finally:
        sys.modules["__main__"] = main


class _Worker:
    def __init__(
        self, context: Any, sources: Sequence[RuleSource], memory_allowance: int | None
    ) -> None:
        self.conn, child_conn = context.Pipe()
        self.process = context.Process(
            target=worker_main,
            args=(child_conn, tuple(sources), memory_allowance),
            daemon=True,
        )
        with _main_module_hidden():
            self.process.start()
        child_conn.close()
        # Set when the worker died, overran or was interrupted: replaced before its next job.
        self.broken = False

    def wait_ready(self) -> None:
        if not self.conn.poll(_START_TIMEOUT):
            self.kill()
            raise WorkerCrashed("a rule worker did not start in time")
        try:
            self.conn.recv()
        except EOFError:
            self.kill()
            code = self.process.exitcode
            raise WorkerCrashed(f"a rule worker exited at start (exit code {code})") from None

    def run(self, job: Job, timeout: float, cutoff: float | None, into: Evaluation) -> _Outcome:
        """Send one job and merge each batch's result as it arrives (blocking: runs in a
        thread) until the job is done, a batch overruns `timeout`, the worker dies, or the
        time.monotonic() `cutoff` passes."""
        outcome = _Outcome("overrun", job.first_batch, job.position)
        try:
            self.conn.send(job)
            while True:
                wait = timeout if cutoff is None else min(timeout, cutoff - time.monotonic())
                if not self.conn.poll(max(wait, 0)):
                    if wait < timeout:
                        outcome.kind = "deadline"
                    return outcome
                reply = self.conn.recv()
                kind = reply[0]
                if kind == "rule":
                    outcome.rule = reply[1]
                elif kind == "batch":
                    result: Evaluation = reply[3]
                    into.merge(result)
                    outcome.batch, outcome.position, outcome.rule = reply[1] + 1, reply[2], None
                    outcome.rule_seconds = result.rule_seconds
                elif kind == "done":
                    outcome.kind, outcome.finished = "done", reply[2]
                    return outcome
                elif reply[1] == "empty":
                    # Nothing in it once gunzipped: not a log file, skipped like a 0-byte one.
                    raise SkippedObject(reply[1], reply[2])
                else:
                    raise ObjectError(reply[1], reply[2])
        except (EOFError, OSError):
            self.process.join(1)
            outcome.kind, outcome.exit_code = "died", self.process.exitcode
            return outcome

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.conn.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.conn.close()


class WorkerPool:
    """A fixed number of worker processes, each evaluating one log file at a time, and the
    rules quarantined so far."""

    def __init__(
        self,
        sources: Sequence[RuleSource],
        size: int,
        batch_size: int,
        batch_timeout: float,
        memory_allowance: int | None = None,
    ) -> None:
        self._sources = tuple(sources)
        # Bytes each worker may allocate beyond what it holds once started (see worker_main).
        self._memory_allowance = memory_allowance
        self._size = size
        self._batch_size = batch_size
        self._timeout = batch_timeout
        self._context = multiprocessing.get_context("spawn")
        self._idle: asyncio.Queue[_Worker] | None = None
        self._idle_loop: asyncio.AbstractEventLoop | None = None
        self._workers: list[_Worker] = []
        # Rule index -> why it is no longer evaluated.
        self.quarantined: dict[int, QuarantinedRule] = {}

    def start(self) -> None:
        """Spawn every worker and wait until each has compiled the rules (the cold start)."""
        workers = [self._new_worker() for _ in range(self._size)]
        try:
            for worker in workers:
                worker.wait_ready()
        except WorkerCrashed:
            for worker in workers:
                worker.kill()
            raise
        self._workers = workers

    def inherit_quarantine(self, other: WorkerPool) -> None:
        """Keep quarantined the rules of `other` (a pool this one replaces) that are unchanged
        here: a new config does not give a runaway rule it still holds another run."""
        position = {source: index for index, source in enumerate(self._sources)}
        for index, quarantined in other.quarantined.items():
            here = position.get(other._sources[index])
            if here is not None:
                self.quarantined[here] = QuarantinedRule(
                    here, quarantined.reason, quarantined.detail
                )

    async def evaluate(
        self, payload: bytes, max_bytes: int, cutoff: float | None = None
    ) -> Evaluation:
        """Evaluate one log file's bytes, by every rule not quarantined.

        `cutoff` (a time.monotonic() value) is when evaluation must stop: DeadlineReached then.
        ObjectError for a bad file; WorkerCrashed if a worker dies or overruns with no rule
        running (decoding). The rules quarantined meanwhile are in the result's `quarantined`.
        """
        total = Evaluation()
        batch, position = 0, None
        # Why the next job evaluates one batch rule by rule ("overrun" or "died"), if it does.
        isolating: str | None = None
        # Every pass quarantines a rule or gets through a batch: this ends.
        while True:
            if cutoff is not None and time.monotonic() >= cutoff:
                raise DeadlineReached("no time left before the invocation's deadline")
            job = Job(
                payload,
                max_bytes,
                self._batch_size,
                first_batch=batch,
                position=position,
                skip=frozenset(self.quarantined),
                isolate=isolating is not None,
            )
            outcome = await self._run(job, total, cutoff)
            if outcome.kind == "deadline":
                raise DeadlineReached("evaluation stopped at the invocation's deadline margin")
            batch, position = outcome.batch, outcome.position
            if outcome.kind == "done":
                if isolating == "overrun":
                    # No rule overran alone: the time goes to the rules that took it.
                    for rule in slow_rules(outcome.rule_seconds, self._timeout):
                        spent = outcome.rule_seconds[rule]
                        detail = (
                            f"took {spent:.1f} s of a batch of {self._batch_size} records that "
                            f"overran the {self._timeout:g} s limit with every rule together"
                        )
                        self._quarantine(rule, "slow", detail, total)
                if outcome.finished:
                    return total
                isolating = None
            elif outcome.rule is not None:
                if outcome.kind == "died":
                    detail = (
                        f"its evaluation killed the worker (exit code {outcome.exit_code}: "
                        "out of memory, or a value nested too deep)"
                    )
                    self._quarantine(outcome.rule, "crashed", detail, total)
                else:
                    detail = f"ran past the {self._timeout:g} s batch limit on its own"
                    self._quarantine(outcome.rule, "overrun", detail, total)
                isolating = outcome.kind
            elif isolating is not None:
                what = (
                    f"died (exit code {outcome.exit_code})"
                    if outcome.kind == "died"
                    else f"took longer than {self._timeout:g} s"
                )
                raise WorkerCrashed(f"decoding batch {batch} {what} with no rule running, twice")
            else:
                isolating = outcome.kind

    def _quarantine(self, rule: int, reason: str, detail: str, into: Evaluation) -> None:
        quarantined = QuarantinedRule(rule, reason, detail)
        self.quarantined[rule] = quarantined
        into.quarantined.append(quarantined)

    async def _run(self, job: Job, total: Evaluation, cutoff: float | None) -> _Outcome:
        idle = self._idle_queue()
        worker = await idle.get()
        try:
            # A worker that died since its last job (killed while idle) is replaced first, so
            # no object is ever given to a dead one.
            if worker.broken or not worker.process.is_alive():
                worker = await self._respawn(worker)
            outcome = await asyncio.to_thread(worker.run, job, self._timeout, cutoff, total)
            # A worker that overran is still busy with the runaway rule: it is replaced.
            worker.broken = outcome.kind != "done"
            return outcome
        except ObjectError:
            raise  # the worker answered and is ready for the next file
        except BaseException:
            # Cancelled mid-file with replies still in the pipe.
            worker.broken = True
            raise
        finally:
            if worker.broken:
                # Off the event loop, and to the end even if this task is being cancelled. A
                # worker that cannot be replaced goes back marked broken: the next job retries
                # the spawn, so the pool never shrinks and never waits on a dead worker.
                with contextlib.suppress(Exception):
                    worker = await asyncio.shield(self._respawn(worker))
            idle.put_nowait(worker)

    async def _respawn(self, worker: _Worker) -> _Worker:
        fresh = await asyncio.to_thread(self._spawn_replacement, worker)
        # The list is only changed here, on the event loop: replacements never race.
        self._workers = [fresh if w is worker else w for w in self._workers]
        return fresh

    def _new_worker(self) -> _Worker:
        return _Worker(self._context, self._sources, self._memory_allowance)

    def _spawn_replacement(self, worker: _Worker) -> _Worker:
        worker.kill()
        fresh = self._new_worker()
        fresh.wait_ready()
        return fresh

    def _idle_queue(self) -> asyncio.Queue[_Worker]:
        loop = asyncio.get_running_loop()
        if self._idle is None or self._idle_loop is not loop:
            # A queue belongs to one event loop; the CLI and tests may use several in turn.
            self._idle, self._idle_loop = asyncio.Queue(), loop
            for worker in self._workers:
                self._idle.put_nowait(worker)
        return self._idle

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()
        self._workers = []
        self._idle = None
