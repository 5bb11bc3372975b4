"""Business-hours arithmetic: weekends, holidays, working days, 24x7, pauses."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.business import Calendar
from handlers.tickets.sla import (
    add_business_time,
    business_time_between,
    extend_after_pause,
    is_open,
    next_opening_time,
    sla_deadlines,
    warning_time,
)

MSK = ZoneInfo("Europe/Moscow")
STANDARD = Calendar(
    timezone="Europe/Moscow",
    hours={"mon": "09:00-18:00", "tue": "09:00-18:00", "wed": "09:00-18:00", "thu": "09:00-18:00",
           "fri": "09:00-17:00", "sat": None, "sun": None},
    holidays=frozenset({date(2026, 11, 4), date(2026, 12, 31)}),
    working_days={date(2026, 11, 7): "10:00-14:00"},  # type: ignore[dict-item]
)
ALWAYS = Calendar(timezone="Europe/Moscow", always_open=True)


def msk(*args: int) -> datetime:
    return datetime(*args, tzinfo=MSK)


def test_friday_afternoon_runs_over_the_weekend() -> None:
    # Friday 2026-11-13 16:00, 4 business hours: 1 h on Friday (till 17:00), 3 h on Monday from 09:00.
    due = add_business_time(STANDARD, msk(2026, 11, 13, 16, 0), timedelta(hours=4))
    assert due == msk(2026, 11, 16, 12, 0)
    assert due.tzinfo is UTC


def test_holiday_is_skipped() -> None:
    # Tuesday 2026-11-03 17:00 + 3 h: 1 h Tuesday, Wednesday 4 Nov is a holiday, 2 h on Thursday.
    assert add_business_time(STANDARD, msk(2026, 11, 3, 17, 0), timedelta(hours=3)) == msk(2026, 11, 5, 11, 0)


def test_a_working_saturday_counts() -> None:
    # Friday 2026-11-06 16:30 + 2 h: 30 min Friday, then the working Saturday 10:00-14:00.
    assert add_business_time(STANDARD, msk(2026, 11, 6, 16, 30), timedelta(hours=2)) == msk(2026, 11, 7, 11, 30)


def test_before_opening_starts_at_opening() -> None:
    assert add_business_time(STANDARD, msk(2026, 11, 16, 6, 0), timedelta(minutes=30)) == msk(2026, 11, 16, 9, 30)


def test_round_the_clock_counts_every_hour() -> None:
    start = msk(2026, 11, 14, 23, 0)  # Saturday night
    assert add_business_time(ALWAYS, start, timedelta(hours=8)) == start + timedelta(hours=8)
    assert business_time_between(ALWAYS, start, start + timedelta(hours=30)) == timedelta(hours=30)


def test_business_time_between_a_weekend_and_a_holiday() -> None:
    # Friday 13 Nov 12:00 -> Monday 16 Nov 12:00: 5 h Friday + 3 h Monday.
    assert business_time_between(STANDARD, msk(2026, 11, 13, 12), msk(2026, 11, 16, 12)) == timedelta(hours=8)
    # Tuesday 3 Nov 12:00 -> Thursday 5 Nov 12:00: 6 h + holiday + 3 h.
    assert business_time_between(STANDARD, msk(2026, 11, 3, 12), msk(2026, 11, 5, 12)) == timedelta(hours=9)
    assert business_time_between(STANDARD, msk(2026, 11, 5, 12), msk(2026, 11, 3, 12)) == timedelta(0)


def test_open_and_next_opening() -> None:
    assert is_open(STANDARD, msk(2026, 11, 16, 10))
    assert not is_open(STANDARD, msk(2026, 11, 14, 10))  # Saturday
    assert not is_open(STANDARD, msk(2026, 11, 4, 10))  # holiday
    assert next_opening_time(STANDARD, msk(2026, 11, 13, 18)) == msk(2026, 11, 16, 9)
    assert next_opening_time(STANDARD, msk(2026, 11, 3, 19)) == msk(2026, 11, 5, 9)
    assert next_opening_time(STANDARD, msk(2026, 11, 16, 10)) == msk(2026, 11, 16, 10)
    assert is_open(ALWAYS, msk(2026, 12, 31, 3))


def test_pause_moves_the_deadline_by_business_time_only() -> None:
    due = msk(2026, 11, 16, 12)
    # Waiting for the client from Friday 16:00 to Monday 10:00 is 2 business hours (1 h Fri, 1 h Mon).
    assert extend_after_pause(STANDARD, due, msk(2026, 11, 13, 16), msk(2026, 11, 16, 10)) == msk(2026, 11, 16, 14)


def test_warning_at_eighty_percent_of_business_time() -> None:
    start, due = msk(2026, 11, 13, 16), msk(2026, 11, 16, 12)  # 4 business hours
    assert warning_time(STANDARD, start, due, 0.8) == msk(2026, 11, 16, 11, 12)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError):
        add_business_time(STANDARD, datetime(2026, 11, 16, 10), timedelta(hours=1))


def test_deadlines_scale_with_priority(business_config) -> None:  # type: ignore[no-untyped-def]
    start = msk(2026, 11, 16, 10)  # Monday, tech support is 24x7: 30 min normal for no_connection
    first_high, _ = sla_deadlines(business_config, "no_connection", "high", "tech_support", start)
    first_urgent, _ = sla_deadlines(business_config, "no_connection", "urgent", "tech_support", start)
    assert first_high == start + timedelta(minutes=15)
    assert first_urgent == start + timedelta(minutes=7.5)


@settings(max_examples=200, deadline=None)
@given(
    start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 1), timezones=st.just(MSK)),
    minutes=st.integers(min_value=1, max_value=60 * 80),
)
def test_adding_then_measuring_gives_the_same_business_time(start: datetime, minutes: int) -> None:
    duration = timedelta(minutes=minutes)
    due = add_business_time(STANDARD, start, duration)
    assert business_time_between(STANDARD, start, due) == duration
    assert due > start
