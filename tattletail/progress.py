"""A progress line for long scans: objects done / total and records per second, on stderr.

Drawn only when the stream is a terminal (piped output and CI logs stay clean) and only once a
scan has run for a moment, so short scans never flicker. It reads the run's counters; the
pipeline knows nothing about it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import TextIO

from tattletail.summary import RunSummary

BAR_WIDTH = 24


def render(done: int, total: int, records: int, seconds: float) -> str:
    """`[#########...............]  12/56 objects  120,000 records  40,000 records/s`."""
    filled = BAR_WIDTH * done // total if total else BAR_WIDTH
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    rate = records / seconds if seconds > 0 else 0.0
    return f"[{bar}] {done}/{total} objects  {records:,} records  {rate:,.0f} records/s"


class Progress:
    def __init__(
        self,
        total: int,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        delay: float = 0.5,
    ) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self._clock = clock
        self._started = clock()
        self._delay = delay
        self._width = 0

    def update(self, done: int, records: int) -> None:
        self.draw(lambda seconds: render(done, self.total, records, seconds))

    def draw(self, line: Callable[[float], str]) -> None:
        """Redraw with the line made for the seconds since the start (any progress line: a
        backfill draws its own)."""
        if not self.enabled:
            return
        seconds = self._clock() - self._started
        if seconds < self._delay:
            return
        text = line(seconds)
        # Pad over a longer previous line; \r redraws in place.
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def close(self) -> None:
        """Erase the line, so the summary that follows starts on a clean one."""
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


def objects_done(summary: RunSummary) -> int:
    return summary.objects + summary.objects_failed + summary.objects_skipped


async def watch(progress: Progress, summary: RunSummary, interval: float = 0.2) -> None:
    """Redraw from the run's counters until cancelled."""
    while True:
        progress.update(objects_done(summary), summary.records)
        await asyncio.sleep(interval)
