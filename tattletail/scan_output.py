"""What `tattletail scan --dry-run` prints for each alert: one line of text for a person, or one
line of JSON for a program.

text: `time SEVERITY rule - title or match  by principal  from source-IP  in account/region`,
exactly one line of at most 200 characters, no header; on a terminal the severity and the rule
are coloured (unless NO_COLOR is set). Every value from the record is passed through
`text.one_line`, so a hostile field cannot move the cursor, recolour the screen or reorder the
line. json: the alert as the `stdout` destination prints it, with the ids of the destinations
it would have gone to, every character that a terminal could act on escaped as `\\uXXXX`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, BinaryIO

import orjson

from tattletail.alerts import Alert
from tattletail.json_output import dumps
from tattletail.text import fit, one_line, shorten

LINE_WIDTH = 200
# An IAM or STS ARN: its account, then what it names in it (user/alice, assumed-role/x/session).
_IAM_ARN = re.compile(r"arn:aws[a-z-]*:(?:iam|sts)::(\d{12}):(.+)", re.DOTALL)
SEVERITY_WIDTH = len("CRITICAL")
SEVERITY_STYLES = {
    "critical": "1;97;41",  # bold white on red
    "high": "1;31",
    "medium": "33",
    "low": "36",
    "info": "2",
}
BOLD = "1"
# In JSON output, characters outside printable ASCII that are not printable themselves (C1
# controls, DEL, bidi and zero-width characters, separators) are escaped: JSON allows it
# anywhere in a string, and all of them can only be inside strings.
_JSON_UNSAFE = re.compile(r"[^\x20-\x7e\n]")  # a raw \n is indentation: orjson escapes the rest


class Format(StrEnum):
    TEXT = "text"
    JSON = "json"


def default_format(stream: Any) -> Format:
    """text for a person at a terminal, JSON for a pipe or a file."""
    return Format.TEXT if _isatty(stream) else Format.JSON


def colour_wanted(stream: Any) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org) or TERM=dumb."""
    return _isatty(stream) and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def _isatty(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def principal(record: Mapping[str, Any]) -> str | None:
    """Who acted: the identity's ARN, else the service that acted for it, else its id."""
    identity = record.get("userIdentity")
    if not isinstance(identity, Mapping):
        return None
    for key in ("arn", "invokedBy", "principalId", "type"):
        value = identity.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _actor(record: Mapping[str, Any], account: str | None) -> str | None:
    """The principal, without its ARN's prefix when that names the account the line ends with
    (`user/alice`); a principal of another account keeps its whole ARN, and stands out."""
    who = principal(record)
    arn = _IAM_ARN.fullmatch(who) if who else None
    return arn.group(2) if arn and arn.group(1) == account else who


def _field(record: Mapping[str, Any], key: str) -> str | None:
    value = record.get(key)
    return value if isinstance(value, str) and value else None


def _detail(alert: Alert) -> str | None:
    """The title, else the match (a string as it is, anything else as compact JSON)."""
    if alert.title:
        return alert.title
    if alert.match is None:
        return None
    if isinstance(alert.match, str):
        return alert.match
    return dumps(alert.match).decode()


def _style(text: str, code: str, colour: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if colour and code and text else text


def text_line(
    alert: Alert,
    destinations: Sequence[str] | None = None,
    colour: bool = False,
    width: int = LINE_WIDTH,
) -> str:
    """One alert as one line of at most `width` characters (colour codes aside).

    `destinations`, when given (a dry run), end the line: `-> SNS, Slack`.
    """
    record = alert.record
    time = one_line(_field(record, "eventTime") or "-")[:25]
    severity = one_line(alert.severity.upper())[:SEVERITY_WIDTH].ljust(SEVERITY_WIDTH)
    # Where the record says the event happened, else where the alert does (from the log file's
    # key or the EventBridge event): a record copied under another account's folder keeps its own.
    account = _field(record, "recipientAccountId") or alert.account
    region = _field(record, "awsRegion") or alert.region
    # A whole ARN is cut in the middle, to keep its account and its name; `user/alice` or
    # `assumed-role/name/session` at the end.
    actor = _actor(record, account)
    # (prefix, value, cut in the middle) for each part that may be shortened.
    optional = [
        (" - ", _detail(alert), False),
        ("  by ", actor, actor == principal(record)),
        ("  from ", _field(record, "sourceIPAddress"), False),
        ("  in ", "/".join(v for v in (account, region) if v) or None, False),
    ]
    if destinations is not None:
        optional.append(("  -> ", ", ".join(destinations) or "(no destinations)", False))
    parts = [("", one_line(alert.rule_name), False)]
    parts.extend((prefix, one_line(value), middle) for prefix, value, middle in optional if value)
    fixed = len(time) + 1 + SEVERITY_WIDTH + 1 + sum(len(prefix) for prefix, _, _ in parts)
    widths = fit([len(value) for _, value, _ in parts], width - fixed)
    # A part cut to nothing is left out, its prefix too.
    pieces = [
        prefix + shorten(value, size, middle)
        for (prefix, value, middle), size in zip(parts, widths, strict=True)
        if size > 0
    ]
    rule, rest = (pieces[0], "".join(pieces[1:])) if widths[0] > 0 else ("", "".join(pieces))
    line_start = f"{time} {_style(severity, SEVERITY_STYLES.get(alert.severity, ''), colour)} "
    return line_start + _style(rule, BOLD, colour) + rest


def json_line(alert: Alert, destinations: Sequence[str] | None = None) -> bytes:
    """The `stdout` destination's line, plus `destinations` when given (a dry run)."""
    document = {**alert.message(), "source": alert.source}
    if destinations is not None:
        document["destinations"] = list(destinations)
    return safe_json(document) + b"\n"


def safe_json(document: Any, indent: bool = False) -> bytes:
    """`document` as Tattletail writes JSON (`json_output.dumps`), with every character a
    terminal could act on escaped as `\\uXXXX` (JSON requires only those below U+0020)."""
    data = dumps(document, orjson.OPT_INDENT_2 if indent else 0)
    if data.isascii() and b"\x7f" not in data:
        return data
    return _JSON_UNSAFE.sub(_json_escape, data.decode()).encode()


def _json_escape(match: re.Match[str]) -> str:
    char = match.group()
    if char.isprintable():
        return char
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # a UTF-16 surrogate pair, as JSON writes code points beyond the BMP
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


class AlertPrinter:
    """The sink of `scan --dry-run`: each alert as a line on `stream`, in `fmt`."""

    def __init__(self, stream: BinaryIO, fmt: Format, colour: bool = False) -> None:
        self.stream = stream
        self.format = fmt
        self.colour = colour

    async def __call__(self, alerts: Sequence[Alert]) -> None:
        if self.format is Format.JSON:
            lines = [json_line(alert, alert.destinations) for alert in alerts]
        else:
            lines = [
                (text_line(alert, alert.destinations, self.colour) + "\n").encode()
                for alert in alerts
            ]
        self.stream.write(b"".join(lines))
        self.stream.flush()
