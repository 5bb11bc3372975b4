"""The staff alert: what happened, the customer card and the request, with the ticket's action buttons.

HTML parse mode; everything that came from a client or the database is escaped. The whole message stays
within Telegram's 4,096 characters: only the request text is shortened (before escaping, so no entity is
cut in half), the card itself is short by construction.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from handlers.callbacks import TICKET, Callback
from handlers.context import AppContext
from handlers.tickets.common import Departments, department_name, departments, escape, local_time, topic_title
from storage.models import Customer, Interaction, Ticket
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)
TELEGRAM_LIMIT = 4096
_HEADERS = {
    "opened": "alert_opened", "client_message": "alert_client_message", "taken_over": "alert_taken_over",
    "reassigned": "alert_reassigned", "escalated": "alert_escalated", "sla_warning": "alert_sla_warning",
    "sla_breach": "alert_sla_breach", "low_rating": "alert_low_rating",
}


def ticket_buttons(ctx: AppContext, ticket: Ticket, lang: str) -> list[list[dict[str, str]]]:
    """Staff actions on a ticket: `t:take:<id>`, `t:reply:<id>`, `t:resolve:<id>`, `t:reassign:<id>`,
    `t:history:<id>` (the bot checks permission again on every press)."""

    def button(action: str) -> dict[str, str]:
        return {"text": ctx.t(f"btn_{action}", lang), "callback_data": Callback(TICKET, action, str(ticket.id)).encode()}

    if ticket.status in ("resolved", "closed"):
        return [[button("history")]]
    first = [button("reply"), button("resolve")]
    if ticket.status == "new" or ticket.assignee_id is None:
        first.insert(0, button("take"))
    return [first, [button("reassign"), button("history")]]


@dataclass
class _Facts:
    """Everything the alert shows, read in one short transaction (live billing is asked after it ends)."""

    ticket: Ticket
    depts: Departments
    customer: Customer | None = None
    phones: list[str] = field(default_factory=list)
    accounts: list[tuple[str, Decimal, str, str]] = field(default_factory=list)  # number, balance, currency, status
    manager_name: str | None = None
    others: list[Ticket] = field(default_factory=list)
    recent: list[Interaction] = field(default_factory=list)


async def _gather(ctx: AppContext, uow: UnitOfWork, ticket_id: int) -> _Facts | None:
    ticket = await uow.tickets.get(ticket_id)
    if ticket is None:
        return None
    facts = _Facts(ticket=ticket, depts=await departments(ctx, uow))
    if ticket.customer_id is None:
        return facts
    customer = await uow.customers.get(ticket.customer_id)
    if customer is None:
        return facts
    facts.customer = customer
    if customer.anonymised_at is None:
        facts.phones = [p.phone for p in customer.phones[:3]]
    facts.accounts = [(a.number, a.balance, a.currency, a.status)
                      for a in (await uow.accounts.for_customer(customer.id))[:3]]
    if customer.manager_id:
        manager = await uow.staff.get(customer.manager_id)
        facts.manager_name = manager.name if manager is not None else None
    facts.others = [t for t in await uow.tickets.open_for_customer(customer.id, limit=6) if t.id != ticket.id][:5]
    facts.recent = await uow.interactions.recent_for_customer(customer.id, limit=5)
    return facts


async def _live_accounts(ctx: AppContext, accounts: list[tuple[str, Decimal, str, str]]
                         ) -> list[tuple[str, Decimal, str, str]]:
    """Balances from the billing source when one is wired (it may be an external system), else our copy."""
    if ctx.billing is None:
        return accounts
    live = []
    for number, balance, currency, status in accounts:
        try:
            info = await asyncio.wait_for(ctx.billing.account_balance(number), 1.5)
            if info is not None:
                balance, currency, status = info.balance, info.currency, info.status
        except Exception as exc:  # the card is still useful without a live balance
            log.warning("card: live balance for %s unavailable: %s", number, exc)
        live.append((number, balance, currency, status))
    return live


def _card_lines(ctx: AppContext, facts: _Facts, lang: str) -> list[str]:
    ticket, customer = facts.ticket, facts.customer
    if customer is None:
        who = ticket.contact_phone or ctx.t("card_unknown_sender", lang)
        return [ctx.t("card_unknown_client", lang, contact=escape(who))]
    segment = ctx.config.segments.get(customer.segment)
    kind_key = f"card_kind_{customer.kind}"
    lines = [ctx.t("card_client", lang, name=escape(customer.name),
                   kind=ctx.t(kind_key, lang) if ctx.t.has(kind_key) else escape(customer.kind),
                   segment=escape(segment.title.get(lang) if segment else customer.segment))]
    if facts.phones:
        lines.append("📞 " + escape(", ".join(facts.phones)))
    for number, balance, currency, status in facts.accounts:
        status_key = f"card_status_{status}"
        lines.append(ctx.t("card_account", lang, number=escape(number),
                           balance=f"{balance:,.2f}".replace(",", " "), currency=escape(currency),
                           status=ctx.t(status_key, lang) if ctx.t.has(status_key) else escape(status)))
    if facts.manager_name:
        lines.append(ctx.t("card_manager", lang, name=escape(facts.manager_name)))
    if facts.others:
        lines.append(ctx.t("card_open_tickets", lang, tickets=", ".join(
            f"{escape(t.number)} ({escape(topic_title(ctx.config, t.topic, lang))})" for t in facts.others)))
    if facts.recent:
        lines.append(ctx.t("card_recent", lang))
        for item in facts.recent:
            what = topic_title(ctx.config, item.topic, lang) if item.topic else "—"
            outcome_key = f"outcome_{item.outcome}"
            outcome = ctx.t(outcome_key, lang) if ctx.t.has(outcome_key) else (item.outcome or "—")
            lines.append(f"• {local_time(ctx, item.created_at)} {escape(item.channel)}: {escape(what)}"
                         f" → {escape(outcome)}")
    return lines


async def render_customer_card(ctx: AppContext, ticket_id: int, lang: str) -> str | None:
    """The customer card of a ticket's client (HTML): name, kind and segment, phones, accounts with balance
    and status, personal manager, other open tickets, the last 5 contacts. None when the ticket is gone."""
    async with ctx.uow() as uow:
        facts = await _gather(ctx, uow, ticket_id)
    if facts is None:
        return None
    facts.accounts = await _live_accounts(ctx, facts.accounts)
    return "\n".join(_card_lines(ctx, facts, lang))


def _request_lines(ctx: AppContext, depts: Departments, ticket: Ticket, lang: str) -> list[str]:
    code = depts.by_id.get(ticket.department_id, "")
    lines = [
        ctx.t("card_request", lang, number=escape(ticket.number), topic=escape(topic_title(ctx.config, ticket.topic,
                                                                                            lang)),
              priority=ctx.t(f"priority_{ticket.priority}", lang), department=escape(department_name(ctx.config,
                                                                                                      code, lang))),
        ctx.t("card_sla", lang, first=local_time(ctx, ticket.first_response_due, code),
              resolution=local_time(ctx, ticket.resolution_due, code)),
    ]
    if ticket.status == "waiting_client":
        lines.append(ctx.t("card_waiting_client", lang))
    return lines


def _fit(head: str, quote: str, tail: str) -> str:
    """Head, the (escaped) client text in a quote, tail — the client text shortened to fit one message."""
    budget = TELEGRAM_LIMIT - len(head) - len(tail) - len("<blockquote></blockquote>") - 4
    raw = quote
    while True:
        escaped = escape(raw)
        if len(escaped) <= budget:
            break
        # Cut the raw text (never the escaped one) by the overshoot, and say it was cut.
        raw = raw[: max(0, len(raw) - (len(escaped) - budget) - 2)].rstrip() + "…"
        if len(raw) <= 1:
            escaped = ""
            break
    body = f"<blockquote>{escaped}</blockquote>" if escaped else ""
    return "\n".join(part for part in (head, body, tail) if part)


async def render_ticket_alert(ctx: AppContext, ticket_id: int, payload: dict[str, Any],
                              lang: str) -> tuple[str, list[list[dict[str, str]]]] | None:
    """Text and buttons of a staff alert about `ticket_id`; None when the ticket no longer exists.

    Opens its own short unit of work (never call it inside one) and asks billing after it is closed."""
    async with ctx.uow() as uow:
        facts = await _gather(ctx, uow, ticket_id)
    if facts is None:
        return None
    facts.accounts = await _live_accounts(ctx, facts.accounts)
    ticket, depts = facts.ticket, facts.depts
    event = str(payload.get("event") or "opened")
    values = {"number": escape(ticket.number), "by": escape(str(payload.get("by") or "")),
              "score": escape(str(payload.get("score") or "")),
              "which": ctx.t(f"sla_kind_{payload.get('which', 'resolution')}", lang),
              "due": local_time(ctx, _as_datetime(payload.get("due")), depts.by_id.get(ticket.department_id))}
    header = ctx.t(_HEADERS.get(event, "alert_opened"), lang, **values)
    request = _request_lines(ctx, depts, ticket, lang)
    if event in ("client_message", "low_rating"):
        quote = str(payload.get("text") or "")
        files = payload.get("attachments") or []
        if files:
            kinds = ", ".join(sorted({str(f.get("kind")) for f in files if isinstance(f, dict)}))
            request.append(ctx.t("card_attachments", lang, count=len(files), kinds=escape(kinds)))
    else:
        quote = ticket.text
    head = "\n".join([f"<b>{header}</b>", *request])
    tail = "\n".join(_card_lines(ctx, facts, lang))
    return _fit(head, quote, tail), ticket_buttons(ctx, ticket, lang)


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return value if isinstance(value, datetime) else None
