"""Plain-text rendering of use-case results for Rasa (whose channels may be chat widgets or speech)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from handlers.context import AppContext
from handlers.dto import BalanceInfo, DocumentInfo, TicketSummary

_CURRENCY_SIGNS = {"RUB": "₽", "USD": "$", "EUR": "€"}
_LEADING_SIGN = frozenset({"USD", "EUR", "GBP"})
_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def money(amount: Decimal, currency: str, lang: str) -> str:
    sign = _CURRENCY_SIGNS.get(currency, currency)
    quantized = amount.quantize(Decimal("0.01"))
    grouped = f"{abs(quantized):,.2f}"
    minus = "-" if quantized < 0 else ""
    if lang == "ru":
        grouped = grouped.replace(",", "\u00a0").replace(".", ",")
        return f"{minus}{grouped}\u00a0{sign}"
    # English: "$12.50" for currencies written with a leading sign, "12,000.00 RUB" otherwise.
    return f"{minus}{sign}{grouped}" if currency in _LEADING_SIGN else f"{minus}{grouped} {currency}"


def day(value: date, lang: str) -> str:
    if lang == "ru":
        return value.strftime("%d.%m.%Y")
    return f"{value.day} {_MONTHS_EN[value.month - 1]} {value.year}"


def moment(ctx: AppContext, value: datetime, lang: str, department_code: str | None = None) -> str:
    """A deadline in the department's time zone (the one its business hours are written in)."""
    zone = ZoneInfo("Europe/Moscow")
    if department_code:
        try:
            zone = ctx.config.calendar_of(department_code).zone
        except KeyError:
            pass
    local = value.astimezone(zone)
    return f"{day(local.date(), lang)} {local:%H:%M}"


def balance_text(ctx: AppContext, info: BalanceInfo, lang: str) -> str:
    t = ctx.t
    lines = [
        t("rasa_balance", lang, account=info.account_number, amount=money(info.balance, info.currency, lang))
    ]
    status = (
        t(f"rasa_account_status_{info.status}", lang)
        if ctx.t.has(f"rasa_account_status_{info.status}")
        else info.status
    )
    lines.append(t("rasa_balance_status", lang, status=status))
    if info.tariff:
        lines.append(t("rasa_balance_tariff", lang, tariff=info.tariff))
    if info.paid_until:
        lines.append(t("rasa_balance_paid_until", lang, date=day(info.paid_until, lang)))
    if info.last_payments:
        last = info.last_payments[0]
        lines.append(
            t(
                "rasa_balance_last_payment",
                lang,
                amount=money(last.amount, last.currency, lang),
                date=day(last.paid_at.date(), lang),
            )
        )
    return "\n".join(lines)


def document_line(ctx: AppContext, doc: DocumentInfo, lang: str) -> str:
    kind = (
        ctx.t(f"rasa_document_kind_{doc.kind}", lang)
        if ctx.t.has(f"rasa_document_kind_{doc.kind}")
        else doc.kind
    )
    period = ""
    if doc.period_start and doc.period_end:
        period = f" ({day(doc.period_start, lang)} – {day(doc.period_end, lang)})"
    amount = f", {money(doc.amount, 'RUB', lang)}" if doc.amount is not None else ""
    return (
        f"{kind} № {doc.number} {ctx.t('rasa_document_of', lang)} {day(doc.issued_on, lang)}{period}{amount}"
    )


def ticket_status_name(ctx: AppContext, status: str, lang: str) -> str:
    key = f"rasa_ticket_status_{status}"
    return ctx.t(key, lang) if ctx.t.has(key) else status


def department_name(ctx: AppContext, ticket: TicketSummary, lang: str) -> str:
    try:
        return ctx.config.department(ticket.department_code).name.get(lang)
    except KeyError:
        return ticket.department_name


def ticket_line(ctx: AppContext, ticket: TicketSummary, lang: str) -> str:
    topic = (
        ctx.config.topics[ticket.topic].title.get(lang)
        if ticket.topic in ctx.config.topics
        else ticket.topic_title
    )
    return ctx.t(
        "rasa_ticket_line",
        lang,
        number=ticket.number,
        status=ticket_status_name(ctx, ticket.status, lang),
        topic=topic,
    )


def ticket_details(ctx: AppContext, ticket: TicketSummary, lang: str) -> str:
    lines = [
        ticket_line(ctx, ticket, lang),
        ctx.t("rasa_ticket_department", lang, department=department_name(ctx, ticket, lang)),
    ]
    if ticket.assignee_name:
        lines.append(ctx.t("rasa_ticket_assignee", lang, name=ticket.assignee_name))
    if ticket.status in ("new", "in_progress", "waiting_client"):
        due = ticket.first_response_due if ticket.status == "new" else ticket.resolution_due
        if due is not None:
            key = "rasa_ticket_answer_by" if ticket.status == "new" else "rasa_ticket_resolve_by"
            lines.append(ctx.t(key, lang, due=moment(ctx, due, lang, ticket.department_code)))
    return "\n".join(lines)
