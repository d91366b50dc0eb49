"""`slack_webhook`: POST a Block Kit message to a Slack incoming webhook.

The message keeps the original's content (alert name, description, match, the CloudTrail
record) and adds the rule's title, severity, tags and runbook. Severity is shown by a coloured
emoji in the header rather than a legacy attachment's colour bar: Slack documents secondary
attachments as legacy content that may be collapsed or shown less prominently, while blocks are
always shown in full, and the emoji also shows in notifications and on mobile.

Slack rejects a message that breaks Block Kit's limits (a section's text 3,000 characters, a
header 150, a field 2,000, 50 blocks), so every text is measured after mrkdwn escaping: the
record and the match are split over a few sections, and a record too large even for that is
replaced by its marker (eventID and the other identifying fields) followed by an excerpt, each
cut visibly marked `(truncated)`. The name, description, match and eventID are never lost.

The webhook URL is a credential (anyone holding it can post to the channel): it is kept in a
Secret (or an `env:`/`ssm:`/`secretsmanager:` reference) and never appears in a log line, an
error or a repr.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import orjson

from tattletail.alerts import Alert
from tattletail.destinations import http
from tattletail.destinations.base import (
    DeliveryContext,
    DeliveryError,
    Destination,
    DestinationConfigError,
    secret_setting,
)
from tattletail.destinations.budget import (
    TRUNCATED,
    cut_text,
    one_line,
    record_marker,
)
from tattletail.json_output import dumps
from tattletail.records import plain
from tattletail.secret import Secret

# Block Kit's documented limits.
SECTION_TEXT_LIMIT = 3000
HEADER_TEXT_LIMIT = 150
FIELD_TEXT_LIMIT = 2000
MAX_BLOCKS = 50
# How much of a message the record and the match may take: a typical record (2-8 KB
# pretty-printed) fits whole; anything larger is a wall no reader scrolls through in Slack.
RECORD_SECTIONS = 4
MATCH_SECTIONS = 2
DESCRIPTION_SECTIONS = 2
FALLBACK_TEXT_LIMIT = 1000
SEVERITY_MARKERS = {
    "critical": "\N{LARGE RED CIRCLE}",
    "high": "\N{LARGE ORANGE CIRCLE}",
    "medium": "\N{LARGE YELLOW CIRCLE}",
    "low": "\N{LARGE BLUE CIRCLE}",
    "info": "\N{MEDIUM WHITE CIRCLE}",
}
RECORD_LABEL = "*CloudTrail Record*"
_FENCES = len("\n``````")


def severity_marker(severity: str) -> str:
    return SEVERITY_MARKERS.get(severity, SEVERITY_MARKERS["info"])


def escape(text: str) -> str:
    """Slack mrkdwn's three control characters, escaped as Slack documents; a triple backtick
    inside a code block is broken up so it cannot close the block early."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return escaped.replace("```", "``\u200b`")


def _safe_cut(escaped: str, at: int) -> int:
    """`at`, moved back to the start of an escape (`&amp;`) it would otherwise split."""
    amp = escaped.rfind("&", max(0, at - 4), at)
    if amp != -1 and ";" not in escaped[amp:at]:
        return amp
    return at


def _pack(text: str, capacity: int) -> list[str]:
    """The escaped text in pieces of at most `capacity` characters, cut at line ends where
    possible (an overlong line fills the piece it starts in) and never inside an escape."""
    pieces: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        escaped = escape(line)
        if len(current) + len(escaped) <= capacity:
            current += escaped
            continue
        if len(escaped) <= capacity:
            pieces.append(current)
            current = escaped
            continue
        while len(current) + len(escaped) > capacity:
            cut = _safe_cut(escaped, capacity - len(current))
            pieces.append(current + escaped[:cut])
            current, escaped = "", escaped[cut:]
        current += escaped
    if current:
        pieces.append(current)
    return [piece.rstrip("\n") or " " for piece in pieces]


def _end_with(piece: str, capacity: int, marker: str) -> str:
    """The piece cut so that `marker` fits after it within `capacity`."""
    if len(piece) + len(marker) <= capacity:
        return piece + marker
    return piece[: _safe_cut(piece, capacity - len(marker))] + marker


def _code_sections(label: str, text: str, max_sections: int) -> tuple[list[dict[str, Any]], bool]:
    """`text` as fenced code in at most `max_sections` sections, the first one labelled;
    return the blocks and whether the text had to be cut."""
    capacity = SECTION_TEXT_LIMIT - len(label) - _FENCES
    pieces = _pack(text, capacity)
    cut = len(pieces) > max_sections
    if cut:
        pieces = pieces[:max_sections]
        pieces[-1] = _end_with(pieces[-1], capacity, "\n" + TRUNCATED)
    blocks = [
        _section(f"{label if index == 0 else ''}\n```{piece}```".lstrip("\n"))
        for index, piece in enumerate(pieces)
    ]
    return blocks, cut


def _text_sections(label: str, text: str, max_sections: int) -> list[dict[str, Any]]:
    capacity = SECTION_TEXT_LIMIT - len(label) - 1
    pieces = _pack(text, capacity) if text.strip() else ["_(none)_"]
    if len(pieces) > max_sections:
        pieces = pieces[:max_sections]
        pieces[-1] = _end_with(pieces[-1], capacity, " " + TRUNCATED)
    return [
        _section(f"{label}\n{piece}" if index == 0 else piece) for index, piece in enumerate(pieces)
    ]


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(alert: Alert) -> dict[str, Any]:
    elements = [f"*Severity:* {severity_marker(alert.severity)} {escape(alert.severity)}"]
    if alert.tags:
        elements.append("*Tags:* " + " ".join(f"`{escape(tag)}`" for tag in alert.tags))
    if alert.runbook:
        runbook = alert.runbook.strip()
        if runbook.startswith(("https://", "http://")) and not any(c in runbook for c in "<>|"):
            elements.append(f"*Runbook:* <{runbook}|{escape(cut_text(runbook, 200))}>")
        else:
            elements.append(f"*Runbook:* {escape(runbook)}")
    if alert.source:
        elements.append(f"*Source:* {escape(alert.source)}")
    return {
        "type": "context",
        "elements": [
            {"type": "mrkdwn", "text": cut_text(element, FIELD_TEXT_LIMIT)} for element in elements
        ],
    }


def _record_blocks(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    pretty = dumps(plain(record), orjson.OPT_INDENT_2).decode()
    blocks, cut = _code_sections(RECORD_LABEL, pretty, RECORD_SECTIONS)
    if not cut:
        return blocks
    # Too large for Slack: the marker keeps eventID and who/what/when, then as much of the
    # record's start as the remaining sections hold.
    size = len(dumps(record))
    marker = dumps(record_marker(record, size), orjson.OPT_INDENT_2).decode()
    label = f"{RECORD_LABEL} (truncated: {size:,} bytes, too large for Slack)"
    head, _ = _code_sections(label, marker, 1)
    excerpt, _ = _code_sections("*Record excerpt*", pretty, RECORD_SECTIONS - 1)
    return head + excerpt


def render(alert: Alert) -> dict[str, Any]:
    """The webhook's JSON body, within Block Kit's limits."""
    # Slack counts an emoji as two characters (UTF-16): keep three for it and the space.
    heading = cut_text(one_line(alert.heading), HEADER_TEXT_LIMIT - 3)
    header = f"{severity_marker(alert.severity)} {heading}"
    name = cut_text(escape(one_line(alert.rule_name)), FIELD_TEXT_LIMIT - len("*Alert Name*\n"))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Alert Name*\n{name}"},
                {"type": "mrkdwn", "text": f"*Event*\n{escape(_event_summary(alert.record))}"},
            ],
        },
        *_text_sections("*Description*", alert.description, DESCRIPTION_SECTIONS),
        _context(alert),
    ]
    annotation = alert.pretty_match()
    if annotation is not None:
        blocks += _code_sections("*Match*", annotation, MATCH_SECTIONS)[0]
    blocks += _record_blocks(alert.record)
    return {
        "text": cut_text(f"Tattletail: {one_line(alert.heading)}", FALLBACK_TEXT_LIMIT),
        "blocks": blocks[:MAX_BLOCKS],
    }


def _event_summary(record: Mapping[str, Any]) -> str:
    """`eventName` and `eventID`, shown beside the name so they survive any truncation."""
    parts = [str(record.get(key)) for key in ("eventName", "eventID") if record.get(key)]
    return cut_text(" ".join(parts) or "unknown", 500)


@dataclass(frozen=True)
class SlackWebhookDestination(Destination):
    type_name: ClassVar[str] = "slack_webhook"
    # Slack: incoming webhooks post about one message per second, short bursts tolerated.
    default_rate: ClassVar[float | None] = 1.0
    default_burst: ClassVar[int] = 3
    webhook_url: Secret

    @classmethod
    def from_config(cls, dest_id: str, settings: Mapping[str, Any]) -> Self:
        problems: list[str] = []
        url = secret_setting(settings, "webhook_url", problems)
        if url is not None and not url.is_reference and not _is_http_url(url.reveal()):
            problems.append("destination.webhook_url must be an http(s) URL")
        if problems or url is None:
            raise DestinationConfigError(problems)
        return cls(id=dest_id, webhook_url=url)

    async def send(self, alert: Alert, context: DeliveryContext) -> None:
        url = await context.reveal(self.webhook_url)
        if not _is_http_url(url):
            raise DeliveryError(
                f"slack webhook: {self.webhook_url.reference} is not an http(s) URL"
            )
        try:
            await http.post(
                context,
                url,
                dumps(render(alert)),
                {"Content-Type": "application/json; charset=utf-8"},
                what="slack webhook",
                # Slack answers 200 "ok"; anything else was not posted.
                delivered=lambda status: status == 200,
            )
        except http.HttpStatusError as exc:
            if exc.refused_credentials:
                # A removed webhook or a rotated URL: look the reference up again next time.
                context.secrets.forget(self.webhook_url)
            raise


def _is_http_url(value: str) -> bool:
    return value.startswith(("https://", "http://"))
