"""A token bucket per destination, so a burst of alerts is spread out instead of rejected."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """`rate` tokens per second, holding at most `burst`; `acquire` waits for one token.

    Waiters are served in arrival order (one lock), so a flood cannot starve an early alert.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self) -> None:
        async with self._lock:
            self._refill()
            # The tolerance keeps float rounding (0.9999999999999998 tokens) from spinning on
            # waits too small to move the clock.
            while self._tokens < 1 - 1e-9:
                await self._sleep((1 - self._tokens) / self.rate)
                self._refill()
            self._tokens -= 1

    def pause(self, seconds: float) -> None:
        """The service said to wait (a 429's Retry-After): spend the tokens it would have."""
        self._refill()
        # Several 429s at once name the same wait: take the longest, do not add them up.
        self._tokens = min(self._tokens, 1.0 - seconds * self.rate)
