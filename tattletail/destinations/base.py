"""The destination contract: one small class per `type`, validated once, sent through one
shared context that owns the HTTP session and the AWS clients."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Self

from tattletail.alerts import Alert
from tattletail.aws import AwsClients
from tattletail.secret import Secret, SecretResolver, SecretUnavailable

if TYPE_CHECKING:
    import aiohttp


class DestinationConfigError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class DeliveryError(Exception):
    """A send that did not succeed. The message must never contain a secret.

    `retryable` marks a transient failure (5xx, 429, a timeout, a dropped connection);
    `retry_after` is the wait the service asked for, in seconds, when it said.
    """

    def __init__(
        self, message: str, *, retryable: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class DeliveryContext:
    """What destinations share within one event loop: an HTTP session, AWS clients, and the
    secrets resolved so far (one context lives as long as the container, so each secret
    reference is looked up once)."""

    def __init__(self, aws: AwsClients, http_timeout: float) -> None:
        self.aws = aws
        self.secrets = SecretResolver(aws)
        self._http_timeout = http_timeout
        self._http: aiohttp.ClientSession | None = None

    async def reveal(self, secret: Secret) -> str:
        """The secret's value; a reference that cannot be resolved is a DeliveryError naming
        the reference (never a value), permanent unless its cause was transient."""
        try:
            return await self.secrets.resolve(secret)
        except SecretUnavailable as exc:
            raise DeliveryError(str(exc), retryable=exc.retryable) from None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            # Imported on first use, like aioboto3: a run that sends nothing over HTTP (a local
            # scan, a dry run) does not pay its import time.
            import aiohttp

            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._http_timeout),
                # A receiver's cookies are of no use to a webhook sender, and parsing them logs
                # a malformed cookie's name (which the receiver chooses) at WARNING.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


@dataclasses.dataclass(frozen=True)
class Destination(ABC):
    """A configured destination. Subclasses are frozen dataclasses whose fields (besides `id`)
    are exactly the config keys their `type` accepts.

    Every type also accepts `rate_limit` (sends per second) and `rate_burst`, overriding the
    type's defaults, which come from the service's documented limits.
    """

    type_name: ClassVar[str]
    # Documented service limits: sends per second and burst; None means no limit (stdout).
    default_rate: ClassVar[float | None] = None
    default_burst: ClassVar[int] = 1
    # An archive receives every alert, flood control or not, and writes them at flush().
    archive: ClassVar[bool] = False
    # May this type be named as the config's `dead_letter`?
    can_dead_letter: ClassVar[bool] = False

    id: str
    rate_limit: float | None = dataclasses.field(default=None, kw_only=True)
    rate_burst: int | None = dataclasses.field(default=None, kw_only=True)

    @classmethod
    def config_keys(cls) -> frozenset[str]:
        return frozenset(f.name for f in dataclasses.fields(cls) if f.name != "id")

    @classmethod
    def build(cls, dest_id: str, settings: Mapping[str, Any]) -> Destination:
        """Validate the generic keys here and the type's own keys in from_config."""
        problems: list[str] = []
        limits: dict[str, Any] = {}
        rate = settings.get("rate_limit")
        if rate is not None:
            if isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0:
                problems.append("destination.rate_limit must be a number of sends per second > 0")
            else:
                limits["rate_limit"] = float(rate)
        burst = settings.get("rate_burst")
        if burst is not None:
            if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
                problems.append("destination.rate_burst must be a whole number >= 1")
            else:
                limits["rate_burst"] = burst
        own = {k: v for k, v in settings.items() if k not in {"rate_limit", "rate_burst"}}
        try:
            destination = cls.from_config(dest_id, own)
        except DestinationConfigError as exc:
            problems.extend(exc.problems)
            destination = None
        if problems:
            raise DestinationConfigError(problems)
        assert destination is not None
        return dataclasses.replace(destination, **limits) if limits else destination

    def rate(self) -> tuple[float, int] | None:
        """(sends per second, burst) for this destination, or None for unlimited."""
        rate = self.rate_limit if self.rate_limit is not None else self.default_rate
        if rate is None:
            return None
        burst = self.rate_burst if self.rate_burst is not None else self.default_burst
        return rate, max(1, burst)

    async def flush(self, context: DeliveryContext) -> list[tuple[str, str]]:
        """Write whatever was buffered (archives); return (rule name, location) pairs."""
        return []

    async def send_dead_letter(self, document: dict[str, Any], context: DeliveryContext) -> None:
        """Keep an alert that could not be delivered elsewhere (only if can_dead_letter)."""
        raise NotImplementedError(f"{self.type_name} cannot be a dead_letter destination")

    @classmethod
    @abstractmethod
    def from_config(cls, dest_id: str, settings: Mapping[str, Any]) -> Self:
        """Validate the table's keys (all known to be in config_keys) into an instance."""

    @abstractmethod
    async def send(self, alert: Alert, context: DeliveryContext) -> None:
        """Deliver one alert; raise DeliveryError (or let an I/O error escape) on failure."""


def required_string(settings: Mapping[str, Any], key: str, problems: list[str]) -> str:
    value = settings.get(key)
    if not isinstance(value, str) or not value.strip():
        problems.append(f"destination.{key} must be set to a non-empty string")
        return ""
    return value


def secret_setting(
    settings: Mapping[str, Any], key: str, problems: list[str], *, required: bool = True
) -> Secret | None:
    """A key that holds a secret: the value itself, or an `env:`, `ssm:` or `secretsmanager:`
    reference. Problems never quote the value."""
    value = settings.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        problems.append(f"destination.{key} must be set to a non-empty string")
        return None
    secret = Secret.parse(value.strip())
    problems.extend(secret.problems(key))
    return secret
