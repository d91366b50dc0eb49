"""A scriptable HTTP receiver on 127.0.0.1 for the HTTP destinations (webhook, PagerDuty, Slack).

It runs in its own thread and event loop, so a reply it holds back (to make the sender time
out) never blocks the test. Every request is recorded with the monotonic time it arrived, its
headers and its exact body bytes, so tests check what a real receiver would see: retry spacing,
signatures, payload shapes.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.support import serving


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str = "ok"
    # Seconds before answering: longer than the sender's timeout makes it time out.
    delay: float = 0.0


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int

    def json(self) -> Any:
        return orjson.loads(self.body)


class HttpStandIn:
    def __init__(self, default: Reply | None = None) -> None:
        self.default = default or Reply()
        self.base = ""
        self._script: list[Reply] = []
        self._requests: list[Request] = []
        self._lock = threading.Lock()

    def url(self, path: str = "/hook") -> str:
        return f"{self.base}{path}"

    def reply_next(
        self,
        status: int,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: str = "error",
        delay: float = 0.0,
    ) -> None:
        with self._lock:
            self._script.extend([Reply(status, headers or {}, body, delay)] * times)

    def received(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        arrived = time.monotonic()
        with self._lock:
            reply = self._script.pop(0) if self._script else self.default
            self._requests.append(
                Request(request.path_qs, dict(request.headers), body, arrived, reply.status)
            )
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.Response(status=reply.status, headers=reply.headers, text=reply.body)

    @classmethod
    @contextmanager
    def running(cls, default: Reply | None = None) -> Iterator[HttpStandIn]:
        """Serve from a thread of its own (usable from sync and async tests alike)."""
        stand_in = cls(default)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", stand_in._handle)
        with serving(app) as (port, _):
            stand_in.base = f"http://127.0.0.1:{port}"
            yield stand_in


def refused_url(path: str = "/hook") -> str:
    """A URL on 127.0.0.1 where nothing listens: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"
