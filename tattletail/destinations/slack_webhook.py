"""`slack_webhook`: POST a Block Kit message to a Slack incoming webhook.

The webhook URL is a credential (anyone holding it can post to the channel): it is kept in a
Secret and never appears in a log line, an error or a repr.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import aiohttp

from tattletail.alerts import Alert
from tattletail.destinations.base import (
    DeliveryContext,
    DeliveryError,
    Destination,
    DestinationConfigError,
    required_string,
)
from tattletail.secret import Secret

# Slack rejects a section text over 3,000 characters; keep room for the code fence.
TEXT_LIMIT = 3000
TRUNCATED = "\n… (truncated)"


def _code(label: str, text: str) -> dict[str, Any]:
    room = TEXT_LIMIT - len(label) - len("\n``````")
    if len(text) > room:
        text = text[: room - len(TRUNCATED)] + TRUNCATED
    return {"type": "section", "text": {"type": "mrkdwn", "text": f"{label}\n```{text}```"}}


def _field(label: str, text: str) -> dict[str, Any]:
    return {
        "type": "section",
        "text": {"type": "mrkdwn", "text": label},
        "fields": [{"type": "plain_text", "text": text[:2000] or " "}],
    }


def render(alert: Alert) -> dict[str, Any]:
    """The webhook's JSON body: the original's layout (header, name, description, record,
    match) with every text kept within Slack's limits."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Cloudtrail Tattletail event"}},
        _field("*Alert Name*", alert.rule_name),
        _field("*Description*", alert.description),
    ]
    annotation = alert.pretty_match()
    if annotation is not None:
        blocks.append(_code("*Match*", annotation))
    blocks.append(_code("*Cloudtrail Record*", alert.pretty_record()))
    return {"text": f"Tattletail: {alert.rule_name}", "blocks": blocks}


@dataclass(frozen=True)
class SlackWebhookDestination(Destination):
    type_name: ClassVar[str] = "slack_webhook"
    webhook_url: Secret

    @classmethod
    def from_config(cls, dest_id: str, settings: Mapping[str, Any]) -> Self:
        problems: list[str] = []
        url = required_string(settings, "webhook_url", problems)
        if url and not url.startswith(("https://", "http://")):
            problems.append("destination.webhook_url must be an http(s) URL")
        if problems:
            raise DestinationConfigError(problems)
        return cls(id=dest_id, webhook_url=Secret(url))

    async def send(self, alert: Alert, context: DeliveryContext) -> None:
        try:
            async with context.http.post(self.webhook_url.reveal(), json=render(alert)) as response:
                body = (await response.text())[:200]
                if response.status != 200:
                    raise DeliveryError(f"slack webhook answered HTTP {response.status}: {body}")
        except aiohttp.ClientError as exc:
            # aiohttp's messages can carry the URL: name only the failure's kind.
            raise DeliveryError(f"slack webhook request failed: {type(exc).__name__}") from None
