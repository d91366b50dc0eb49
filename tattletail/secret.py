"""Values that must never be printed (webhook URLs, routing keys, signing secrets), and where
they may be kept instead of the config file.

A secret setting is either the value itself (the original's config: `webhook_url = "https://..."`)
or a reference, resolved at the first send and then cached for the container's life:

- `env:NAME`: the environment variable NAME (for instance a Lambda variable encrypted with KMS);
- `ssm:/parameter/name`: an SSM Parameter Store parameter, SecureString decrypted;
- `secretsmanager:name-or-arn`: a Secrets Manager secret's SecretString, or one key of it when it
  holds a JSON object (`secretsmanager:name#key`).

A reference's kind and name are not secret (they are where to look), so they may appear in
errors and reprs; a value never does.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from tattletail import logs, redaction

if TYPE_CHECKING:
    from tattletail.aws import AwsClients

PLAIN = "plain"
REFERENCE_KINDS = ("env", "ssm", "secretsmanager")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A permanent failure (not found, access denied) is remembered this long, so a burst of alerts
# does not make one lookup each; a transient one is not remembered at all.
FAILURE_TTL_SECONDS = 30.0

# Set while this task fetches a secret: botocore logs every response body at DEBUG, and those
# of GetParameter and GetSecretValue hold the secret itself.
_fetching: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "tattletail_fetching_secret", default=False
)


class _HideSecretResponses(logging.Filter):
    """Drops botocore's response logging of a secret lookup (whoever turned DEBUG on)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _fetching.get()


_HIDE_SECRET_RESPONSES = _HideSecretResponses()
_RESPONSE_LOGGERS = ("botocore.parsers", "aiobotocore.parsers")


@dataclass(frozen=True)
class Secret:
    """A secret value, or a reference to one; repr and str never show a value."""

    _value: str = field(repr=False)
    kind: str = PLAIN

    @classmethod
    def parse(cls, text: str) -> Secret:
        """`env:`, `ssm:` and `secretsmanager:` make a reference; anything else is the value."""
        for kind in REFERENCE_KINDS:
            if text.startswith(f"{kind}:"):
                return cls(text[len(kind) + 1 :].strip(), kind)
        return cls(text)

    @property
    def is_reference(self) -> bool:
        return self.kind != PLAIN

    @property
    def reference(self) -> str:
        """Where the value is kept (safe to log), or a placeholder for an inline value."""
        return f"{self.kind}:{self._value}" if self.is_reference else "the configured value"

    def problems(self, key: str) -> list[str]:
        """What is wrong with a reference's syntax (an inline value is checked by its user)."""
        if not self.is_reference:
            return []
        name = self._value.split("#", 1)[0] if self.kind == "secretsmanager" else self._value
        if not name:
            return [f"destination.{key}: `{self.kind}:` must be followed by a name"]
        if self.kind == "env" and not _ENV_NAME.match(name):
            return [f"destination.{key}: {self.reference!r} is not an environment variable name"]
        return []

    def reveal(self) -> str:
        """The inline value. A reference has none until resolved (SecretResolver.resolve)."""
        if self.is_reference:
            raise RuntimeError(f"secret {self.reference} must be resolved before use")
        return self._value

    def __repr__(self) -> str:
        if self.is_reference:
            return f"Secret({self.reference!r})"
        return "Secret('**redacted**')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


class SecretUnavailable(Exception):
    """A reference that could not be resolved. The message names the reference, never a value;
    `retryable` marks a transient cause (throttling, a 5xx, no connection)."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class SecretResolver:
    """Resolves references once per container (one per DeliveryContext) and caches the values.

    Concurrent sends wait for one lookup instead of each making their own.
    """

    def __init__(
        self,
        aws: AwsClients,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._aws = aws
        self._environ = os.environ if environ is None else environ
        self._clock = clock
        self._values: dict[str, str] = {}
        # Every value handed out, inline or resolved, in order: what error texts must not show.
        self._revealed: dict[str, None] = {}
        self._failures: dict[str, tuple[float, str]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        for name in _RESPONSE_LOGGERS:
            logger = logging.getLogger(name)
            if _HIDE_SECRET_RESPONSES not in logger.filters:
                logger.addFilter(_HIDE_SECRET_RESPONSES)
        logs.redact_every_record()

    def revealed(self) -> tuple[str, ...]:
        """Every secret value this resolver has handed out."""
        return tuple(self._revealed)

    async def resolve(self, secret: Secret) -> str:
        value = await self._resolve(secret)
        if value not in self._revealed:
            self._revealed[value] = None
            redaction.remember(value)
        return value

    async def _resolve(self, secret: Secret) -> str:
        if not secret.is_reference:
            return secret.reveal()
        key = secret.reference
        if key in self._values:
            return self._values[key]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self._values:
                return self._values[key]
            failed = self._failures.get(key)
            if failed is not None and failed[0] > self._clock():
                raise SecretUnavailable(failed[1])
            try:
                value = await self._lookup(secret)
            except SecretUnavailable as exc:
                if not exc.retryable:
                    self._failures[key] = (self._clock() + FAILURE_TTL_SECONDS, str(exc))
                raise
            self._failures.pop(key, None)
            self._values[key] = value
            logs.log(logging.INFO, "secret_resolved", secret=key)
            return value

    def forget(self, secret: Secret) -> None:
        """Drop a cached value the service refused (rotated or revoked): the next send looks
        it up again."""
        self._values.pop(secret.reference, None)

    async def _lookup(self, secret: Secret) -> str:
        name = secret._value
        fetching = _fetching.set(True)
        try:
            if secret.kind == "env":
                value = self._environ.get(name)
                if value is None:
                    raise SecretUnavailable(self._failed(secret, "the variable is not set"))
            elif secret.kind == "ssm":
                ssm = await self._aws.client("ssm")
                answer = await ssm.get_parameter(Name=name, WithDecryption=True)
                value = answer["Parameter"]["Value"]
            else:
                value = await self._secrets_manager(secret)
        except (ClientError, BotoCoreError) as exc:
            # Only the error's code: an AWS message may quote the request.
            from tattletail.retry import classify  # retry imports destinations, which import us

            code = (
                exc.response.get("Error", {}).get("Code", "error")
                if isinstance(exc, ClientError)
                else type(exc).__name__
            )
            raise SecretUnavailable(
                self._failed(secret, code), retryable=classify(exc).retryable
            ) from None
        finally:
            _fetching.reset(fetching)
        if not isinstance(value, str) or not value:
            raise SecretUnavailable(self._failed(secret, "the value is empty"))
        return value

    async def _secrets_manager(self, secret: Secret) -> str:
        secret_id, _, json_key = secret._value.partition("#")
        client = await self._aws.client("secretsmanager")
        answer: dict[str, Any] = await client.get_secret_value(SecretId=secret_id)
        text = answer.get("SecretString")
        if not isinstance(text, str):
            raise SecretUnavailable(self._failed(secret, "the secret has no SecretString"))
        if not json_key:
            return text
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError:
            document = None
        value = document.get(json_key) if isinstance(document, dict) else None
        if not isinstance(value, str):
            raise SecretUnavailable(
                self._failed(secret, f"the secret is not a JSON object with a string {json_key!r}")
            )
        return value

    @staticmethod
    def _failed(secret: Secret, why: str) -> str:
        return f"secret {secret.reference} could not be resolved: {why}"
