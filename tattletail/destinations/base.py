"""The destination contract: one small class per `type`, validated once, sent through one
shared context that owns the HTTP session and the AWS clients."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Self

import aiohttp

from tattletail.alerts import Alert
from tattletail.aws import AwsClients


class DestinationConfigError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class DeliveryError(Exception):
    """A send that did not succeed. The message must never contain a secret."""


class DeliveryContext:
    """What destinations share within one event loop: an HTTP session and AWS clients."""

    def __init__(self, aws: AwsClients, http_timeout: float) -> None:
        self.aws = aws
        self._http_timeout = http_timeout
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._http_timeout)
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


@dataclasses.dataclass(frozen=True)
class Destination(ABC):
    """A configured destination. Subclasses are frozen dataclasses whose fields (besides `id`)
    are exactly the config keys their `type` accepts."""

    type_name: ClassVar[str]
    id: str

    @classmethod
    def config_keys(cls) -> frozenset[str]:
        return frozenset(f.name for f in dataclasses.fields(cls) if f.name != "id")

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
