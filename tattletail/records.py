"""The records stage: a log file's CloudTrail records, read a slice at a time.

Accepted shapes: a CloudTrail document `{"Records": [...]}` (what S3 receives), a JSON array of
events (what `aws cloudtrail lookup-events` and many datasets give), one event, or JSON Lines.

One bad entry costs only itself. An entry that is not a JSON object (a number, a string, null)
is skipped and counted (`invalid`). A record orjson refuses but libjq reads (deep nesting,
`1e400`, bytes that are not UTF-8) is read by the lenient reader and evaluated like any other
(`tattletail.json_input`). A record nobody can read (not JSON, nested deeper than libjq reads,
too large for the worker's memory) is a `RecordFailure` naming its eventID and why, and the
records after it are still read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from tattletail import json_input
from tattletail.json_input import UnreadableJSON
from tattletail.json_output import JSONText
from tattletail.objects import ObjectError

# How CloudTrail writes a log file: one compact document, `{"Records":[{"eventVersion":...},...]}`.
_DOCUMENT_HEAD = b'{"Records":[{"eventVersion":'
_RECORDS_START = len(b'{"Records":[')
_RECORD_HEAD = b'{"eventVersion":'
_BETWEEN_RECORDS = b'},{"eventVersion":'
_DOCUMENT_TAIL = b"]}"
# Where the array of records starts in a document in any other layout (when it is read entry
# by entry, after orjson refused it whole).
_ARRAY_START = re.compile(rb'\A\s*(?:\{\s*"Records"\s*:\s*)?\[')
# A record's eventID where the record itself cannot be read (the last one: CloudTrail writes
# eventID after the caller's requestParameters).
_EVENT_ID = re.compile(rb'"eventID"\s*:\s*"([^"\\]{1,256})"')
# Where the next record starts, found without reading, past a record that could not be read:
# `}` `,` `{"eventVersion":` with any whitespace between. Inside a JSON string the quote before
# eventVersion would be escaped, so this is always the end of one object and the start of
# another in an array (of records, or nested in the unreadable record: then its pieces are read
# as records of their own, the price of not losing the records after it).
_BOUNDARY = re.compile(rb'\}\s*,\s*(?=\{\s*"eventVersion"\s*:)')
_EVENT_ID_WINDOW = 64 * 1024
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_WHITESPACE = b" \t\r\n"


# Where a reading of a log file goes on: see LogFile.
Position = tuple[str, int]


@dataclass(frozen=True)
class RecordFailure:
    """A record that could not be read or evaluated; `reason` is a short metric label."""

    event_id: str
    reason: str
    message: str


@dataclass
class Slice:
    """Consecutive entries of a log file: the records, each one's JSON text where the file was
    read record by record (None where it was decoded whole), and what was skipped."""

    records: list[dict[str, Any]] = field(default_factory=list)
    texts: list[memoryview | None] | None = None
    invalid: int = 0
    failures: list[RecordFailure] = field(default_factory=list)

    @property
    def entries(self) -> int:
        return len(self.records) + self.invalid + len(self.failures)


def _event_id(text: bytes | memoryview, whole: bool = True) -> str:
    """The eventID in a record's text: the last one in a whole record (CloudTrail writes it
    after the caller's parameters), else the first one after the record's start."""
    found = _EVENT_ID.findall(text)
    return found[-1 if whole else 0].decode("utf-8", "replace") if found else ""


def _skip_whitespace(data: bytes, position: int, stop: int) -> int:
    while position < stop and data[position] in _WHITESPACE:
        position += 1
    return position


class LogFile:
    """A log file's entries, read in order from a position (a resumed reading starts there).

    A file laid out as CloudTrail writes it is cut at `},{"eventVersion":` without decoding,
    and each record decoded as it is read, so a slice is evaluated while its records are still
    in the CPU's caches and freed before the next is decoded. Inside a JSON string a bare
    quote is impossible, so such a cut always falls between two objects in an array: between
    records, or (when a record nests objects whose first key is eventVersion) inside one,
    where the text does not decode. Any text that does not decode is read again from its start
    by the lenient reader, which finds where the record really ends. Other layouts are decoded
    whole by orjson; one orjson refuses (or that would not fit the worker's memory decoded
    whole) is read entry by entry instead. JSON Lines are read line by line.

    `position` says where the next entry starts: ("byte", offset) where the file is read entry
    by entry, ("index", n) where it was decoded whole. A reading resumed elsewhere (another
    worker) starts from it whichever way that worker reads the file.
    """

    def __init__(self, data: bytes, position: Position | None = None) -> None:
        # isspace() stops at the first other byte; strip() would copy the whole file first.
        if not data or data.isspace():
            raise ObjectError("empty", "the object is empty (no JSON in it)")
        self._data = data
        self._view = memoryview(data)
        self._decoded: list[Any] | None = None
        self._lines = False
        self._compact = False
        self._stop = len(data)
        self.done = False
        records_end = _compact_records_end(data)
        if records_end is not None:
            self._compact = True
            self._stop = records_end
            self._at = _RECORDS_START
        else:
            # A reading resumed at a byte offset goes on entry by entry, as it began.
            self._at = self._open(data, whole=position is None or position[0] == "index")
        self._check_done()
        if position is not None:
            kind, at = position
            if kind == "byte" or self._decoded is not None:
                self._at = at
            else:
                # Decoded whole before, not now (memory): the entries before it are read again.
                while at > 0 and not self.done:
                    at -= self.read(min(at, 1000)).entries
        self._check_done()

    @property
    def position(self) -> Position:
        return ("index" if self._decoded is not None else "byte", self._at)

    def _open(self, data: bytes, whole: bool) -> int:
        """Decode a file in another layout whole, or find where to read it entry by entry;
        return the first position."""
        problem = "read entry by entry"
        try:
            if whole:
                self._decoded = _records_of(orjson.loads(data))
                return 0
        except orjson.JSONDecodeError as exc:
            problem = f"not valid JSON: {exc}"
        except (MemoryError, SystemError):
            # orjson reports running out of memory as a SystemError.
            problem = "too large to decode whole within the worker's memory"
        if _is_json_lines(data):
            self._lines = True
            return _skip_whitespace(data, 0, len(data))
        array = _ARRAY_START.match(data)
        if array is None:
            reason = "invalid_json" if problem.startswith("not valid") else "too_large"
            raise ObjectError(reason, problem)
        return array.end()

    def _check_done(self) -> None:
        if self._decoded is not None:
            self.done = self._at >= len(self._decoded)
        elif not self.done:
            self._at = _skip_whitespace(self._data, self._at, self._stop)
            self.done = self._at >= self._stop

    def read(self, count: int) -> Slice:
        """The next `count` entries (fewer at the end of the file; more when one JSON line is
        a whole CloudTrail document)."""
        if self._decoded is not None:
            entries = self._decoded[self._at : self._at + count]
            self._at += len(entries)
            records = [entry for entry in entries if isinstance(entry, dict)]
            self._check_done()
            return Slice(records, None, len(entries) - len(records))
        found = Slice(texts=[])
        while found.entries < count and not self.done:
            if self._lines:
                self._read_line(found)
            elif self._compact and self._data.startswith(_RECORD_HEAD, self._at):
                self._read_compact(found)
            else:
                self._read_entry(found)
            self._check_done()
        return found

    def _read_compact(self, found: Slice) -> None:
        # The hot path: one find and one orjson decode per record.
        data, start = self._data, self._at
        cut = data.find(_BETWEEN_RECORDS, start, self._stop)
        end = cut + 1 if cut != -1 else self._stop
        text = self._view[start:end]
        try:
            record = orjson.loads(text)
        except orjson.JSONDecodeError:
            self._read_entry(found, guess=end)
            return
        except (MemoryError, SystemError):
            self._fail(found, text, "too_large", "too large to decode within the worker's memory")
            self._at = end + 1 if cut != -1 else self._stop
            return
        found.records.append(record)
        assert found.texts is not None
        found.texts.append(text)
        self._at = end + 1 if cut != -1 else self._stop

    def _read_entry(self, found: Slice, guess: int = 0) -> None:
        """One entry from its first byte, by orjson up to the next record boundary when that
        reads as a whole record, else by the lenient reader; then past the comma after it."""
        data, start = self._data, self._at
        if not guess and not self._compact:
            # A file in another layout read entry by entry (it did not decode whole).
            boundary = _BOUNDARY.search(data, start, self._stop)
            if boundary is not None:
                guess = boundary.start() + 1
                text = self._view[start:guess]
                try:
                    value = orjson.loads(text)
                except (orjson.JSONDecodeError, MemoryError, SystemError):
                    pass
                else:
                    self._keep(found, value, text)
                    self._at = boundary.end()
                    return
        try:
            value, end = json_input.read_value(data, start, self._stop, guess)
        except (UnreadableJSON, MemoryError, SystemError) as exc:
            reason, message = (
                (exc.reason, str(exc))
                if isinstance(exc, UnreadableJSON)
                else ("too_large", "too large to decode within the worker's memory")
            )
            end = exc.end if isinstance(exc, UnreadableJSON) else None
            # Its eventID from its own text: up to its end or the next boundary, else what
            # follows its start.
            stop = end or guess
            text = self._view[start : stop or min(self._stop, start + _EVENT_ID_WINDOW)]
            self._fail(found, text, reason, message, whole=bool(stop))
            if end is None:
                # The boundary that ended its text is the next record's start.
                self._resync(guess - 1 if guess else start + 1)
                return
        else:
            self._keep(found, value, _as_read(self._view[start:end]))
        after = _skip_whitespace(data, end, self._stop)
        if after < self._stop and data[after] == ord(","):
            self._at = after + 1
        elif after >= self._stop:
            self.done = True
        elif data[after] == ord("]"):
            self.done = True
            if self._compact:
                # Not the one document it looked like: say so rather than stop in silence.
                message = f"the Records array ends at byte {after}, before the end of the file"
                self._fail(found, b"", "invalid_json", message)
        else:
            self._fail(found, b"", "invalid_json", f"unexpected content at byte {after}")
            self._resync(after)

    def _resync(self, after: int) -> None:
        """Go on at the first record boundary from `after`, past an entry whose end could not
        be found by reading it (see _BOUNDARY); with none, the rest of the file is that entry."""
        boundary = _BOUNDARY.search(self._data, after, self._stop)
        if boundary is None:
            self.done = True
        else:
            self._at = boundary.end()

    def _read_line(self, found: Slice) -> None:
        data, start = self._data, self._at
        newline = data.find(b"\n", start)
        end = len(data) if newline == -1 else newline
        self._at = end + 1
        if end == len(data):
            self.done = True
        line = self._view[start:end]
        try:
            value = json_input.loads(line)
        except UnreadableJSON as exc:
            number = data.count(b"\n", 0, start) + 1
            self._fail(found, line, exc.reason, f"line {number}: {exc}")
            return
        except (MemoryError, SystemError):
            number = data.count(b"\n", 0, start) + 1
            message = f"line {number}: too large to decode within the worker's memory"
            self._fail(found, line, "too_large", message)
            return
        inner = value.get("Records") if isinstance(value, dict) else None
        if isinstance(inner, list):
            for entry in inner:
                self._keep(found, entry, None)
        else:
            self._keep(found, value, _as_read(line))

    def _keep(self, found: Slice, value: Any, text: memoryview | None) -> None:
        if isinstance(value, dict):
            found.records.append(value)
            assert found.texts is not None
            found.texts.append(text)
        else:
            found.invalid += 1

    def _fail(
        self,
        found: Slice,
        text: bytes | memoryview,
        reason: str,
        message: str,
        whole: bool = True,
    ) -> None:
        found.failures.append(RecordFailure(_event_id(text, whole), reason, message))


def _as_read(text: memoryview) -> memoryview | None:
    """A record's own text, to give libjq and to send on, unless the lenient reader changed
    what it says (a lone surrogate escape, which libjq refuses, or bytes that are not UTF-8,
    which no receiver should get): then None, and the record is written again."""
    if _SURROGATE_ESCAPE.search(text):
        return None
    try:
        str(text, "utf-8")
    except UnicodeDecodeError:
        return None
    return text


def _compact_records_end(data: bytes) -> int | None:
    """Where the Records array ends, when the file is laid out as CloudTrail writes it: one
    document on one line (a JSON string holds no raw newline; JSON Lines do)."""
    if not data.startswith(_DOCUMENT_HEAD):
        return None
    end = len(data)
    while end and data[end - 1] in _WHITESPACE:
        end -= 1
    end -= len(_DOCUMENT_TAIL)
    if data[end : end + len(_DOCUMENT_TAIL)] != _DOCUMENT_TAIL or data.find(b"\n", 0, end) != -1:
        return None
    return end


def _records_of(document: Any) -> list[Any]:
    """The entries of a decoded log file; ObjectError when it is not one."""
    if isinstance(document, dict):
        records = document.get("Records")
        if isinstance(records, list):
            return records
        if "Records" not in document and "eventID" in document:
            return [document]
        raise ObjectError(
            "not_cloudtrail", "a JSON object without a 'Records' array is not a CloudTrail log"
        )
    if isinstance(document, list):
        return document
    raise ObjectError("not_cloudtrail", f"a JSON {_json_type(document)} is not a log file")


def _is_json_lines(data: bytes) -> bool:
    """Whether the file is JSON Lines: a first line that is a JSON object, and more lines."""
    start = _skip_whitespace(data, 0, len(data))
    newline = data.find(b"\n", start)
    if newline == -1 or not data[newline:].strip():
        return False
    try:
        return isinstance(json_input.loads(memoryview(data)[start:newline]), dict)
    except (UnreadableJSON, MemoryError, SystemError):
        return False


def read_all(data: bytes) -> Slice:
    """Every entry of a log file at once (tests, tools); ObjectError when it is not one."""
    log_file = LogFile(data)
    found = Slice()
    while not log_file.done:
        part = log_file.read(1000)
        found.records += part.records
        found.invalid += part.invalid
        found.failures += part.failures
    return found


def decode_records(data: bytes) -> list[dict[str, Any]]:
    """The records of a log file (what is skipped or fails is left out: see read_all)."""
    return read_all(data).records


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {str: "string", int: "number", float: "number", list: "array"}.get(type(value), "object")


class RecordJSON(JSONText, Mapping[str, Any]):
    """A record as the JSON text a rule worker sent back with a match, decoded on first read.

    Most alerts are only encoded again (printed, published, archived), and
    `tattletail.json_output.dumps` embeds the text as it is, so the main process never decodes
    those records. `event_id` is read in the worker, for alert ids and dedupe without a decode.
    """

    __slots__ = ("_decoded", "event_id")

    def __init__(self, json: bytes, event_id: str = "") -> None:
        self.json = json
        self.event_id = event_id
        self._decoded: dict[str, Any] | None = None

    @property
    def decoded(self) -> dict[str, Any]:
        if self._decoded is None:
            self._decoded = json_input.loads(self.json)
        return self._decoded

    def __getitem__(self, key: str) -> Any:
        return self.decoded[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.decoded.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.decoded)

    def __len__(self) -> int:
        return len(self.decoded)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RecordJSON):
            return self.decoded == other.decoded
        return self.decoded == other

    __hash__ = None  # type: ignore[assignment] # a record is a dict: not hashable either

    def __reduce__(self) -> tuple[Any, ...]:
        return (RecordJSON, (self.json, self.event_id))

    def __repr__(self) -> str:
        return f"RecordJSON({self.json[:60]!r}..., event_id={self.event_id!r})"


def plain(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record as a dict (decoding a RecordJSON), for what orjson cannot embed as text:
    pretty-printing, sorted keys."""
    if isinstance(record, RecordJSON):
        return record.decoded
    return record if isinstance(record, dict) else dict(record)
