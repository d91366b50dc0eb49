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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from tests.support import serving


@dataclass(frozen=True)
class Reply:
    status: int = 200
    # A mapping, or (name, value) pairs when a header repeats (Set-Cookie).
    headers: Mapping[str, str] | Sequence[tuple[str, str]] = field(default_factory=dict)
    body: str | bytes = "ok"
    # Seconds before answering: longer than the sender's timeout makes it time out.
    delay: float = 0.0
    # Announce more bytes than are sent, then close: the sender's read fails mid-body.
    truncated: bool = False


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
    def __init__(
        self,
        default: Reply | None = None,
        respond: Callable[[Request], Reply] | None = None,
    ) -> None:
        self.default = default or Reply()
        # Computes the answer from the request (a hostile receiver that echoes it back).
        self.respond = respond
        self.base = ""
        self.port = 0
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

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        arrived = time.monotonic()
        received = Request(request.path_qs, dict(request.headers), body, arrived, 0)
        with self._lock:
            if self._script:
                reply = self._script.pop(0)
            elif self.respond is not None:
                reply = self.respond(received)
            else:
                reply = self.default
            self._requests.append(
                Request(request.path_qs, dict(request.headers), body, arrived, reply.status)
            )
        if reply.delay:
            await asyncio.sleep(reply.delay)
        data = reply.body.encode() if isinstance(reply.body, str) else reply.body
        headers = CIMultiDict(reply.headers)
        if not reply.truncated:
            return web.Response(status=reply.status, headers=headers, body=data)
        response = web.StreamResponse(status=reply.status, headers=headers)
        response.content_length = len(data) + 1000
        await response.prepare(request)
        await response.write(data)
        assert request.transport is not None
        request.transport.close()
        return response

    @classmethod
    @contextmanager
    def running(
        cls, default: Reply | None = None, respond: Callable[[Request], Reply] | None = None
    ) -> Iterator[HttpStandIn]:
        """Serve from a thread of its own (usable from sync and async tests alike)."""
        stand_in = cls(default, respond)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", stand_in._handle)
        with serving(app) as (port, _):
            stand_in.port = port
            stand_in.base = f"http://127.0.0.1:{port}"
            yield stand_in


def refused_url(path: str = "/hook") -> str:
    """A URL on 127.0.0.1 where nothing listens: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"
