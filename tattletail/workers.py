"""The worker pool: rule evaluation (and the gunzip and decode before it) in child processes.

Built on `multiprocessing.Process` + `Pipe` only: Lambda has no usable /dev/shm, so `Pool`,
`Queue` and `ProcessPoolExecutor` (which need POSIX semaphores) fail there with OSError, while a
process and a socket pair work. Children are spawned, not forked, so they never inherit the
event loop's threads or locks, and they scrub their environment before compiling any rule, so
a rule reading `$ENV` or `env` sees no credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from tattletail.objects import ObjectError, decompress
from tattletail.records import decode_records
from tattletail.rules import Evaluation, RuleSet, RuleSource

# The only variables a worker keeps: enough for locale and time handling, nothing secret.
ENV_ALLOW_LIST = frozenset({"PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"})
_START_TIMEOUT = 60.0


class WorkerCrashed(Exception):
    """A worker died or overran its time limit while evaluating."""


@dataclass(frozen=True)
class _Job:
    payload: bytes
    max_bytes: int


def scrub_environment() -> None:
    for name in list(os.environ):
        if name not in ENV_ALLOW_LIST:
            del os.environ[name]


def evaluate_object(rules: RuleSet, payload: bytes, max_bytes: int) -> Evaluation:
    """Gunzip, decode and evaluate one log file: the whole CPU side of a file, in one call."""
    return rules.evaluate(decode_records(decompress(payload, max_bytes)))


def _worker_main(conn: Connection, sources: Sequence[RuleSource]) -> None:
    scrub_environment()
    rules = RuleSet(sources)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            job = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if job is None:
            return
        try:
            reply: tuple[Any, ...] = ("ok", evaluate_object(rules, job.payload, job.max_bytes))
        except ObjectError as exc:
            reply = ("object_error", exc.reason, str(exc))
        except MemoryError:
            reply = ("object_error", "too_large", "out of memory while decoding the object")
        conn.send(reply)


class _Worker:
    def __init__(self, context: Any, sources: Sequence[RuleSource]) -> None:
        self.conn, child_conn = context.Pipe()
        self.process = context.Process(
            target=_worker_main, args=(child_conn, tuple(sources)), daemon=True
        )
        self.process.start()
        child_conn.close()

    def wait_ready(self) -> None:
        if not self.conn.poll(_START_TIMEOUT):
            self.kill()
            raise WorkerCrashed("a rule worker did not start in time")
        try:
            self.conn.recv()
        except EOFError:
            raise WorkerCrashed(
                f"a rule worker exited at start ({self.process.exitcode})"
            ) from None

    def run(self, job: _Job, timeout: float) -> Any:
        """Send one job and wait for its reply (blocking: called from a thread)."""
        try:
            self.conn.send(job)
            if not self.conn.poll(timeout):
                raise WorkerCrashed(f"evaluation took longer than {timeout:g} s")
            return self.conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
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

    def __init__(self, sources: Sequence[RuleSource], size: int, timeout: float) -> None:
        self._sources = tuple(sources)
        self._size = size
        self._timeout = timeout
        self._context = multiprocessing.get_context("spawn")
        self._idle: asyncio.Queue[_Worker] | None = None
        self._idle_loop: asyncio.AbstractEventLoop | None = None
        self._workers: list[_Worker] = []

    @property
    def size(self) -> int:
        return self._size

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

    async def evaluate(self, payload: bytes, max_bytes: int) -> Evaluation:
        """Evaluate one log file's bytes; ObjectError for a bad file, WorkerCrashed otherwise."""
        loop = asyncio.get_running_loop()
        if self._idle is None or self._idle_loop is not loop:
            # A queue belongs to one event loop; the CLI and tests may use several in turn.
            self._idle, self._idle_loop = asyncio.Queue(), loop
            for worker in self._workers:
                self._idle.put_nowait(worker)
        worker = await self._idle.get()
        try:
            reply = await asyncio.to_thread(worker.run, _Job(payload, max_bytes), self._timeout)
        except WorkerCrashed:
            worker = await asyncio.to_thread(self._replace, worker)
            raise
        finally:
            self._idle.put_nowait(worker)
        if reply[0] == "ok":
            return reply[1]
        raise ObjectError(reply[1], reply[2])

    def _replace(self, worker: _Worker) -> _Worker:
        worker.kill()
        fresh = _Worker(self._context, self._sources)
        fresh.wait_ready()
        self._workers = [fresh if w is worker else w for w in self._workers]
        return fresh

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()
        self._workers = []
        self._idle = None
