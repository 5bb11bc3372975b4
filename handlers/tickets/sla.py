"""Business-hours arithmetic on a department's calendar, and SLA deadlines.

Deadlines count only the hours a department works: a 4-hour first response asked for on Friday at 16:00
in a 09:00-17:00 department is due on Monday at 12:00 (and later still if Monday is a holiday). A 24x7
(`always_open`) calendar counts every hour. Everything here is pure, so it is tested without a database.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from config.business import WEEKDAYS, BusinessConfig, Calendar

# A calendar with no hours in ten years is a configuration error; never loop forever on it.
_MAX_DAYS = 3660
ZERO = timedelta(0)


def _spans(calendar: Calendar, day: date) -> list[tuple[datetime, datetime]]:
    """The business hours of one local day, as aware datetimes (empty on days off)."""
    zone = calendar.zone
    if calendar.always_open:
        start = datetime.combine(day, datetime.min.time(), zone)
        return [(start, datetime.combine(day + timedelta(days=1), datetime.min.time(), zone))]
    if day in calendar.working_days:
        span = calendar.working_days[day]
    elif day in calendar.holidays:
        return []
    else:
        span = calendar.hours.get(WEEKDAYS[day.weekday()])
    if span is None:
        return []
    return [(datetime.combine(day, span[0], zone), datetime.combine(day, span[1], zone))]


def _local_day(calendar: Calendar, at: datetime) -> date:
    if at.tzinfo is None:
        raise ValueError("naive datetime: business-hours arithmetic needs aware times")
    return at.astimezone(calendar.zone).date()


def add_business_time(calendar: Calendar, start: datetime, duration: timedelta) -> datetime:
    """The moment `duration` of business time after `start` has elapsed (aware UTC)."""
    if duration <= ZERO:
        return start.astimezone(UTC)
    if calendar.always_open:
        return (start + duration).astimezone(UTC)
    remaining = duration
    day = _local_day(calendar, start)
    for _ in range(_MAX_DAYS):
        for span_start, span_end in _spans(calendar, day):
            begin = max(span_start, start)
            if span_end <= begin:
                continue
            available = span_end - begin
            if remaining <= available:
                return (begin + remaining).astimezone(UTC)
            remaining -= available
        day += timedelta(days=1)
    raise ValueError("the calendar has no business hours in the next ten years")


def business_time_between(calendar: Calendar, start: datetime, end: datetime) -> timedelta:
    """Business time elapsed from `start` to `end` (zero when end is not after start)."""
    if end <= start:
        return ZERO
    if calendar.always_open:
        return end - start
    total = ZERO
    day, last = _local_day(calendar, start), _local_day(calendar, end)
    while day <= last:
        for span_start, span_end in _spans(calendar, day):
            begin, finish = max(span_start, start), min(span_end, end)
            if finish > begin:
                total += finish - begin
        day += timedelta(days=1)
    return total


def is_open(calendar: Calendar, at: datetime) -> bool:
    if calendar.always_open:
        return True
    return any(s <= at < e for s, e in _spans(calendar, _local_day(calendar, at)))


def next_opening_time(calendar: Calendar, at: datetime) -> datetime:
    """`at` itself when open, otherwise the start of the next business span (aware UTC)."""
    if is_open(calendar, at):
        return at.astimezone(UTC)
    day = _local_day(calendar, at)
    for _ in range(_MAX_DAYS):
        for span_start, _end in _spans(calendar, day):
            if span_start > at:
                return span_start.astimezone(UTC)
        day += timedelta(days=1)
    raise ValueError("the calendar has no business hours in the next ten years")


def sla_durations(config: BusinessConfig, topic: str, priority: str) -> tuple[timedelta, timedelta]:
    """(first response, resolution) business durations for a topic at a priority."""
    sla = config.topics[topic].sla
    factor = config.tickets.priority_sla_factor.get(priority, 1.0)
    return sla.first_response * factor, sla.resolution * factor


def sla_deadlines(
    config: BusinessConfig, topic: str, priority: str, department_code: str, start: datetime
) -> tuple[datetime, datetime]:
    calendar = config.calendar_of(department_code)
    first, resolution = sla_durations(config, topic, priority)
    return add_business_time(calendar, start, first), add_business_time(calendar, start, resolution)


def warning_time(calendar: Calendar, start: datetime, due: datetime, ratio: float) -> datetime:
    """When `ratio` of the business time between start and due has elapsed."""
    total = business_time_between(calendar, start, due)
    return add_business_time(calendar, start, total * ratio)


def extend_after_pause(calendar: Calendar, due: datetime, paused_at: datetime, resumed_at: datetime) -> datetime:
    """A deadline moved by the business time spent waiting for the client (the SLA clock stops then)."""
    return add_business_time(calendar, due, business_time_between(calendar, paused_at, resumed_at))
