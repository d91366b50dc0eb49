"""Where state lives: a versioned key-value store with one atomic operation, a write that
succeeds only if the item is still at the version read (optimistic concurrency).

The window logic (tattletail.state.windows) is pure; a store only has to make each
read-apply-write atomic. Two implementations share this interface: InMemoryStore (`tattletail
scan`, `tattletail test`) and DynamoDBStore (Lambda, tattletail.state.dynamodb), whose
conditional PutItem is the atomic write.
"""

from __future__ import annotations

import abc
import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tattletail import json_input
from tattletail.json_output import dumps


class StateError(Exception):
    """The state could not be read or written: the objects whose matches needed it fail
    (and come back through Lambda's retry); nothing is dropped. `reason` is the summary's."""

    reason = "state_unavailable"


class StateUnavailable(StateError):
    pass


class StateContended(StateError):
    """Too many concurrent writers on one item; the object is retried later."""

    reason = "state_contended"


class StatePending(StateError):
    """An alert this object decided is still being sent by another invocation, which did not
    finish before this one's deadline; the object comes back and finds it sent (or sends it)."""

    reason = "state_pending"


@dataclass(frozen=True)
class Versioned:
    """An item as read: its state (None: no item) and version (0: no item)."""

    state: dict[str, Any] | None = None
    version: int = 0


class StateStore(abc.ABC):
    """`calls` counts each request made to the backing service, by operation."""

    name: str = "state"

    @abc.abstractmethod
    async def get_many(self, keys: Sequence[str], calls: Counter[str]) -> dict[str, Versioned]:
        """Consistent reads of several items; keys without an item are left out."""

    @abc.abstractmethod
    async def get(self, key: str, calls: Counter[str]) -> Versioned:
        """A consistent read of one item."""

    @abc.abstractmethod
    async def put(
        self,
        key: str,
        state: dict[str, Any],
        version: int,
        expires_at: int,
        calls: Counter[str],
    ) -> bool:
        """Write `state` if the item is still at `version` (0: does not exist yet); False
        when another writer got there first."""


class InMemoryStore(StateStore):
    """State for one process: a scan, a test run. Items are kept as JSON, as in DynamoDB, so
    a caller can never change a stored state by mutating what it read."""

    name = "memory"

    def __init__(self) -> None:
        self._items: dict[str, tuple[int, bytes]] = {}
        self._lock = asyncio.Lock()

    async def get_many(self, keys: Sequence[str], calls: Counter[str]) -> dict[str, Versioned]:
        found = {}
        for key in keys:
            item = await self.get(key, Counter())
            if item.state is not None:
                found[key] = item
        return found

    async def get(self, key: str, calls: Counter[str]) -> Versioned:
        stored = self._items.get(key)
        if stored is None:
            return Versioned()
        return Versioned(json_input.loads(stored[1]), stored[0])

    async def put(
        self,
        key: str,
        state: dict[str, Any],
        version: int,
        expires_at: int,
        calls: Counter[str],
    ) -> bool:
        async with self._lock:
            current = self._items.get(key, (0, b""))[0]
            if current != version:
                return False
            self._items[key] = (version + 1, dumps(state))
            return True

    def __len__(self) -> int:
        return len(self._items)


class UnconfiguredStore(StateStore):
    """Where state would be when no store is configured (Lambda without TATTLETAIL_STATE_TABLE):
    every call fails, so the log files whose matches need state fail loudly and come back,
    while every other alert still goes out."""

    name = "unconfigured"

    def __init__(self, message: str) -> None:
        self.message = message

    async def get_many(self, keys: Sequence[str], calls: Counter[str]) -> dict[str, Versioned]:
        raise StateUnavailable(self.message)

    async def get(self, key: str, calls: Counter[str]) -> Versioned:
        raise StateUnavailable(self.message)

    async def put(
        self,
        key: str,
        state: dict[str, Any],
        version: int,
        expires_at: int,
        calls: Counter[str],
    ) -> bool:
        raise StateUnavailable(self.message)
