"""Writing JSON: orjson, and the same text where orjson refuses a value.

orjson reads 1,024 levels of nesting but writes only 255, and refuses integers beyond 64 bits
and strings holding lone surrogates. Records and rule outputs can hold all three (a caller
nests a policy document 300 levels deep; a libjq rule outputs `100000000000000000000`), and a
security tool must still evaluate, send and print them. `dumps` is the one way Tattletail
writes JSON: orjson's bytes whenever orjson can write the value, else the same layout from a
writer with no depth limit, numbers as libjq writes them (an integer as all its digits) and a
lone surrogate as U+FFFD (as libjq reads one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

_INDENT = orjson.OPT_INDENT_2
_SORT_KEYS = orjson.OPT_SORT_KEYS
_NON_STR_KEYS = orjson.OPT_NON_STR_KEYS


class JSONText:
    """A JSON value kept as the text already written for it (by a rule worker): `dumps` puts
    the text into its output as it is, without decoding it."""

    __slots__ = ("json",)

    def __init__(self, json: bytes) -> None:
        self.json = json

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JSONText) and other.json == self.json

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (JSONText, (self.json,))

    def __repr__(self) -> str:
        return f"JSONText({self.json[:60]!r})"


def json_default(value: Any) -> Any:
    """orjson's `default`: a JSONText (a RecordJSON too) goes into the output as its text."""
    if isinstance(value, JSONText):
        return orjson.Fragment(value.json)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(
    value: Any, option: int = 0, default: Callable[[Any], Any] | None = json_default
) -> bytes:
    """`value` as JSON (orjson's OPT_INDENT_2, OPT_SORT_KEYS and OPT_NON_STR_KEYS honoured);
    TypeError only for a value that is not JSON at all (and that `default` does not turn
    into JSON)."""
    try:
        return orjson.dumps(value, default=default, option=option)
    except TypeError:  # orjson.JSONEncodeError included
        return _Writer(option, default).write(value)


class _Writer:
    """What orjson would write, built without recursion: containers here, leaves by orjson."""

    def __init__(self, option: int, default: Callable[[Any], Any] | None) -> None:
        self._indent = bool(option & _INDENT)
        self._sort_keys = bool(option & _SORT_KEYS)
        self._non_str_keys = bool(option & _NON_STR_KEYS)
        self._default = default

    def write(self, value: Any) -> bytes:
        parts: list[bytes] = []
        # Work to do, last first: a value at a depth, or bytes written as they are.
        work: list[Any] = [(value, 0)]
        while work:
            item = work.pop()
            if item.__class__ is bytes:
                parts.append(item)
                continue
            value, depth = item
            if isinstance(value, dict):
                self._push_object(value, depth, work, parts)
            elif isinstance(value, list | tuple):
                self._push_array(value, depth, work, parts)
            else:
                parts.append(self._leaf(value, depth, work))
        return b"".join(parts)

    def _newline(self, depth: int) -> bytes:
        return b"\n" + b"  " * depth

    def _push_object(
        self, value: dict[Any, Any], depth: int, work: list[Any], parts: list[bytes]
    ) -> None:
        if not value:
            parts.append(b"{}")
            return
        items = list(value.items())
        if any(not isinstance(key, str) for key, _ in items):
            if not self._non_str_keys:
                raise TypeError("Dict key must be str")
            # As orjson writes such a key: its JSON text, as a string.
            items = [(_key_text(key), item) for key, item in items]
        if self._sort_keys:
            items.sort(key=lambda item: item[0])
        inner = self._newline(depth + 1) if self._indent else b""
        colon = b": " if self._indent else b":"
        work.append(self._newline(depth) + b"}" if self._indent else b"}")
        for number in range(len(items) - 1, -1, -1):
            key, item = items[number]
            work.append((item, depth + 1))
            separator = (b"{" if number == 0 else b",") + inner
            work.append(separator + _string(key) + colon)

    def _push_array(
        self, value: list[Any] | tuple[Any, ...], depth: int, work: list[Any], parts: list[bytes]
    ) -> None:
        if not value:
            parts.append(b"[]")
            return
        inner = self._newline(depth + 1) if self._indent else b""
        work.append(self._newline(depth) + b"]" if self._indent else b"]")
        for number in range(len(value) - 1, -1, -1):
            work.append((value[number], depth + 1))
            work.append((b"[" if number == 0 else b",") + inner)

    def _leaf(self, value: Any, depth: int, work: list[Any]) -> bytes:
        if isinstance(value, str):
            return _string(value)
        if isinstance(value, int) and not isinstance(value, bool):
            # All the digits: how libjq writes an integer it read (its literal is kept), and
            # how the jq binding hands back every integral number.
            return int.__str__(value).encode()
        try:
            return orjson.dumps(value, default=self._default)
        except TypeError:
            if self._default is None:
                raise
            # `default` gave a container (or something else orjson cannot write): write that.
            replaced = self._default(value)
            if replaced is value:
                raise
            work.append((replaced, depth))
            return b""


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return key
    return orjson.dumps(key).decode().strip('"')


def _string(text: str) -> bytes:
    try:
        return orjson.dumps(text)
    except TypeError:
        # Lone surrogates: orjson refuses them, libjq reads each as U+FFFD.
        repaired = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return orjson.dumps(repaired)
