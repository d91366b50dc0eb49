"""`webhook`: POST each alert as JSON to any HTTP endpoint, optionally signed with HMAC-SHA256.

The body is the SNS message's keys (`alert.message()`) plus `alert_id` and `source`; an alert
too large for BODY_LIMIT has its record replaced by the marker (see budget.py).

Signing (when `secret` is set), so the receiver can tell the alert came from Tattletail and was
not replayed:

    X-Tattletail-Timestamp: <unix seconds>
    X-Tattletail-Signature: sha256=<hex of HMAC-SHA256(secret, "<timestamp>." + body bytes)>

The receiver recomputes the HMAC over the exact bytes it received, compares in constant time,
and rejects a timestamp more than a few minutes from its own clock (`verify` is the reference).
`X-Tattletail-Alert-Id` carries the alert id, the same on every retry, for the receiver's own
deduplication.

The URL, the secret and every header value are secrets (a URL often embeds a token): they are
never logged, and each may be an `env:`, `ssm:` or `secretsmanager:` reference.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from tattletail.alerts import Alert
from tattletail.destinations import http
from tattletail.destinations.base import (
    DeliveryContext,
    DeliveryError,
    Destination,
    DestinationConfigError,
    secret_setting,
)
from tattletail.destinations.budget import fit_message
from tattletail.secret import Secret

# Receivers commonly cap request bodies at 1 MiB or more (API Gateway 10 MB, Lambda function
# URLs 6 MB); a larger alert is cut to this.
BODY_LIMIT = 1024 * 1024
SIGNATURE_HEADER = "X-Tattletail-Signature"
TIMESTAMP_HEADER = "X-Tattletail-Timestamp"
ALERT_ID_HEADER = "X-Tattletail-Alert-Id"
# A receiver should refuse a signature older (or newer) than this.
DEFAULT_TOLERANCE_SECONDS = 300
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_RESERVED = {
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    SIGNATURE_HEADER.lower(),
    TIMESTAMP_HEADER.lower(),
    ALERT_ID_HEADER.lower(),
}


def render(alert: Alert, destination_id: str) -> bytes:
    """The exact body bytes (what the signature covers)."""
    message = {
        **alert.message(),
        "alert_id": alert.alert_id(destination_id),
        "source": alert.source,
    }
    body, _ = fit_message(message, BODY_LIMIT)
    return body


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Tattletail-Signature value for `body` sent at `timestamp`."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: Callable[[], float] = time.time,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(now() - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass(frozen=True)
class WebhookDestination(Destination):
    type_name: ClassVar[str] = "webhook"
    # No service limit to follow: ten a second protects a receiver that was never load-tested.
    default_rate: ClassVar[float | None] = 10.0
    default_burst: ClassVar[int] = 10
    url: Secret
    headers: tuple[tuple[str, Secret], ...] = ()
    secret: Secret | None = None

    @classmethod
    def from_config(cls, dest_id: str, settings: Mapping[str, Any]) -> Self:
        problems: list[str] = []
        url = secret_setting(settings, "url", problems)
        if url is not None and not url.is_reference and not _is_http_url(url.reveal()):
            problems.append("destination.url must be an http(s) URL")
        headers = _headers(settings.get("headers"), problems)
        secret = secret_setting(settings, "secret", problems, required=False)
        if problems or url is None:
            raise DestinationConfigError(problems)
        return cls(id=dest_id, url=url, headers=headers, secret=secret)

    async def send(self, alert: Alert, context: DeliveryContext) -> None:
        url = await context.reveal(self.url)
        if not _is_http_url(url):
            raise DeliveryError(f"webhook: {self.url.reference} is not an http(s) URL")
        body = render(alert, self.id)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "tattletail",
            ALERT_ID_HEADER: alert.alert_id(self.id),
        }
        hidden: list[str] = []
        for name, value in self.headers:
            headers[name] = await context.reveal(value)
            hidden.append(headers[name])
        if self.secret is not None:
            key = await context.reveal(self.secret)
            hidden.append(key)
            timestamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(key, timestamp, body)
        try:
            await http.post(context, url, body, headers, what="webhook", secrets=hidden)
        except http.HttpStatusError as exc:
            if exc.refused_credentials:
                # Perhaps rotated: look every reference up again at the next send.
                for secret in (self.url, self.secret, *(value for _, value in self.headers)):
                    if secret is not None:
                        context.secrets.forget(secret)
            raise


def _headers(raw: Any, problems: list[str]) -> tuple[tuple[str, Secret], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        problems.append("destination.headers must be a table of header names to strings")
        return ()
    headers = []
    for name, value in raw.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            problems.append(f"destination.headers: {name!r} is not a valid header name")
            continue
        if name.lower() in _RESERVED:
            problems.append(f"destination.headers: {name!r} is set by Tattletail itself")
            continue
        # The value is never quoted: it is often a credential.
        if not isinstance(value, str) or not value.strip():
            problems.append(f"destination.headers.{name} must be a non-empty string")
            continue
        if "\r" in value or "\n" in value:
            problems.append(f"destination.headers.{name} must be one line")
            continue
        secret = Secret.parse(value.strip())
        problems.extend(secret.problems(f"headers.{name}"))
        headers.append((name, secret))
    return tuple(headers)


def _is_http_url(value: str) -> bool:
    return value.startswith(("https://", "http://"))
