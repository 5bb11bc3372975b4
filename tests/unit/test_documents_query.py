"""Document requests in free text, ru and en."""

from datetime import date

import pytest

from handlers.documents import parse_document_request

TODAY = date(2026, 11, 22)


@pytest.mark.parametrize(
    ("text", "kinds", "start", "end"),
    [
        ("акт за октябрь", ("act",), date(2026, 10, 1), date(2026, 10, 31)),
        ("Акт за декабрь", ("act",), date(2025, 12, 1), date(2025, 12, 31)),
        ("счета за 3 квартал", ("invoice",), date(2026, 7, 1), date(2026, 9, 30)),
        ("счёт за III квартал 2025 года", ("invoice",), date(2025, 7, 1), date(2025, 9, 30)),
        ("детализация за полгода", ("usage_report",), date(2026, 5, 1), date(2026, 10, 31)),
        ("акт сверки за 2025", ("reconciliation",), date(2025, 1, 1), date(2025, 12, 31)),
        ("invoice for last month", ("invoice",), date(2026, 10, 1), date(2026, 10, 31)),
        ("usage report for the last 6 months", ("usage_report",), date(2026, 5, 1), date(2026, 10, 31)),
        ("пришлите счет и акт за март 2026", ("invoice", "act"), date(2026, 3, 1), date(2026, 3, 31)),
        ("детализацию за последние 3 месяца", ("usage_report",), date(2026, 8, 1), date(2026, 10, 31)),
        ("invoices for Q1 2026", ("invoice",), date(2026, 1, 1), date(2026, 3, 31)),
        ("act for the third quarter", ("act",), date(2026, 7, 1), date(2026, 9, 30)),
        ("акты за прошлый квартал", ("act",), date(2026, 7, 1), date(2026, 9, 30)),
        ("счета с 01.02.2026 по 15.04.2026", ("invoice",), date(2026, 2, 1), date(2026, 4, 15)),
        ("invoice 2026-05", ("invoice",), date(2026, 5, 1), date(2026, 5, 31)),
        ("копия договора", ("contract",), None, None),
        ("акт за прошлый год", ("act",), date(2025, 1, 1), date(2025, 12, 31)),
        ("reconciliation statement for 2025", ("reconciliation",), date(2025, 1, 1), date(2025, 12, 31)),
        ("invoice for May", ("invoice",), date(2026, 5, 1), date(2026, 5, 31)),
        ("счёт за мая", ("invoice",), date(2026, 5, 1), date(2026, 5, 31)),
    ],
)
def test_kinds_and_period(text: str, kinds: tuple[str, ...], start: date | None, end: date | None) -> None:
    query = parse_document_request(text, "ru", TODAY)
    assert query.kinds == kinds
    assert (query.period_start, query.period_end) == (start, end)


def test_missing_parts_stay_empty_so_the_adapter_asks() -> None:
    assert parse_document_request("нужны документы", "ru", TODAY).kinds == ()
    only_kind = parse_document_request("пришлите акт", "ru", TODAY)
    assert only_kind.kinds == ("act",) and only_kind.period_start is None and not only_kind.complete
    only_period = parse_document_request("за октябрь", "ru", TODAY)
    assert only_period.kinds == () and only_period.period_start == date(2026, 10, 1)


def test_reconciliation_is_not_also_an_act() -> None:
    assert parse_document_request("акт сверки за 3 квартал", "ru", TODAY).kinds == ("reconciliation",)


def test_huge_and_empty_input() -> None:
    assert parse_document_request("", "en", TODAY).kinds == ()
    assert parse_document_request("акт " * 20000, "ru", TODAY).kinds == ("act",)
