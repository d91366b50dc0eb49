"""Which delivery failures are worth retrying, and how long to wait before the next try.

Exponential backoff with full jitter (sleep a random time between 0 and min(cap, base * 2^n)),
as AWS's architecture guidance recommends, bounded by a total time budget that never reaches past
the Lambda's own deadline. A `Retry-After` from the service wins over the computed wait.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from tattletail.destinations.base import DeliveryError

# AWS error codes that mean "slow down" or "try again" (the SDKs' own retry lists, in short).
_TRANSIENT_AWS_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "ProvisionedThroughputExceededException",
        "SlowDown",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "KMSThrottlingException",
        "EC2ThrottledException",
        "Throttled",
    }
)
_TRANSIENT_BOTOCORE = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
)


@dataclass(frozen=True)
class Verdict:
    retryable: bool
    retry_after: float | None = None


def classify(error: BaseException) -> Verdict:
    """Transient (timeouts, connection errors, 5xx, throttling) or permanent (everything else:
    4xx, a topic that does not exist, an unverified SES sender)."""
    if isinstance(error, DeliveryError):
        return Verdict(error.retryable, error.retry_after)
    if isinstance(error, TimeoutError | ConnectionError):
        return Verdict(True)
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return Verdict(code in _TRANSIENT_AWS_CODES or status >= 500 or status == 429)
    if isinstance(error, _TRANSIENT_BOTOCORE):
        return Verdict(True)
    if isinstance(error, BotoCoreError):
        return Verdict(False)
    return Verdict(False)


@dataclass(frozen=True)
class Backoff:
    base: float
    cap: float

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)] for attempt 0, 1, 2, ..."""
        ceiling = min(self.cap, self.base * (2**attempt))
        return (rng or random).uniform(0, ceiling)
