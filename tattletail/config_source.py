"""Where the config comes from: S3 (when S3_CONFIG_BUCKET and S3_CONFIG_PATH are both set,
taking precedence, as in the original) or a local file."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tattletail import config
from tattletail.config import Config, ConfigError
from tattletail.settings import Settings


async def load_from_s3(s3: Any, bucket: str, key: str) -> Config:
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
    return config.parse(text, source=source)


async def load(settings: Settings, s3: Any | None, path: str | None = None) -> Config:
    """An explicit path wins; then S3_CONFIG_*; then the bundled file (TATTLETAIL_CONFIG)."""
    if path is None and settings.config_from_s3:
        return await load_from_s3(s3, settings.s3_config_bucket, settings.s3_config_path)
    return config.load_file(path or settings.config_file)
