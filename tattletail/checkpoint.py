"""What a backfill has enqueued, so that the same command rerun after a crash enqueues only the
rest.

The state is kept per *unit* (one date prefix of one account and region, see
`tattletail.listing`): a unit is done, or every key up to `after` (in S3's listing order) was
enqueued plus the keys in `sent` beyond it (batches acknowledged out of order). A resumed run
skips done units, lists the others from `after` (S3's StartAfter) and skips `sent`.

Two stores, one format (JSON Lines: a header naming the job, then one line per change):

* a local file is a journal: each acknowledged SendMessageBatch appends one line, flushed at
  once, so a run killed at any point re-sends at most the batches in flight that SQS had
  accepted and the journal had not yet recorded; the journal is compacted (rewritten as one
  line per unit, atomically) as it grows;
* an s3:// object cannot be appended to: the compacted state is written every
  `S3_FLUSH_SECONDS` and when the run ends (normally or on an error), so a run that is killed
  re-sends up to that many seconds of batches.

A re-sent key costs a second evaluation of one log file; with the dedupe table no alert is sent
twice.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

FORMAT = 1
S3_FLUSH_SECONDS = 5.0
# Journal lines after which a local checkpoint is rewritten compactly.
COMPACT_AFTER_LINES = 5000


class CheckpointError(Exception):
    """A checkpoint that belongs to another job, or cannot be read or written."""


@dataclass(frozen=True)
class Job:
    """What a backfill enqueues: a checkpoint resumes only the job it was written for."""

    bucket: str
    prefix: str
    since: str
    until: str
    queue: str
    destinations: tuple[str, ...] | None = None

    def describe(self) -> str:
        routed = f" to {', '.join(self.destinations)}" if self.destinations else ""
        return (
            f"s3://{self.bucket}/{self.prefix} from {self.since} to {self.until} into "
            f"{self.queue}{routed}"
        )


@dataclass
class UnitState:
    done: bool = False
    after: str | None = None
    sent: set[str] = field(default_factory=set)

    def covers(self, key: str) -> bool:
        return self.done or (self.after is not None and key <= self.after) or key in self.sent

    def advance(self, after: str) -> None:
        if self.after is None or after > self.after:
            self.after = after
        self.sent = {key for key in self.sent if key > after}


@dataclass
class State:
    run_id: str
    units: dict[str, UnitState] = field(default_factory=dict)
    enqueued: int = 0

    def unit(self, name: str) -> UnitState:
        return self.units.setdefault(name, UnitState())

    def apply(self, line: dict[str, Any]) -> None:
        name = line.get("u")
        if not isinstance(name, str):
            self.enqueued = int(line.get("enqueued", self.enqueued))
            return
        unit = self.unit(name)
        self.enqueued += int(line.get("n", 0))
        after = line.get("after")
        if isinstance(after, str):
            unit.advance(after)
        sent = line.get("sent")
        if isinstance(sent, list):
            unit.sent.update(key for key in sent if isinstance(key, str) and not unit.covers(key))
        if line.get("done") is True:
            unit.done, unit.after, unit.sent = True, None, set()

    def compact_lines(self) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = [{"enqueued": self.enqueued}]
        for name, unit in sorted(self.units.items()):
            if unit.done:
                lines.append({"u": name, "done": True})
            elif unit.after is not None or unit.sent:
                line: dict[str, Any] = {"u": name}
                if unit.after is not None:
                    line["after"] = unit.after
                if unit.sent:
                    line["sent"] = sorted(unit.sent)
                lines.append(line)
        return lines


def _header(job: Job, run_id: str) -> dict[str, Any]:
    return {"tattletail_backfill": FORMAT, "run": run_id, "job": asdict(job)}


def _parse(text: bytes, job: Job, where: str) -> State | None:
    """The state in a checkpoint's text; None when it is empty. A torn last line (a crash in
    the middle of a write) is ignored."""
    lines = text.splitlines()
    if not lines:
        return None
    try:
        header = orjson.loads(lines[0])
    except orjson.JSONDecodeError:
        raise CheckpointError(f"{where} is not a tattletail backfill checkpoint") from None
    if not isinstance(header, dict) or header.get("tattletail_backfill") != FORMAT:
        raise CheckpointError(f"{where} is not a tattletail backfill checkpoint")
    written = header.get("job", {})
    if isinstance(written.get("destinations"), list):
        written["destinations"] = tuple(written["destinations"])
    if written != asdict(job):
        try:
            other = Job(**written).describe()
        except TypeError:
            other = "another job"
        raise CheckpointError(
            f"{where} records a backfill of {other}, not of {job.describe()}: give another "
            "--checkpoint, or rerun that command"
        )
    state = State(str(header.get("run", "")))
    for number, raw in enumerate(lines[1:], 2):
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            if number == len(lines):
                break
            raise CheckpointError(f"{where}: line {number} is not JSON") from None
        if isinstance(line, dict):
            state.apply(line)
    return state


class Checkpoint:
    """A checkpoint being written: `record` each acknowledged batch, `close` at the end."""

    def __init__(self, location: str, job: Job, state: State) -> None:
        self.location = location
        self.job = job
        self.state = state

    @property
    def run_id(self) -> str:
        return self.state.run_id

    def unit(self, name: str) -> UnitState:
        return self.state.unit(name)

    async def record(
        self,
        unit: str,
        count: int,
        sent: list[str] | None = None,
        after: str | None = None,
        done: bool = False,
    ) -> None:
        line: dict[str, Any] = {"u": unit}
        if count:
            line["n"] = count
        if sent:
            line["sent"] = sent
        if after is not None:
            line["after"] = after
        if done:
            line["done"] = True
        self.state.apply(line)
        await self._journal(line)

    async def _journal(self, line: dict[str, Any]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def _text(self) -> bytes:
        lines = [_header(self.job, self.state.run_id), *self.state.compact_lines()]
        return b"".join(orjson.dumps(line) + b"\n" for line in lines)


class LocalCheckpoint(Checkpoint):
    def __init__(self, location: str, job: Job, state: State, fresh: bool) -> None:
        super().__init__(location, job, state)
        self.path = Path(location)
        self._lines = 0
        self._file: IO[bytes] | None = None
        # A new checkpoint is written at its first record: a run that fails before sending
        # anything (a wrong prefix) leaves no file behind.
        if not fresh:
            self._file = self.path.open("ab")

    async def _journal(self, line: dict[str, Any]) -> None:
        if self._file is None:
            self._compact()  # the header and the state, this line included
            return
        # Flushed to the kernel at once: a killed process loses nothing written.
        self._file.write(orjson.dumps(line) + b"\n")
        self._file.flush()
        self._lines += 1
        if self._lines >= COMPACT_AFTER_LINES:
            self._compact()

    def _compact(self) -> None:
        if self._file is not None:
            self._file.close()
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            with temporary.open("wb") as out:
                out.write(self._text())
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except OSError as exc:
            raise CheckpointError(f"cannot write the checkpoint {self.path}: {exc}") from None
        self._file = self.path.open("ab")
        self._lines = 0

    async def close(self) -> None:
        if self._file is not None:
            self._compact()
            self._file.close()
            self._file = None


class S3Checkpoint(Checkpoint):
    def __init__(
        self, location: str, job: Job, state: State, s3: Any, bucket: str, key: str
    ) -> None:
        super().__init__(location, job, state)
        self._s3, self._bucket, self._key = s3, bucket, key
        self._written = time.monotonic()
        self._dirty = True
        # One PUT at a time, each of the state as it is when it starts: concurrent PUTs could
        # land out of order and leave an older state last.
        self._writing = asyncio.Lock()

    async def _journal(self, line: dict[str, Any]) -> None:
        self._dirty = True
        if time.monotonic() - self._written >= S3_FLUSH_SECONDS and not self._writing.locked():
            await self.flush()

    async def flush(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        async with self._writing:
            if not self._dirty:
                return
            self._dirty = False
            body = self._text()
            try:
                await self._s3.put_object(Bucket=self._bucket, Key=self._key, Body=body)
            except (ClientError, BotoCoreError) as exc:
                self._dirty = True
                raise CheckpointError(
                    f"cannot write the checkpoint {self.location}: {exc}"
                ) from None
            self._written = time.monotonic()

    async def close(self) -> None:
        await self.flush()


async def open_checkpoint(location: str, job: Job, run_id: str, s3: Any = None) -> Checkpoint:
    """Open (or start) the checkpoint at a local path or an s3://bucket/key URI. A new one
    takes `run_id`; an existing one keeps its own, so a resumed run's messages name the same
    backfill."""
    if location.startswith("s3://"):
        bucket, _, key = location[5:].partition("/")
        if not bucket or not key:
            raise CheckpointError(f"not an s3://bucket/key URI: {location!r}")
        text = await _read_s3(s3, bucket, key, location)
        state = _parse(text, job, location) or State(run_id)
        return S3Checkpoint(location, job, state, s3, bucket, key)
    path = Path(location)
    try:
        text = path.read_bytes() if path.exists() else b""
    except OSError as exc:
        raise CheckpointError(f"cannot read the checkpoint {location}: {exc.strerror}") from None
    state = _parse(text, job, location)
    return LocalCheckpoint(location, job, state or State(run_id), fresh=state is None)


async def _read_s3(s3: Any, bucket: str, key: str, location: str) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = await s3.get_object(Bucket=bucket, Key=key)
        async with response["Body"] as body:
            return bytes(await body.read())
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
            return b""
        raise CheckpointError(f"cannot read the checkpoint {location}: {exc}") from None
    except BotoCoreError as exc:
        raise CheckpointError(f"cannot read the checkpoint {location}: {exc}") from None


def default_location(job: Job) -> str:
    """`tattletail-backfill-BUCKET-PREFIX-SINCE-UNTIL.checkpoint` in the working directory."""
    slug = "".join(c if c.isascii() and (c.isalnum() or c in "-._") else "_" for c in job.prefix)
    slug = slug.strip("_") or "all"
    if len(slug) > 80:
        import hashlib

        slug = slug[:60] + "-" + hashlib.sha256(job.prefix.encode()).hexdigest()[:12]
    return f"tattletail-backfill-{job.bucket}-{slug}-{job.since}-{job.until}.checkpoint"
