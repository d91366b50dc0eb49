"""The token bucket: bursts up to `burst`, then `rate` per second; a Retry-After pauses it."""

from __future__ import annotations

import asyncio

import pytest

from tattletail.ratelimit import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(rate: float, burst: int) -> tuple[TokenBucket, Clock, list[float]]:
    clock = Clock()
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.now += seconds

    return TokenBucket(rate, burst, clock=clock, sleep=fake_sleep), clock, waits


async def test_burst_is_free_then_one_token_per_interval() -> None:
    bucket, clock, waits = make(rate=2.0, burst=3)
    for _ in range(3):
        await bucket.acquire()
    assert waits == []
    await bucket.acquire()
    assert waits == [pytest.approx(0.5)]
    assert clock.now == pytest.approx(0.5)


async def test_concurrent_retry_afters_take_the_longest_not_the_sum() -> None:
    bucket, clock, waits = make(rate=1.0, burst=3)
    for _ in range(3):
        bucket.pause(1.0)
    await bucket.acquire()
    # The service said "1 s": the next send goes 1 s later, not 3 s (one pause per 429).
    assert clock.now == pytest.approx(1.0)


async def test_waiters_are_served_in_arrival_order() -> None:
    bucket, _clock, _waits = make(rate=10.0, burst=1)
    order: list[int] = []

    async def take(n: int) -> None:
        await bucket.acquire()
        order.append(n)

    await asyncio.gather(*(take(n) for n in range(5)))
    assert order == [0, 1, 2, 3, 4]


def test_a_bucket_needs_a_positive_rate_and_burst() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0, 1)
    with pytest.raises(ValueError):
        TokenBucket(1, 0)
