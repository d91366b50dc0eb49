"""`--since` / `--until`: which log files (by the date in their key) and which records (by their
`eventTime`) a scan or a backfill covers.

Both bounds are inclusive and UTC. A date covers its whole day; a time (to the second) covers
that second. A record is in range when its eventTime, cut to the second, is within the bounds.
Files are chosen by the day in their key, the day CloudTrail delivered them: see
`tattletail.trail_keys`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

# How CloudTrail writes eventTime (`2024-01-31T23:59:59Z`): valid ones compare correctly as
# strings. Days from the 29th are checked by parsing (February, 30-day months).
_CANONICAL = re.compile(
    r"(?!0000)[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z",
    re.ASCII,
)


def canonical(moment: datetime) -> str:
    """An aware datetime as CloudTrail writes eventTime (UTC, to the second)."""
    moment = moment.astimezone(UTC)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}Z"
    )


EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


class RangeError(ValueError):
    """A --since/--until value that is not a date or a time, or a range that is empty."""


def parse_bound(text: str, *, end: bool) -> datetime:
    """A flag's value as an aware UTC datetime: a date is the first second of its day, or (for
    `--until`, end=True) its last. Times must be whole seconds; without an offset they are UTC."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime.combine(day, time(23, 59, 59) if end else time(0), UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise RangeError(
            f"{text!r} is not a date (YYYY-MM-DD) or a time (YYYY-MM-DDTHH:MM:SSZ)"
        ) from None
    if moment.microsecond:
        raise RangeError(f"{text!r}: give the time to the second, without a fraction")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class TimeRange:
    """[since, until], both whole seconds, both included."""

    since: datetime
    until: datetime

    @classmethod
    def parse(cls, since: str | None, until: str | None) -> TimeRange:
        """From the flags; a missing bound is open (the year 1 or 9999)."""
        low = parse_bound(since, end=False) if since else EARLIEST
        high = parse_bound(until, end=True) if until else LATEST
        if low > high:
            raise RangeError(f"--since {since} is after --until {until}: the range is empty")
        return cls(low, high)

    @property
    def first_day(self) -> date:
        return self.since.date()

    @property
    def last_day(self) -> date:
        return self.until.date()

    def contains_day(self, day: date) -> bool:
        return self.first_day <= day <= self.last_day

    def days(self) -> Iterator[date]:
        day = self.first_day
        while day <= self.last_day:
            yield day
            day += timedelta(days=1)

    def event_window(self) -> EventWindow:
        return EventWindow(canonical(self.since), canonical(self.until), self.since, self.until)

    def date_prefixes(self) -> list[str]:
        """The fewest `YYYY/`, `YYYY/MM/` and `YYYY/MM/DD/` key prefixes that together cover
        exactly the range's days: a whole year is one prefix, a whole month one."""
        prefixes: list[str] = []
        day, last = self.first_day, self.last_day
        while day <= last:
            year_end = date(day.year, 12, 31)
            if day.month == 1 and day.day == 1 and year_end <= last:
                prefixes.append(f"{day.year:04d}/")
                day = year_end + timedelta(days=1)
                continue
            month_end = _month_end(day)
            if day.day == 1 and month_end <= last:
                prefixes.append(f"{day.year:04d}/{day.month:02d}/")
                day = month_end + timedelta(days=1)
                continue
            prefixes.append(f"{day.year:04d}/{day.month:02d}/{day.day:02d}/")
            day += timedelta(days=1)
        return prefixes


def _month_end(day: date) -> date:
    following = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return following - timedelta(days=1)


@dataclass(frozen=True)
class EventWindow:
    """The range as worker processes apply it to records: two canonical eventTime strings.

    Small and picklable, and decided by a string comparison for eventTimes written the way
    CloudTrail writes them; any other form is parsed.
    """

    since: str
    until: str
    since_at: datetime
    until_at: datetime

    def contains(self, event_time: Any) -> bool:
        """Whether a record's eventTime, cut to the second, is in range. A missing or
        unreadable eventTime is not."""
        if not isinstance(event_time, str):
            return False
        if event_time[8:10] < "29" and _CANONICAL.fullmatch(event_time):
            return self.since <= event_time <= self.until
        moment = parse_event_time(event_time)
        return moment is not None and self.since_at <= moment <= self.until_at


def parse_event_time(text: str) -> datetime | None:
    """An eventTime as an aware UTC datetime cut to the second (no offset means UTC), or None
    when it is no ISO 8601 time."""
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).replace(microsecond=0)
    except (ValueError, OverflowError):
        return None
