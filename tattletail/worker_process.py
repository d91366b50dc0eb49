"""What runs inside a rule worker process: gunzip, decode and evaluate log files sent to it.

Kept apart from the pool (`tattletail.workers`) so that a spawned worker imports only what it
runs -- orjson, jq and the rules -- and not asyncio, which the pool needs and a worker does not:
every worker pays its imports at every cold start.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import resource
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any

from tattletail.daterange import EventWindow
from tattletail.json_output import JSONText, dumps
from tattletail.objects import ObjectError, decompress
from tattletail.records import LogFile, Position, Slice
from tattletail.rules import Evaluation, Match, RuleSet, RuleSource, record_json

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
    # Where the first batch starts in the file (see LogFile); None: at its start.
    position: Position | None = None
    skip: frozenset[int] = frozenset()
    # Evaluate the first batch only, rule by rule, announcing each rule and timing it (after
    # an overrun): the supervisor then knows which rule to blame.
    isolate: bool = False
    # Only records whose eventTime is in it are evaluated (`scan --since/--until`).
    window: EventWindow | None = None


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
    log_file = LogFile(decompress(job.payload, job.max_bytes), job.position)
    number = job.first_batch
    while not log_file.done:
        result = _evaluate_batch(conn, rules, job, log_file, number)
        result.seconds = time.process_time() - started
        started = time.process_time()
        # Where the next batch starts: a replacement worker resumes there.
        _send(conn, ("batch", number, log_file.position, result))
        number += 1
        if job.isolate:
            break
    conn.send(("done", number, log_file.done))


def _evaluate_batch(
    conn: Connection, rules: RuleSet, job: Job, log_file: LogFile, number: int
) -> Evaluation:
    if job.isolate:
        part, outside = _in_window(log_file.read(job.batch_size), job.window)
        result = rules.evaluate_rule_by_rule(
            part.records, job.skip, lambda rule_index: conn.send(("rule", rule_index)), part.texts
        )
        result.out_of_range = outside
        return _finished(result, part)
    result = Evaluation()
    remaining = job.batch_size
    # Decoded and evaluated a slice at a time, while its records are in the CPU's caches.
    while remaining > 0 and not log_file.done:
        part = log_file.read(min(EVALUATION_SLICE, remaining))
        remaining -= part.entries
        part, outside = _in_window(part, job.window)
        try:
            evaluation = rules.evaluate(part.records, job.skip, part.texts)
        except Exception:
            # Not a jq error (those are counted where they happen): a record too deep for
            # Python's recursion limit, or memory. The slice again, each rule contained.
            evaluation = rules.evaluate_each(part.records, job.skip, part.texts)
        evaluation.out_of_range = outside
        result.merge(_finished(evaluation, part))
    return result


def _in_window(part: Slice, window: EventWindow | None) -> tuple[Slice, int]:
    """The slice with only the records in the window, and how many were left out."""
    if window is None:
        return part, 0
    contains = window.contains
    keep = [contains(record.get("eventTime")) for record in part.records]
    records = [record for record, kept in zip(part.records, keep, strict=True) if kept]
    texts = (
        None
        if part.texts is None
        else [text for text, kept in zip(part.texts, keep, strict=True) if kept]
    )
    return replace(part, records=records, texts=texts), len(part.records) - len(records)


def _finished(result: Evaluation, part: Slice) -> Evaluation:
    """A slice's evaluation made ready to send: what was skipped counted, and each matched
    record turned into its JSON text once, however many rules matched it (its decoded form is
    then freed with the slice)."""
    result.records_invalid += part.invalid
    for failure in part.failures:
        result.add_failure(failure)
    result.oldest_event_time, result.newest_event_time = _event_time_range(part.records)
    if result.matches:
        texts = part.texts or [None] * len(part.records)
        text_of = {id(record): text for record, text in zip(part.records, texts, strict=True)}
        shared: dict[int, Any] = {}
        for number, match in enumerate(result.matches):
            key = id(match.record)
            crossing = shared.get(key)
            if crossing is None:
                crossing = shared[key] = record_json(match.record, text_of.get(key))
            result.matches[number] = replace(match, record=crossing)
    return result


def _send(conn: Connection, message: tuple[Any, ...]) -> None:
    """Send a batch's reply. An annotation nested deeper than pickle goes (a rule can build
    one) crosses as its JSON text instead; nothing is sent until the whole reply pickles."""
    try:
        conn.send(message)
    except RecursionError:
        result: Evaluation = message[-1]
        result.matches = [_portable(match) for match in result.matches]
        conn.send(message)


def _portable(match: Match) -> Match:
    if isinstance(match.annotation, dict | list):
        try:
            pickle.dumps(match.annotation, pickle.HIGHEST_PROTOCOL)
        except RecursionError:
            return replace(match, annotation=JSONText(dumps(match.annotation)))
    return match


def _event_time_range(records: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    # ISO 8601 UTC times in one format compare correctly as strings.
    times = [t for r in records if isinstance(t := r.get("eventTime"), str)]
    return min(times, default=None), max(times, default=None)


def limit_memory(allowance: int | None) -> None:
    """Let this process allocate at most `allowance` bytes more than it holds now (its data
    segment, RLIMIT_DATA): past it an allocation fails, which Python raises as MemoryError
    (orjson as SystemError), and a record, file or rule that needs more fails alone (libjq
    aborts the process instead: the pool then quarantines the rule). Without /proc (not
    Linux), nothing is limited."""
    if not allowance:
        return
    try:
        with open("/proc/self/status") as status:
            data_kb = next(int(line.split()[1]) for line in status if line.startswith("VmData:"))
    except (OSError, StopIteration, ValueError):
        return
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = data_kb * 1024 + allowance
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def worker_main(
    conn: Connection, sources: Sequence[RuleSource], memory_allowance: int | None = None
) -> None:
    """A worker's life: scrub the environment, compile the rules, cap its memory, then serve
    jobs until told to stop (None) or the pipe closes."""
    scrub_environment()
    rules = RuleSet(sources, validated=True)
    limit_memory(memory_allowance)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            job = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if job is None:
            return
        handle(conn, rules, job)


def handle(conn: Connection, rules: RuleSet, job: Job) -> None:
    """Serve one job; whatever goes wrong is the object's error, sent as its reply: the
    worker neither dies nor prints a traceback, and serves the next job."""
    try:
        serve(conn, rules, job)
    except ObjectError as exc:
        conn.send(("object_error", exc.reason, str(exc)))
    except MemoryError:
        conn.send(("object_error", "too_large", "out of memory while reading the object"))
    except Exception as exc:
        # Unforeseen: the object fails (and comes back), named; nothing else is lost.
        message = f"{type(exc).__name__}: {exc}"[:500]
        conn.send(("object_error", f"internal_{type(exc).__name__}", message))
