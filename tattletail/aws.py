"""AWS clients for one event loop: created on first use, reused, closed together."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any


class AwsClients:
    def __init__(self, endpoint_url: str = "") -> None:
        # aioboto3 (boto3, botocore's loaders) is imported on first use: a local scan that
        # never calls AWS does not pay its second of import time.
        self._session: Any = None
        self._config: Any = None
        self._endpoint_url = endpoint_url or None
        self._stack = AsyncExitStack()
        self._clients: dict[str, Any] = {}
        self._lock = asyncio.Lock()

    async def client(self, service: str) -> Any:
        if service not in self._clients:
            async with self._lock:
                if service not in self._clients:
                    if self._session is None:
                        import aioboto3
                        from botocore.config import Config

                        self._session = aioboto3.Session()
                        # Tattletail retries sends itself; botocore's standard mode still
                        # absorbs brief throttling.
                        self._config = Config(
                            retries={"max_attempts": 3, "mode": "standard"},
                            max_pool_connections=50,
                        )
                    self._clients[service] = await self._stack.enter_async_context(
                        self._session.client(
                            service, endpoint_url=self._endpoint_url, config=self._config
                        )
                    )
        return self._clients[service]

    async def close(self) -> None:
        self._clients.clear()
        await self._stack.aclose()
        self._stack = AsyncExitStack()
