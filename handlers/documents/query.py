"""What documents a client asks for, from free text in Russian or English.

"акт за октябрь", "счета за 3 квартал", "детализация за полгода", "акт сверки за 2025",
"invoice for last month", "usage report for the last 6 months". Whatever is not said stays empty so the
adapter can ask for it; nothing is guessed beyond what people usually mean (a month without a year is the
latest such month that has begun).
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from handlers.dto import DocumentQuery

# Order matters: "акт сверки" must win over "акт".
_KIND_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("reconciliation", re.compile(r"акт\w*\s+сверк|сверк\w*|reconcil\w*|statement of account")),
    ("usage_report", re.compile(
        r"детализ\w*|расшифровк\w*|выписк\w*|usage(\s+reports?)?|call\s+details?|detail(ed|s)?\s+(report|bill)"
        r"|itemi[sz]ed")),
    ("act", re.compile(r"\bакт(ы|ов|а|ам|ами)?\b(?!\s+сверк)|\bacts?\b|completion certificates?"
                       r"|certificates? of completion|закрывающ\w*")),
    ("invoice", re.compile(r"\bсч[её]т(а|ов|у|ом|е|ам|ами)?\b|\bсч[её]т[аы]?[-\s]фактур\w*|\binvoices?\b|\bbills?\b"
                           r"|закрывающ\w*")),
    ("contract", re.compile(r"договор\w*|контракт\w*|\bcontracts?\b|\bagreements?\b")),
)
_KIND_ORDER = ("invoice", "act", "reconciliation", "usage_report", "contract")

_MONTHS_RU = ("январ", "феврал", "март", "апрел", "ма[йяе]", "июн", "июл", "август", "сентябр", "октябр",
              "ноябр", "декабр")
_MONTHS_EN = ("jan(uary)?", "feb(ruary)?", "mar(ch)?", "apr(il)?", "may", "june?", "july?", "aug(ust)?",
              "sep(t(ember)?)?", "oct(ober)?", "nov(ember)?", "dec(ember)?")
_MONTH_RE = [
    re.compile(rf"(?<![а-яё\w])(?:{ru}\w*|{en})(?![a-z])(?:\s+(?P<year>\d{{4}}))?", re.IGNORECASE)
    for ru, en in zip(_MONTHS_RU, _MONTHS_EN, strict=True)
]
_QUARTER_WORDS = {"i": 1, "ii": 2, "iii": 3, "iv": 4, "first": 1, "second": 2, "third": 3, "fourth": 4,
                  "1st": 1, "2nd": 2, "3rd": 3, "4th": 4}
_QUARTER_STEMS = (("перв", 1), ("втор", 2), ("трет", 3), ("четв", 4))
_QUARTER_RE = re.compile(
    r"(?:\b(\d|iv|iii|ii|i|1st|2nd|3rd|4th|перв\w*|втор\w*|трет\w*|четв[её]рт\w*|first|second|third|fourth)"
    r"(?:-?(?:й|ий|ый|ого|ом|го))?\s*(?:кв\.?|квартал\w*|quarter)|\bq([1-4]))(?:\s+(?:of\s+)?(\d{4}))?"
)
_NUM_WORDS = {"один": 1, "одного": 1, "два": 2, "двух": 2, "три": 3, "трёх": 3, "трех": 3, "четыре": 4,
              "четырёх": 4, "четырех": 4, "пять": 5, "пяти": 5, "шесть": 6, "шести": 6, "двенадцать": 12,
              "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "twelve": 12}
_LAST_N_MONTHS_RE = re.compile(
    r"(?:последн\w+|прошедш\w+|за|last|past|previous)\s+(\d{1,2}|[a-zа-яё]+)\s+(?:месяц\w*|мес\.?|months?)"
)
_DATE = r"(\d{1,2})[./](\d{1,2})[./](\d{4})|(\d{4})-(\d{2})-(\d{2})"
_RANGE_RE = re.compile(rf"(?:с|from|between)?\s*(?:{_DATE})\s*(?:по|до|-|–|—|to|and|till|until)\s*(?:{_DATE})")
_MONTH_NUM_RE = re.compile(r"\b(\d{1,2})[./](\d{4})\b|\b(\d{4})-(\d{2})\b(?!-)")
_YEAR_RE = re.compile(r"(?<!\d)(20\d{2}|19\d{2})(?!\d)")


def _month_start(year: int, month: int) -> date:
    while month <= 0:
        month += 12
        year -= 1
    while month > 12:
        month -= 12
        year += 1
    return date(year, month, 1)


def _month_end(start: date) -> date:
    return _month_start(start.year, start.month + 1) - timedelta(days=1)


def months_back(today: date, n: int) -> date:
    """First day of the month `n` months before today's month."""
    return _month_start(today.year, today.month - n)


def _kinds(text: str) -> tuple[str, ...]:
    found: set[str] = set()
    rest = text
    for kind, pattern in _KIND_PATTERNS:
        if pattern.search(rest):
            found.add(kind)
            if kind == "reconciliation":
                rest = pattern.sub(" ", rest)  # "акт сверки" is not also an "акт"
    return tuple(k for k in _KIND_ORDER if k in found)


def _to_date(groups: tuple[str | None, ...]) -> date | None:
    d, m, y, iy, im, id_ = groups
    try:
        if y:
            return date(int(y), int(m or 0), int(d or 0))
        return date(int(iy or 0), int(im or 0), int(id_ or 0))
    except ValueError:
        return None


def _period(text: str, today: date) -> tuple[date | None, date | None]:
    if m := _RANGE_RE.search(text):
        start, end = _to_date(m.groups()[:6]), _to_date(m.groups()[6:])
        if start and end:
            return (start, end) if start <= end else (end, start)

    if re.search(r"прошл\w+\s+месяц|предыдущ\w+\s+месяц|последн\w+\s+месяц(?!\w)|last month|previous month", text):
        start = months_back(today, 1)
        return start, _month_end(start)
    if re.search(r"(этот|этом|текущ\w+|сем)\s+месяц|this month|current month", text):
        return months_back(today, 0), today

    half_year = re.search(r"полгода|пол\s+года|half\s+(a\s+)?year|six months", text)
    m = _LAST_N_MONTHS_RE.search(text)
    n = 6 if half_year else (_count(m.group(1)) if m else None)
    if n:
        return months_back(today, n), _month_end(months_back(today, 1))

    if re.search(r"прошл\w+\s+квартал|предыдущ\w+\s+квартал|last quarter|previous quarter", text):
        q_start = _month_start(today.year, (today.month - 1) // 3 * 3 + 1 - 3)
        return q_start, _month_end(_month_start(q_start.year, q_start.month + 2))
    if re.search(r"(этот|этом|текущ\w+)\s+квартал|this quarter|current quarter", text):
        return _month_start(today.year, (today.month - 1) // 3 * 3 + 1), today

    if m := _QUARTER_RE.search(text):
        quarter = _quarter_number(m.group(1) or m.group(2) or "")
        if quarter:
            year = int(m.group(3)) if m.group(3) else _year_of(text)
            if year is None:
                year = today.year if _month_start(today.year, quarter * 3 - 2) <= today else today.year - 1
            start = _month_start(year, quarter * 3 - 2)
            return start, _month_end(_month_start(year, quarter * 3))

    for index, pattern in enumerate(_MONTH_RE):
        if m := pattern.search(text):
            month = index + 1
            year = int(m.group("year")) if m.group("year") else _year_of(text)
            if year is None:
                year = today.year if month <= today.month else today.year - 1
            start = date(year, month, 1)
            return start, _month_end(start)

    if m := _MONTH_NUM_RE.search(text):
        month, year = (int(m.group(1)), int(m.group(2))) if m.group(1) else (int(m.group(4)), int(m.group(3)))
        if 1 <= month <= 12:
            start = date(year, month, 1)
            return start, _month_end(start)

    if re.search(r"прошл\w+\s+год|предыдущ\w+\s+год|last year|previous year", text):
        return date(today.year - 1, 1, 1), date(today.year - 1, 12, 31)
    if re.search(r"(этот|этом|текущ\w+|сей)\s+год|this year|current year", text):
        return date(today.year, 1, 1), today
    if year := _year_of(text):
        return date(year, 1, 1), date(year, 12, 31)
    if re.search(r"за\s+год|последн\w+\s+год|past year|last 12 months|last twelve months", text):
        return months_back(today, 12), _month_end(months_back(today, 1))
    return None, None


def _quarter_number(token: str) -> int | None:
    token = token.lower()
    if token.isdigit():
        return int(token) if 1 <= int(token) <= 4 else None
    if token in _QUARTER_WORDS:
        return _QUARTER_WORDS[token]
    return next((q for stem, q in _QUARTER_STEMS if token.startswith(stem)), None)


def _count(word: str) -> int | None:
    if word.isdigit():
        value = int(word)
        return value if 1 <= value <= 36 else None
    return _NUM_WORDS.get(word)


def _year_of(text: str) -> int | None:
    m = _YEAR_RE.search(text)
    return int(m.group(1)) if m else None


def parse_document_request(text: str, language: str, today: date) -> DocumentQuery:
    """Kinds and period named in `text`; `language` is a hint only (people mix languages)."""
    del language  # both languages' words are recognised in any message
    normalized = " ".join((text or "")[:2000].lower().replace("ё", "е").split())
    normalized = normalized.replace("cчет", "счет")  # a Latin "c" typed by mistake
    kinds = _kinds(normalized)
    start, end = _period(normalized, today)
    return DocumentQuery(kinds=kinds, period_start=start, period_end=end)
