"""Money, dates and numbers as a voice should say them, in Russian and English.

Speech synthesisers read digits unpredictably ("1 234" may come out as "one, two hundred thirty-four"; the
gender of "1 копейка" is often wrong), so everything spoken is spelled out in words here with the correct
plural and case forms. `money_digits` gives the written form ("1 234 рубля 56 копеек") for logs and
terminals.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from num2words import num2words

_RU_MONTHS_GEN = ("января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа", "сентября",
                  "октября", "ноября", "декабря")
_EN_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
              "October", "November", "December")
_DIGITS = {
    "ru": ("ноль", "один", "два", "три", "четыре", "пять", "шесть", "семь", "восемь", "девять"),
    "en": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
}
# (one, few, many) for Russian; (one, other) for English.
_UNITS = {
    "RUB": (("рубль", "рубля", "рублей"), ("копейка", "копейки", "копеек"), ("rouble", "roubles"),
            ("kopeck", "kopecks")),
    "USD": (("доллар", "доллара", "долларов"), ("цент", "цента", "центов"), ("dollar", "dollars"),
            ("cent", "cents")),
    "EUR": (("евро", "евро", "евро"), ("цент", "цента", "центов"), ("euro", "euros"), ("cent", "cents")),
}
_NUM2WORDS_CURRENCIES = {"RUB", "USD", "EUR"}


def ru_plural(n: int, forms: tuple[str, str, str]) -> str:
    """1 рубль, 2 рубля, 5 рублей, 11 рублей, 21 рубль, 112 рублей."""
    n = abs(n)
    if n % 10 == 1 and n % 100 != 11:
        return forms[0]
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return forms[1]
    return forms[2]


def _split(amount: Decimal) -> tuple[bool, int, int]:
    cents = int((abs(amount) * 100).quantize(Decimal("1"), rounding=ROUND_HALF_UP))
    return amount < 0, cents // 100, cents % 100


def money_digits(amount: Decimal, currency: str, lang: str) -> str:
    """'1 234 рубля 56 копеек' / '1,234 roubles 56 kopecks'; kopecks omitted when zero."""
    negative, major, minor = _split(Decimal(amount))
    units = _UNITS.get(currency.upper())
    sign = "−" if negative else ""
    if units is None:
        return f"{sign}{major}.{minor:02d} {currency}"
    if lang == "en":
        text = f"{sign}{major:,} {units[2][0] if major == 1 else units[2][1]}"
        if minor:
            text += f" {minor} {units[3][0] if minor == 1 else units[3][1]}"
        return text
    text = f"{sign}{major:,}".replace(",", " ") + f" {ru_plural(major, units[0])}"
    if minor:
        text += f" {minor} {ru_plural(minor, units[1])}"
    return text


def money_words(amount: Decimal, currency: str, lang: str) -> str:
    """'одна тысяча двести тридцать четыре рубля пятьдесят шесть копеек', 'минус пятьсот рублей'."""
    amount = Decimal(amount)
    negative, major, minor = _split(amount)
    code = currency.upper()
    if code not in _NUM2WORDS_CURRENCIES:
        return money_digits(amount, currency, lang)
    lang = "en" if lang == "en" else "ru"
    # num2words knows the genders and plural forms ("одна копейка", "две копейки").
    words = num2words(Decimal(major) + Decimal(minor) / 100, lang=lang, to="currency", currency=code)
    if not minor:
        words = words.rsplit(", ", 1)[0]
    words = words.replace(", ", " ") if lang == "ru" else words
    if negative:
        words = ("minus " if lang == "en" else "минус ") + words
    return words


@lru_cache(maxsize=512)
def _ru_ordinal_genitive(n: int) -> str:
    """15 -> 'пятнадцатого', 2026 -> 'две тысячи двадцать шестого' (genitive, as in 'до 15 декабря')."""
    import pymorphy3

    words = num2words(n, lang="ru", to="ordinal").split()
    parsed = _morph(pymorphy3).parse(words[-1])[0].inflect({"gent", "sing", "masc"})
    if parsed is not None:
        words[-1] = parsed.word
    return " ".join(words)


@lru_cache(maxsize=1)
def _morph(module):  # type: ignore[no-untyped-def]
    return module.MorphAnalyzer()


def say_date(day: date, lang: str, today: date | None = None) -> str:
    """Russian in the genitive ('пятнадцатого декабря две тысячи двадцать шестого года', fits 'до …' and
    'перезвонят …'); English 'December 15, 2026'. Today and tomorrow are said as such."""
    if today is not None:
        delta = (day - today).days
        if delta == 0:
            return "today" if lang == "en" else "сегодня"
        if delta == 1:
            return "tomorrow" if lang == "en" else "завтра"
    if lang == "en":
        text = f"{_EN_MONTHS[day.month - 1]} {day.day}"
        return text if today is not None and day.year == today.year else f"{text}, {day.year}"
    text = f"{_ru_ordinal_genitive(day.day)} {_RU_MONTHS_GEN[day.month - 1]}"
    if today is not None and day.year == today.year:
        return text
    return f"{text} {_ru_ordinal_genitive(day.year)} года"


def say_time(moment: datetime, lang: str) -> str:
    """'9:00' / '9:00 AM': every synthesiser reads clock times correctly."""
    if lang == "en":
        hour = moment.hour % 12 or 12
        return f"{hour}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}"
    return f"{moment.hour}:{moment.minute:02d}"


def say_digits(text: str, lang: str) -> str:
    """Digit by digit, groups separated by a pause: '2026-000123' -> 'два ноль два шесть, ноль ноль …'."""
    names = _DIGITS["en" if lang == "en" else "ru"]
    groups: list[str] = []
    current: list[str] = []
    for ch in text:
        if ch.isdigit():
            current.append(names[int(ch)])
        elif ch.isalpha():
            current.append(ch.upper())
        elif current:
            groups.append(" ".join(current))
            current = []
    if current:
        groups.append(" ".join(current))
    return ", ".join(groups)
