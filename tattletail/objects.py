"""The object stage: fetch a log file's bytes (S3 streamed, or local) and gunzip them.

Fetching happens in the event loop (it is I/O); decompression runs in a worker process next to
decoding and rule evaluation, so the two CPU-heavy steps use every core and the main process
only moves compressed bytes.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GZIP_MAGIC = b"\x1f\x8b"
# Read S3 bodies in 1 MiB chunks so the size limit is enforced while streaming, not after.
_CHUNK = 1024 * 1024


class ObjectError(Exception):
    """A log file that cannot be read or decoded; `reason` is a short metric-friendly label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class SkippedObject(ObjectError):
    """An object that is not a log file (a digest, a folder marker, an empty object)."""


@dataclass(frozen=True)
class ObjectRef:
    """Where one log file lives: an S3 object (bucket set) or a local path (bucket None).

    `origin` names the trigger message it came from (an SQS message id), so a failure can be
    reported against that message only.
    """

    key: str
    bucket: str | None = None
    origin: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.bucket is not None else self.key


def skip_reason(ref: ObjectRef) -> str | None:
    """Why an object is not a log file to evaluate, judged from its key alone; None if it is."""
    if "/CloudTrail-Digest/" in f"/{ref.key}":
        return "digest"
    if ref.key.endswith("/"):
        return "folder"
    return None


async def fetch(ref: ObjectRef, s3: Any, max_bytes: int) -> bytes:
    """Return the object's raw (possibly gzipped) bytes; ObjectError if missing or too large."""
    if ref.bucket is None:
        # Imported here: rule workers import this module for decompress() and run no event
        # loop, and asyncio would add a tenth of a second to every worker's cold start.
        import asyncio

        return await asyncio.to_thread(_read_local, Path(ref.key), max_bytes)
    return await _read_s3(s3, ref, max_bytes)


def _read_local(path: Path, max_bytes: int) -> bytes:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ObjectError("too_large", f"{path}: {size} bytes exceeds the limit of {max_bytes}")
        return path.read_bytes()
    except FileNotFoundError:
        raise ObjectError("not_found", f"{path}: no such file") from None
    except IsADirectoryError:
        raise ObjectError("not_a_file", f"{path}: is a directory") from None
    except PermissionError:
        raise ObjectError("access_denied", f"{path}: permission denied") from None


async def _read_s3(s3: Any, ref: ObjectRef, max_bytes: int) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = await s3.get_object(Bucket=ref.bucket, Key=ref.key)
        length = response.get("ContentLength")
        if length is not None and length > max_bytes:
            raise ObjectError(
                "too_large", f"{ref.uri}: {length} bytes exceeds the limit of {max_bytes}"
            )
        chunks: list[bytes] = []
        received = 0
        body = response["Body"]
        # Entering the body releases the connection on exit; reading goes through botocore's
        # wrapper, which also checks the length received against Content-Length.
        async with body:
            async for chunk in body.iter_chunks(_CHUNK):
                received += len(chunk)
                if received > max_bytes:
                    raise ObjectError(
                        "too_large", f"{ref.uri}: more than {max_bytes} bytes, the limit"
                    )
                chunks.append(chunk)
        return b"".join(chunks)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "Unknown")
        reason = {"NoSuchKey": "not_found", "AccessDenied": "access_denied"}.get(code, "s3_error")
        raise ObjectError(reason, f"{ref.uri}: S3 GetObject failed: {code}") from None
    except BotoCoreError as exc:
        raise ObjectError("s3_error", f"{ref.uri}: S3 GetObject failed: {exc}") from None


def decompress(data: bytes, max_bytes: int) -> bytes:
    """Gunzip incrementally (every gzip member) when the bytes are gzip; else return them as is.

    The output is capped at max_bytes as it is produced, so a gzip bomb is an error, not an
    out-of-memory kill.
    """
    if not data.startswith(GZIP_MAGIC):
        return data
    # Written into one growing buffer whose bytes getvalue() hands over without a copy: the
    # peak is the output's size, not twice it (as chunks joined at the end would be).
    output = io.BytesIO()
    size = 0
    remaining = memoryview(data)
    while remaining:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        pending = remaining
        try:
            while pending:
                chunk = inflater.decompress(pending, max_bytes + 1 - size)
                size += len(chunk)
                if size > max_bytes:
                    raise ObjectError(
                        "too_large", f"decompressed size exceeds the limit of {max_bytes} bytes"
                    )
                output.write(chunk)
                pending = memoryview(inflater.unconsumed_tail)
            output.write(inflater.flush())
        except zlib.error as exc:
            raise ObjectError("corrupt_gzip", f"corrupt gzip data: {exc}") from None
        if not inflater.eof:
            raise ObjectError("corrupt_gzip", "truncated gzip data: the stream ends early")
        remaining = memoryview(inflater.unused_data)
        # Trailing zero padding after the last member is tolerated, as gzip(1) does.
        if remaining and bytes(remaining[:2]) != GZIP_MAGIC:
            if not any(remaining):
                break
            raise ObjectError("corrupt_gzip", "corrupt gzip data: garbage after the last member")
    return output.getvalue()
