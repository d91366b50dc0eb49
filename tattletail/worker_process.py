"""What runs inside a rule worker process: gunzip, decode and evaluate log files sent to it.

Kept apart from the pool (`tattletail.workers`) so that a spawned worker imports only what it
runs -- orjson, jq and the rules -- and not asyncio, which the pool needs and a worker does not:
every worker pays its imports at every cold start.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from tattletail.objects import ObjectError, decompress
from tattletail.records import LogFile
from tattletail.rules import Evaluation, RuleSet, RuleSource

# Records decoded and evaluated together: few enough to stay in the CPU's caches between the
# two (measured on the bench bundle: 100 beats 250 and 1,000 clearly).
EVALUATION_SLICE = 100

# The only variables a worker keeps: enough for locale and time handling, nothing secret.
ENV_ALLOW_LIST = frozenset({"PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"})


@dataclass(frozen=True)
class Job:
    """One log file's bytes, and how to go through its records."""

    payload: bytes
    max_bytes: int
    batch_size: int
    first_batch: int = 0
    skip: frozenset[int] = frozenset()
    # The batch to evaluate rule by rule, announcing each rule (after a timeout).
    isolate_batch: int | None = None


def scrub_environment() -> None:
    for name in list(os.environ):
        if name not in ENV_ALLOW_LIST:
            del os.environ[name]


@contextlib.contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for one log file.

    Decoded records are trees of dicts, lists and strings, with no reference cycle for it to
    find, yet each collection it starts while a file's records are alive walks all of them:
    about a quarter of the decode time. Reference counting still frees everything at once;
    any cycle evaluation leaves behind is collected once the file is done.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def serve(conn: Connection, rules: RuleSet, job: Job) -> None:
    """Gunzip, decode and evaluate one log file, replying once per batch of records, so the
    supervisor can bound each batch's time and keep what finished before an overrun."""
    with cyclic_gc_paused():
        _serve_file(conn, rules, job)


def _serve_file(conn: Connection, rules: RuleSet, job: Job) -> None:
    started = time.process_time()
    log_file = LogFile(decompress(job.payload, job.max_bytes))
    number = 0
    # The record count can change once, if a record text does not decode (see LogFile).
    while (start := number * job.batch_size) < len(log_file):
        if number >= job.first_batch:
            result = _evaluate_batch(conn, rules, job, log_file, start, number)
            result.seconds = time.process_time() - started
            started = time.process_time()
            conn.send(("batch", number, result))
        number += 1
    conn.send(("done", number))


def _evaluate_batch(
    conn: Connection, rules: RuleSet, job: Job, log_file: LogFile, start: int, number: int
) -> Evaluation:
    stop = start + job.batch_size
    if number == job.isolate_batch:
        batch = log_file.records(start, stop)
        result = rules.evaluate_rule_by_rule(
            batch, job.skip, lambda rule_index: conn.send(("rule", rule_index))
        )
        result.oldest_event_time, result.newest_event_time = _event_time_range(batch)
        return result
    result = Evaluation()
    # Decoded and evaluated a slice at a time, while its records are in the CPU's caches.
    for first in range(start, stop, EVALUATION_SLICE):
        records = log_file.records(first, min(first + EVALUATION_SLICE, stop))
        part = rules.evaluate(records, job.skip)
        part.oldest_event_time, part.newest_event_time = _event_time_range(records)
        result.merge(part)
    return result


def _event_time_range(records: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    # ISO 8601 UTC times in one format compare correctly as strings.
    times = [t for r in records if isinstance(t := r.get("eventTime"), str)]
    return min(times, default=None), max(times, default=None)


def worker_main(conn: Connection, sources: Sequence[RuleSource]) -> None:
    """A worker's life: scrub the environment, compile the rules, then serve jobs until told
    to stop (None) or the pipe closes."""
    scrub_environment()
    rules = RuleSet(sources, validated=True)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            job = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if job is None:
            return
        try:
            serve(conn, rules, job)
        except ObjectError as exc:
            conn.send(("object_error", exc.reason, str(exc)))
        except MemoryError:
            conn.send(("object_error", "too_large", "out of memory while decoding the object"))
