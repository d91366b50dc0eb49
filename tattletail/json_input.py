"""Reading JSON: orjson, and where orjson refuses a value that libjq reads, a lenient reader.

libjq defines what a rule sees, and it reads more than orjson: nesting up to 10,000 levels
(orjson: 1,024), numbers beyond a double's range (`1e400`, read as the largest double), `NaN`
and `Infinity`, bytes that are not UTF-8 (read as U+FFFD). A record holding one of those is
still a record to evaluate: a caller who can write one must not be able to hide the others.
The lenient reader is the standard library's json with libjq's rules as hooks; it is slower,
and runs only where orjson refused. It also finds where a value ends, which is how a log file
is read on past a record its layout did not predict.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Iterator
from typing import Any

import orjson

# libjq's parser gives up deeper than this ("Exceeds depth limit for parsing"), counting an
# array as one level and an object as two (its key is a level of its parser's stack too).
MAX_DEPTH = 10_000
_LARGEST_DOUBLE = sys.float_info.max
# The first window read for a value of unknown length; doubled until the value fits.
_FIRST_WINDOW = 64 * 1024
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_WHITESPACE = b" \t\r\n"


class UnreadableJSON(ValueError):
    """A JSON text that neither orjson nor libjq's rules can read; `reason` is a metric label."""

    def __init__(self, reason: str, message: str, end: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        # Where the value ends, when that is known (it was read, then refused).
        self.end = end


def _number(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        # libjq keeps the literal but computes with the largest double, as here.
        return _LARGEST_DOUBLE if value > 0 else -_LARGEST_DOUBLE
    return value


def _integer(text: str) -> int | float:
    value = int(text)
    # As orjson reads them: 64-bit integers stay integers, others become doubles.
    if -(2**63) <= value < 2**64:
        return value
    return _number(text)


_CONSTANTS = {"NaN": float("nan"), "Infinity": _LARGEST_DOUBLE, "-Infinity": -_LARGEST_DOUBLE}
_DECODER = json.JSONDecoder(
    parse_float=_number, parse_int=_integer, parse_constant=_CONSTANTS.__getitem__
)


def loads(text: bytes | memoryview) -> Any:
    """The one JSON value in `text`: orjson's reading, else the lenient one; UnreadableJSON
    when neither reads it."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    data = bytes(text)
    start = _skip_whitespace(data, 0, len(data))
    value, end = read_value(data, start, len(data))
    if _skip_whitespace(data, end, len(data)) != len(data):
        raise UnreadableJSON("invalid_json", f"unexpected content after the value at byte {end}")
    return value


def read_value(data: bytes, start: int, stop: int, guess: int = 0) -> tuple[Any, int]:
    """The JSON value that starts at data[start] (not whitespace) and ends before `stop`, read
    leniently, and the offset just past it. `guess` is where it probably ends, if known: the
    reader starts with that much and reads more only if the value goes on."""
    end = min(stop, start + max(guess - start, _FIRST_WINDOW))
    while True:
        window = data[start:end].decode("utf-8", "surrogateescape")
        try:
            with depth_allowed():
                value, length = _DECODER.raw_decode(window)
        except json.JSONDecodeError as exc:
            cut_short = exc.msg.startswith("Unterminated string") or exc.pos >= len(window) - 1
            if cut_short and end < stop:
                end = min(stop, start + 2 * (end - start))
                continue
            at = start + len(window[: exc.pos].encode("utf-8", "surrogateescape"))
            raise UnreadableJSON("invalid_json", f"{exc.msg} at byte {at}") from None
        except RecursionError:
            raise UnreadableJSON(
                "too_deep", f"nested deeper than {MAX_DEPTH:,} levels (libjq's limit too)"
            ) from None
        end = start + len(window[:length].encode("utf-8", "surrogateescape"))
        if window.count("[", 0, length) + 2 * window.count("{", 0, length) > MAX_DEPTH and (
            _depth(value) > MAX_DEPTH
        ):
            raise UnreadableJSON(
                "too_deep", f"nested deeper than {MAX_DEPTH:,} levels (libjq's limit too)", end
            )
        if _LONE_SURROGATE.search(window, 0, length):
            value = _repaired(value)
        return value, end


def _depth(value: Any) -> int:
    """How deep a value goes as libjq's parser counts (an object two levels, an array one),
    without recursion."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            depth += 2
            deepest = max(deepest, depth)
            stack.extend((child, depth) for child in item.values())
        elif isinstance(item, list):
            depth += 1
            deepest = max(deepest, depth)
            stack.extend((child, depth) for child in item)
    return deepest


def _skip_whitespace(data: bytes, position: int, stop: int) -> int:
    while position < stop and data[position] in _WHITESPACE:
        position += 1
    return position


@contextlib.contextmanager
def depth_allowed(levels: int = MAX_DEPTH) -> Iterator[None]:
    """Let the C decoder nest `levels` deep: its recursion is counted like Python frames
    (a worker's main thread has the stack for it: 10,000 levels use a few MB)."""
    limit = sys.getrecursionlimit()
    # The frames already on the stack count too: a few dozen, well inside the margin.
    sys.setrecursionlimit(max(limit, levels + 100))
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


def _repair_text(text: str) -> str:
    # A byte that is not UTF-8 and an escaped lone surrogate both read as U+FFFD, as in libjq.
    if not _LONE_SURROGATE.search(text):
        return text
    return _LONE_SURROGATE.sub("\ufffd", text)


def _repaired(value: Any) -> Any:
    """The value with every lone surrogate in its strings and keys replaced (no recursion)."""
    if isinstance(value, str):
        return _repair_text(value)
    if not isinstance(value, dict | list):
        return value
    root: list[Any] = [value]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        container, key = stack.pop()
        item = container[key]
        if isinstance(item, str):
            container[key] = _repair_text(item)
        elif isinstance(item, list):
            stack.extend((item, n) for n in range(len(item)))
        elif isinstance(item, dict):
            if any(_LONE_SURROGATE.search(k) for k in item):
                item = container[key] = {_repair_text(k): v for k, v in item.items()}
            stack.extend((item, k) for k in item)
    return root[0]
