"""Rendering for Rasa answers: money, dates and deadlines as a person reads or hears them."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from actions.base import slot_text
from actions.render import day, moment, money


@pytest.mark.parametrize(
    "amount, currency, lang, expected",
    [
        (Decimal("12000"), "RUB", "ru", "12\u00a0000,00\u00a0₽"),
        (Decimal("-650.5"), "RUB", "ru", "-650,50\u00a0₽"),
        (Decimal("12000"), "RUB", "en", "12,000.00 RUB"),
        (Decimal("1234.567"), "USD", "en", "$1,234.57"),
        (Decimal("-3"), "EUR", "en", "-€3.00"),
    ],
)
def test_money(amount, currency, lang, expected):
    assert money(amount, currency, lang) == expected


def test_day():
    assert day(date(2026, 3, 9), "ru") == "09.03.2026"
    assert day(date(2026, 3, 9), "en") == "9 Mar 2026"


def test_deadline_in_the_departments_time_zone(business_config):
    from types import SimpleNamespace

    ctx = SimpleNamespace(config=business_config)
    # 21:30 UTC is 00:30 next day in Moscow, where the subscriber service's hours are written.
    assert (
        moment(ctx, datetime(2026, 3, 9, 21, 30, tzinfo=UTC), "ru", "subscriber_service")
        == "10.03.2026 00:30"
    )
    assert moment(ctx, datetime(2026, 3, 9, 21, 30, tzinfo=UTC), "en", "nowhere") == "10 Mar 2026 00:30"


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, None),
        (True, None),
        ("", None),
        ("  200001 ", "200001"),
        (200001, "200001"),
        (200001.0, "200001"),
        (["100001", "x"], "100001"),
        ([], None),
        ("x" * 201, None),
        ({"a": 1}, None),
    ],
)
def test_slot_text(value, expected):
    assert slot_text(value) == expected
