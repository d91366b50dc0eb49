"""The worker pool: rule evaluation (and the gunzip and decode before it) in child processes.

Built on `multiprocessing.Process` + `Pipe` only: Lambda has no usable /dev/shm, so `Pool`,
`Queue` and `ProcessPoolExecutor` (which need POSIX semaphores) fail there with OSError, while a
process and a socket pair work. Children are spawned, not forked, so they never inherit the
event loop's threads or locks, and they scrub their environment before compiling any rule, so
a rule reading `$ENV` or `env` sees no credentials. What a worker runs is in
`tattletail.worker_process`.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import sys
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tattletail.daterange import EventWindow
from tattletail.objects import ObjectError, SkippedObject
from tattletail.rules import Evaluation, RuleSource
from tattletail.worker_process import Job, worker_main

_START_TIMEOUT = 60.0


class WorkerCrashed(Exception):
    """A worker died, or could not get through a log file within the time limit."""


@dataclass(frozen=True)
class _Overrun:
    """A batch that did not finish in time; `rule` is known when it ran in isolation."""

    batch: int
    rule: int | None


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
    def __init__(self, context: Any, sources: Sequence[RuleSource]) -> None:
        self.conn, child_conn = context.Pipe()
        self.process = context.Process(
            target=worker_main, args=(child_conn, tuple(sources)), daemon=True
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

    def run(self, job: Job, timeout: float, into: Evaluation) -> _Overrun | None:
        """Send one job and merge each batch's result as it arrives (blocking: runs in a
        thread). Return None when the file is done, or the batch that overran the limit."""
        batch, rule = job.first_batch, None
        try:
            self.conn.send(job)
            while True:
                if not self.conn.poll(timeout):
                    return _Overrun(batch, rule)
                reply = self.conn.recv()
                kind = reply[0]
                if kind == "rule":
                    rule = reply[1]
                elif kind == "batch":
                    into.merge(reply[2])
                    batch, rule = reply[1] + 1, None
                elif kind == "done":
                    return None
                elif reply[1] == "empty":
                    # Nothing in it once gunzipped: not a log file, skipped like a 0-byte one.
                    raise SkippedObject(reply[1], reply[2])
                else:
                    raise ObjectError(reply[1], reply[2])
        except (EOFError, OSError):
            raise WorkerCrashed(
                f"the rule worker died (exit code {self.process.exitcode})"
            ) from None

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
    """A fixed number of worker processes, each evaluating one log file at a time."""

    def __init__(
        self,
        sources: Sequence[RuleSource],
        size: int,
        batch_size: int,
        batch_timeout: float,
    ) -> None:
        self._sources = tuple(sources)
        self._size = size
        self._batch_size = batch_size
        self._timeout = batch_timeout
        self._context = multiprocessing.get_context("spawn")
        self._idle: asyncio.Queue[_Worker] | None = None
        self._idle_loop: asyncio.AbstractEventLoop | None = None
        self._workers: list[_Worker] = []

    def start(self) -> None:
        """Spawn every worker and wait until each has compiled the rules (the cold start)."""
        workers = [_Worker(self._context, self._sources) for _ in range(self._size)]
        try:
            for worker in workers:
                worker.wait_ready()
        except WorkerCrashed:
            for worker in workers:
                worker.kill()
            raise
        self._workers = workers

    async def evaluate(
        self, payload: bytes, max_bytes: int, window: EventWindow | None = None
    ) -> Evaluation:
        """Evaluate one log file's bytes.

        A batch that overruns the time limit costs its worker (killed and replaced); the batch
        is then re-run rule by rule to find the runaway rule, which is skipped for the rest of
        the file and reported in `timed_out_rules`; every other rule and record is evaluated.
        ObjectError for a bad file; WorkerCrashed if a worker dies or decoding alone overruns.
        With a window, only records whose eventTime is in it are evaluated.
        """
        total = Evaluation()
        job = Job(payload, max_bytes, self._batch_size, window=window)
        # Each overrun either names a rule (skipped from then on) or isolates a batch, so this
        # ends after at most two overruns per rule.
        for _ in range(2 * len(self._sources) + 2):
            overrun = await self._run(job, total)
            if overrun is None:
                return total
            if overrun.rule is not None:
                total.timed_out_rules.append(overrun.rule)
                job = replace(
                    job,
                    first_batch=overrun.batch,
                    skip=job.skip | {overrun.rule},
                    isolate_batch=overrun.batch,
                )
            elif job.isolate_batch == overrun.batch:
                raise WorkerCrashed(
                    f"decoding or a batch took longer than {self._timeout:g} s with no rule running"
                )
            else:
                job = replace(job, first_batch=overrun.batch, isolate_batch=overrun.batch)
        raise WorkerCrashed("too many evaluation overruns")

    async def _run(self, job: Job, total: Evaluation) -> _Overrun | None:
        idle = self._idle_queue()
        worker = await idle.get()
        try:
            if worker.broken:
                worker = await self._respawn(worker)
            overrun = await asyncio.to_thread(worker.run, job, self._timeout, total)
            # An overrun's worker is still busy with the runaway rule: it is replaced.
            worker.broken = overrun is not None
            return overrun
        except ObjectError:
            raise  # the worker answered and is ready for the next file
        except BaseException:
            # Died, or cancelled mid-file with replies still in the pipe.
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

    def _spawn_replacement(self, worker: _Worker) -> _Worker:
        worker.kill()
        fresh = _Worker(self._context, self._sources)
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
