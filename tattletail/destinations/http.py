"""One HTTP POST for the HTTP destinations (slack_webhook, webhook, pagerduty), with one failure
policy: 2xx is delivered; 429 and 5xx are transient (with the service's Retry-After); any other
answer is permanent; a refused connection, a reset or a timeout is transient.

Errors name the destination's kind and the status, never the URL: a webhook URL is itself a
credential, and a receiver's error page may echo it back, so the excerpt of the answer that
is kept is scrubbed of the URL, its path and every secret sent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from tattletail.destinations.base import DeliveryContext, DeliveryError

EXCERPT_CHARS = 200
REDACTED = "[redacted]"
# Shorter strings are not scrubbed: they would blank out ordinary words of the answer.
_MIN_SCRUB_CHARS = 6


class HttpStatusError(DeliveryError):
    """The service answered, but not with success; `status` is its HTTP status."""

    def __init__(
        self, message: str, status: int, *, retryable: bool, retry_after: float | None
    ) -> None:
        super().__init__(message, retryable=retryable, retry_after=retry_after)
        self.status = status

    @property
    def refused_credentials(self) -> bool:
        """401/403/404/410: a revoked token, a deleted webhook, a rotated URL."""
        return self.status in (401, 403, 404, 410)


def retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP-date (RFC 9110);
    None when absent or unreadable. A date in the past means now (0)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, when.timestamp() - now())
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (and a URL's path and query) replaced by [redacted]."""
    for secret in _variants(secrets):
        text = text.replace(secret, REDACTED)
    return text


def _variants(secrets: Iterable[str]) -> list[str]:
    found: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        found.add(secret)
        if secret.startswith(("http://", "https://")):
            parts = urlsplit(secret)
            found.update({parts.path, parts.query, f"{parts.path}?{parts.query}"})
    # Longest first, so a URL is replaced whole before its path is looked for.
    return sorted((s for s in found if len(s) >= _MIN_SCRUB_CHARS), key=len, reverse=True)


def is_2xx(status: int) -> bool:
    return 200 <= status < 300


async def post(
    context: DeliveryContext,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    what: str,
    secrets: Iterable[str] = (),
    delivered: Callable[[int], bool] = is_2xx,
) -> int:
    """POST `body`; return the status when delivered, else raise a DeliveryError that says
    whether a retry may succeed. `what` names the destination kind in the error."""
    import aiohttp  # loaded by context.http already; see DeliveryContext.http

    hidden = [url, *secrets]
    try:
        # A redirect is not followed: it would re-send the alert (and its secrets) elsewhere.
        async with context.http.post(
            url, data=body, headers=dict(headers), allow_redirects=False
        ) as response:
            status = response.status
            if delivered(status):
                return status
            # Scrub the whole (bounded) body before cutting it: a cut could split a secret.
            raw = await response.content.read(64 * 1024)
            excerpt = scrub(raw.decode("utf-8", errors="replace"), hidden)
            transient = status == 429 or status >= 500
            raise HttpStatusError(
                f"{what} answered HTTP {status}: {' '.join(excerpt.split())[:EXCERPT_CHARS]}",
                status,
                retryable=transient,
                retry_after=retry_after(response.headers.get("Retry-After")) if transient else None,
            )
    except aiohttp.ClientError as exc:
        # aiohttp's messages can carry the URL: name only the failure's kind.
        raise DeliveryError(
            f"{what} request failed: {type(exc).__name__}",
            retryable=isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError),
        ) from None
    except TimeoutError:
        raise DeliveryError(f"{what} request timed out", retryable=True) from None
