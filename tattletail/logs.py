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
    """Log one event with structured fields (never pass a secret as a field)."""
    logger = get_logger()
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"fields": fields})


@contextmanager
def context(**fields: Any) -> Iterator[None]:
    """Attach fields to every log line written inside the block (task-local)."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)
