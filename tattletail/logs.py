"""JSON logs, one event per line, with the invocation's context attached to every line.

The context (request id, object key, ...) lives in a ContextVar so that concurrent tasks each log
their own object without threading it through every call.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

from tattletail import redaction
from tattletail.json_output import dumps

LOGGER_NAME = "tattletail"
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "tattletail_log_context", default=MappingProxyType({})
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "event": record.getMessage(),
        }
        line.update(_context.get())
        line.update(getattr(record, "fields", {}))
        return dumps(line, default=str).decode()


def configure(level: str = "INFO", stream: Any = None) -> None:
    """Route Tattletail's logger to one JSON handler (idempotent: Lambda reuses the process)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    logger.propagate = False
    for handler in list(logger.handlers):
        if getattr(handler, "_tattletail", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._tattletail = True  # type: ignore[attr-defined]
    logger.addHandler(handler)


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def log(level: int, event: str, **fields: Any) -> None:
    """Log one event with structured fields (never pass a secret as a field: as a safety net,
    every secret value the process holds is cut out of them)."""
    logger = get_logger()
    if logger.isEnabledFor(level):
        secrets = redaction.remembered()
        if secrets:
            fields = _redacted(fields, redaction.redactor(secrets, partial=False))
        logger.log(level, event, extra={"fields": fields})


def _redacted(value: Any, secrets: redaction.Redactor) -> Any:
    if isinstance(value, str):
        return secrets.redact(value)
    if isinstance(value, Mapping):
        return {_redacted(key, secrets): _redacted(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item, secrets) for item in value]
    return value


def redact_every_record() -> None:
    """Cut every secret value the process holds out of every log record, whichever library
    writes it (botocore at DEBUG, asyncio's unhandled-exception reports, ...): the message, and
    the traceback, rendered at once. Installed once secrets are in play (idempotent)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_tattletail_redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        secrets = redaction.remembered()
        if secrets:
            _redact_record(record, redaction.redactor(secrets, partial=False))
        return record

    factory._tattletail_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def _redact_record(record: logging.LogRecord, secrets: redaction.Redactor) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a malformed call: the logging module reports it itself later
        return
    redacted = secrets.redact(message)
    if redacted != message:
        record.msg, record.args = redacted, ()
    if record.exc_info and record.exc_info[0] is not None:
        text = logging.Formatter().formatException(record.exc_info)
        redacted = secrets.redact(text)
        if redacted != text:
            record.exc_text = redacted
    if record.stack_info:
        record.stack_info = secrets.redact(record.stack_info)


@contextmanager
def context(**fields: Any) -> Iterator[None]:
    """Attach fields to every log line written inside the block (task-local)."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)
