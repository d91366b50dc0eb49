"""Where the config comes from: S3 (when S3_CONFIG_BUCKET and S3_CONFIG_PATH are both set,
taking precedence, as in the original) or a local file."""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tattletail import config
from tattletail.config import Config, ConfigError
from tattletail.settings import Settings


async def load_from_s3(s3: Any, bucket: str, key: str) -> Config:
    loaded, _ = await load_from_s3_with_etag(s3, bucket, key)
    return loaded


async def load_from_s3_with_etag(s3: Any, bucket: str, key: str) -> tuple[Config, str | None]:
    source = f"s3://{bucket}/{key}"
    try:
        response = await s3.get_object(Bucket=bucket, Key=key)
        async with response["Body"] as body:
            data = await body.read()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "Unknown")
        raise ConfigError(source, [f"cannot read the config from S3: {code}"]) from None
    except BotoCoreError as exc:
        raise ConfigError(source, [f"cannot read the config from S3: {exc}"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(source, ["the config is not UTF-8 text"]) from None
    return config.parse(text, source=source), response.get("ETag")


async def load(settings: Settings, s3: Any | None, path: str | None = None) -> Config:
    """An explicit path wins; then S3_CONFIG_*; then the bundled file (TATTLETAIL_CONFIG)."""
    if path is None and settings.config_from_s3:
        return await load_from_s3(s3, settings.s3_config_bucket, settings.s3_config_path)
    return config.load_file(path or settings.config_file)


class S3ConfigWatcher:
    """Re-checks the S3 config at most once per TTL with a conditional GET on its ETag.

    A new config that fails to validate never replaces the running one: the error is logged
    and counted on every check, and the last good config keeps alerting.
    """

    def __init__(self, bucket: str, key: str, ttl: float, etag: str | None) -> None:
        self.bucket = bucket
        self.key = key
        self.ttl = ttl
        self.etag = etag
        self.checked_at = time.monotonic()
        self.checks = 0
        self._pending_etag: str | None = etag

    async def poll(self, s3: Any) -> Config | None:
        """A new valid config if the object changed since the last check, else None.
        Raises ConfigError when the new object is invalid (the caller keeps the old one)."""
        if time.monotonic() - self.checked_at < self.ttl:
            return None
        self.checked_at = time.monotonic()
        self.checks += 1
        source = f"s3://{self.bucket}/{self.key}"
        try:
            conditional = {"IfNoneMatch": self.etag} if self.etag else {}
            response = await s3.get_object(Bucket=self.bucket, Key=self.key, **conditional)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 304 or error.get("Code") in {"304", "NotModified"}:
                return None
            code = error.get("Code", "Unknown")
            raise ConfigError(source, [f"cannot read the config from S3: {code}"]) from None
        except BotoCoreError as exc:
            raise ConfigError(source, [f"cannot read the config from S3: {exc}"]) from None
        try:
            async with response["Body"] as body:
                data = await body.read()
        except Exception as exc:  # a dropped connection mid-body: try again next TTL
            raise ConfigError(source, [f"cannot read the config from S3: {exc}"]) from None
        try:
            loaded = config.parse(data.decode("utf-8"), source=source)
        except UnicodeDecodeError:
            raise ConfigError(source, ["the config is not UTF-8 text"]) from None
        # Remembered by accept(), once the new config is running: a config that could not be
        # installed is fetched and tried again at the next check, not skipped by a 304.
        self._pending_etag = response.get("ETag")
        return loaded

    def accept(self) -> None:
        """The config returned by the last poll() is now running."""
        self.etag = self._pending_etag
