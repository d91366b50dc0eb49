"""`--since`/`--until`: which days' prefixes are listed and which records are kept, each checked
against a plain reference (every day one by one; eventTime parsed with datetime)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tattletail.daterange import RangeError, TimeRange, parse_bound

JAN_1, DEC_31 = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 12, 31, tzinfo=UTC)
MARCH_1 = datetime(2024, 3, 1, tzinfo=UTC)
days = st.dates(min_value=date(1999, 1, 1), max_value=date(2031, 12, 31))


def reference_days(first: date, last: date) -> set[date]:
    return {first + timedelta(days=n) for n in range((last - first).days + 1)}


def days_under(prefix: str, within: tuple[date, date]) -> set[date]:
    """The days a YYYY/, YYYY/MM/ or YYYY/MM/DD/ prefix covers."""
    parts = [int(p) for p in prefix.strip("/").split("/")]
    start = date(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1)
    if len(parts) == 3:
        end = start
    elif len(parts) == 2:
        end = date(start.year + start.month // 12, start.month % 12 + 1, 1) - timedelta(days=1)
    else:
        end = date(start.year, 12, 31)
    return reference_days(start, end)


@given(days, days)
@example(date(2023, 12, 30), date(2025, 2, 1))
@example(date(2024, 2, 1), date(2024, 2, 29))
def test_date_prefixes_cover_exactly_the_days_of_the_range_once(a: date, b: date) -> None:
    first, last = min(a, b), max(a, b)
    prefixes = TimeRange.parse(first.isoformat(), last.isoformat()).date_prefixes()

    covered = [days_under(p, (first, last)) for p in prefixes]

    assert set().union(*covered) == reference_days(first, last)
    assert sum(len(c) for c in covered) == len(reference_days(first, last))  # no overlap
    assert prefixes == sorted(prefixes)
    # Few listings: at most the partial days at each end, months and whole years.
    assert len(prefixes) <= 2 * 31 + 2 * 11 + (last.year - first.year + 1)


def test_a_whole_year_and_a_whole_month_are_one_listing_each() -> None:
    assert TimeRange.parse("2023-12-31", "2025-02-01").date_prefixes() == [
        "2023/12/31/",
        "2024/",
        "2025/01/",
        "2025/02/01/",
    ]


def test_bounds_are_utc_dates_or_times_and_both_included() -> None:
    assert parse_bound("2024-03-01", end=False) == datetime(2024, 3, 1, tzinfo=UTC)
    assert parse_bound("2024-03-01", end=True) == datetime(2024, 3, 1, 23, 59, 59, tzinfo=UTC)
    assert parse_bound("2024-03-01T12:00:00+02:00", end=False) == datetime(
        2024, 3, 1, 10, tzinfo=UTC
    )
    assert parse_bound("2024-03-01T12:00:00", end=True) == datetime(2024, 3, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        ("2024-03-02", "2024-03-01", "is after"),
        ("yesterday", "2024-03-01", "not a date"),
        ("2024-02-30", "2024-03-01", "not a date"),
        ("2024-03-01T00:00:00.5Z", "2024-03-02", "to the second"),
    ],
)
def test_bad_or_empty_ranges_are_refused_with_a_reason(
    since: str, until: str, message: str
) -> None:
    with pytest.raises(RangeError, match=message):
        TimeRange.parse(since, until)


def reference_contains(event_time: object, since: datetime, until: datetime) -> bool:
    if not isinstance(event_time, str):
        return False
    try:
        moment = datetime.fromisoformat(event_time)
    except ValueError:
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC).replace(microsecond=0)
    except OverflowError:
        return False
    return since <= moment <= until


moments = st.datetimes(
    min_value=datetime(1999, 12, 30), max_value=datetime(2031, 1, 2), timezones=st.just(UTC)
)
event_times = st.one_of(
    moments.map(lambda m: m.strftime("%Y-%m-%dT%H:%M:%SZ")),
    moments.map(lambda m: m.isoformat()),
    moments.map(lambda m: m.strftime("%Y-%m-%dT%H:%M:%S.%fZ")),
    moments.map(lambda m: m.astimezone(UTC).replace(tzinfo=None).isoformat()),
    st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z\Z"),
    st.text(max_size=30),
    st.none(),
    st.integers(),
)


@given(event_times, moments, moments)
@example(
    "2024-02-30T10:00:00Z", datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 12, 31, tzinfo=UTC)
)
@example(
    "2024-03-01T00:00:00.999Z", datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)
)
@example(
    "0000-01-01T00:00:00Z", datetime(1999, 12, 30, tzinfo=UTC), datetime(2031, 1, 1, tzinfo=UTC)
)
def test_records_are_kept_exactly_when_their_event_time_cut_to_the_second_is_in_range(
    event_time: object, a: datetime, b: datetime
) -> None:
    since, until = min(a, b).replace(microsecond=0), max(a, b).replace(microsecond=0)
    window = TimeRange(since, until).event_window()
    assert window.contains(event_time) == reference_contains(event_time, since, until)


def test_a_date_until_covers_the_last_second_of_its_day() -> None:
    window = TimeRange.parse("2024-01-31", "2024-01-31").event_window()
    assert window.contains("2024-01-31T23:59:59Z")
    assert window.contains("2024-01-31T00:00:00Z")
    assert not window.contains("2024-02-01T00:00:00Z")
    assert not window.contains("2024-01-30T23:59:59Z")
    assert window.contains("2024-01-31T23:59:59.999999+00:00")
    assert not window.contains("2024-01-31T23:00:00-01:00")  # 2024-02-01T00:00:00Z
