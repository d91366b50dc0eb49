"""One HTTP POST for the HTTP destinations (slack_webhook, webhook, pagerduty), with one failure
policy: 2xx is delivered; 429 and 5xx are transient (with the service's Retry-After); any other
answer is permanent; a refused connection, a reset or a timeout is transient.

Errors name the destination's kind and the status, never the URL: a webhook URL is itself a
credential, and a receiver's error page may echo it back in any encoding. What an error keeps
of an answer is safe by construction (the status, the body's length, and a digest keyed with the
destination's own secrets, so equal answers can be told apart without the digest letting anyone
test a guess of a secret) plus a short excerpt from which every secret the context holds, in any
encoding, has been cut (see redaction.py).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from tattletail.destinations.base import DeliveryContext, DeliveryError
from tattletail.redaction import Redactor, redactor

if TYPE_CHECKING:
    import aiohttp

EXCERPT_CHARS = 200
# How much of an error answer is read (its length is reported up to this).
BODY_LIMIT = 64 * 1024
# How much of its start is searched for secrets to make the excerpt, and how much of that is
# shown: the last characters searched may be the start of a secret cut off by the limit.
EXCERPT_SOURCE_CHARS = 1024
EXCERPT_SOURCE_KEPT = 896
DIGEST_HEX = 16


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


def excerpt(body: bytes, secrets: Redactor) -> str:
    """The start of an answer for a log line: decoded, secrets cut out, invisible characters
    dropped, whitespace collapsed, cut to EXCERPT_CHARS. Checked again after the cut; if a
    secret is still found, nothing of it is kept."""
    text = body[: EXCERPT_SOURCE_CHARS * 4].decode("utf-8", "replace")
    keep = EXCERPT_SOURCE_KEPT if len(text) > EXCERPT_SOURCE_CHARS else None
    redacted = secrets.redact(text[:EXCERPT_SOURCE_CHARS], keep)
    shown = " ".join(_visible(redacted).split())[:EXCERPT_CHARS]
    if secrets.found_in(shown):
        return secrets.marker
    return shown or "(no body)"


def digest(body: bytes, secrets: Iterable[str]) -> str:
    """An HMAC of the whole answer keyed with the destination's secrets: stable for one
    destination, and no use for testing a guess of a secret that the answer may hold."""
    key = hashlib.sha256("\0".join(sorted(secrets)).encode()).digest()
    return hmac.new(key, body, hashlib.sha256).hexdigest()[:DIGEST_HEX]


def _visible(text: str) -> str:
    return "".join(
        char for char in text if char.isspace() or unicodedata.category(char) not in ("Cc", "Cf")
    )


async def _read(content: aiohttp.StreamReader, limit: int) -> bytes:
    """Up to `limit` bytes of the body (one read may return a single chunk)."""
    body = bytearray()
    while len(body) < limit:
        chunk = await content.read(limit - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)


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

    own = [url, *secrets]
    failure: tuple[str, bool] | None = None
    try:
        # A redirect is not followed: it would re-send the alert (and its secrets) elsewhere.
        async with context.http.post(
            url, data=body, headers=dict(headers), allow_redirects=False
        ) as response:
            status = response.status
            if delivered(status):
                return status
            answer = await _read(response.content, BODY_LIMIT)
            hidden = redactor(frozenset([*own, *context.secrets.revealed()]), hosts=True)
            transient = status == 429 or status >= 500
            size = f"{len(answer)}{'+' if len(answer) >= BODY_LIMIT else ''} bytes"
            raise HttpStatusError(
                f"{what} answered HTTP {status}: {excerpt(answer, hidden)} "
                f"({size}, digest {digest(answer, own)})",
                status,
                retryable=transient,
                retry_after=retry_after(response.headers.get("Retry-After")) if transient else None,
            )
    except aiohttp.ClientError as exc:
        # aiohttp's messages (and the exception itself) carry the URL: keep only the kind.
        failure = (
            f"{what} request failed: {type(exc).__name__}",
            isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError),
        )
    except TimeoutError:
        failure = (f"{what} request timed out", True)
    # Raised outside the handler, so the new error holds no reference (__context__) to the
    # original one and its URL.
    assert failure is not None
    message, retryable = failure
    raise DeliveryError(message, retryable=retryable)
