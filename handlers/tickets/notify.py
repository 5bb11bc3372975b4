"""Outbox rows written by ticket use cases, in the same transaction as the change they announce.

Staff alerts are rendered by the dispatcher at send time (payload `{"render": "ticket_alert", ...}`), in the
recipient's language and with the ticket's current state, so a slow-to-deliver alert never shows stale
buttons or an outdated card. Client updates are rendered now, in the ticket's language.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from handlers.context import AppContext
from handlers.tickets.common import Departments
from storage.models import Interaction, Staff, Ticket
from storage.uow import UnitOfWork


async def alert_staff(uow: UnitOfWork, ticket: Ticket, staff_id: int, *, event: str, kind: str = "ticket_alert",
                      extra: dict[str, Any] | None = None, dedupe_key: str | None = None) -> None:
    uow.outbox.enqueue(kind=kind, recipient_kind="staff", staff_id=staff_id, department_id=ticket.department_id,
                       ticket_id=ticket.id, payload={"render": "ticket_alert", "event": event, **(extra or {})},
                       dedupe_key=dedupe_key)


async def alert_department(ctx: AppContext, uow: UnitOfWork, depts: Departments, ticket: Ticket, *, event: str,
                           kind: str = "ticket_alert", extra: dict[str, Any] | None = None,
                           dedupe_key: str | None = None, supervisors_too: bool = False) -> None:
    """The department's Telegram group; without one, its on-duty staff (or its supervisors) one by one."""
    code = depts.by_id.get(ticket.department_id)
    config_dept = ctx.config.department(code) if code else None
    payload = {"render": "ticket_alert", "event": event, **(extra or {})}
    if config_dept is not None and config_dept.telegram_chat_id:
        uow.outbox.enqueue(kind=kind, recipient_kind="group", department_id=ticket.department_id,
                           chat_id=config_dept.telegram_chat_id, ticket_id=ticket.id, payload=payload,
                           dedupe_key=dedupe_key)
        if not supervisors_too:
            return
        recipients = await _supervisors(uow, ticket.department_id)
    else:
        recipients = await department_staff_fallback(uow, ticket.department_id, supervisors_only=supervisors_too)
    for index, staff_id in enumerate(recipients):
        uow.outbox.enqueue(kind=kind, recipient_kind="staff", staff_id=staff_id, department_id=ticket.department_id,
                           ticket_id=ticket.id, payload=payload,
                           dedupe_key=f"{dedupe_key}:{index}" if dedupe_key else None)


async def _supervisors(uow: UnitOfWork, department_id: int) -> list[int]:
    rows = await uow.session.scalars(
        select(Staff.id).where(Staff.department_id == department_id, Staff.is_active.is_(True),
                               Staff.role == "supervisor").order_by(Staff.id))
    return list(rows)


async def department_staff_fallback(uow: UnitOfWork, department_id: int, *, supervisors_only: bool = False,
                                    exclude: int | None = None) -> list[int]:
    """Who hears about a department's ticket when the department has no group chat.

    The on-duty staff; nobody on duty → the supervisors; no supervisors → the administrators. An alert
    must reach someone.
    """
    if not supervisors_only:
        staff = [i for i in await uow.staff.on_duty_ids(department_id) if i != exclude]
        if staff:
            return staff
    supervisors = [i for i in await _supervisors(uow, department_id) if i != exclude]
    if supervisors:
        return supervisors
    rows = await uow.session.scalars(
        select(Staff.id).where(Staff.is_active.is_(True), Staff.role == "admin", Staff.id != (exclude or -1))
        .order_by(Staff.id))
    return list(rows)


async def notify_client(uow: UnitOfWork, ticket: Ticket, text: str, *, kind: str = "client_update",
                        buttons: list[list[dict[str, str]]] | None = None, email: dict[str, Any] | None = None,
                        dedupe_key: str | None = None) -> str | None:
    """Queue a message to the ticket's client; returns the route ("customer"/"chat") or None (no Telegram).

    A known client is addressed as a customer (the dispatcher finds their Telegram at send time); an
    unidentified Telegram sender is answered in the chat the request came from.
    """
    payload: dict[str, Any] = {"text": text}
    if buttons:
        payload["buttons"] = buttons
    if email:
        payload["email"] = email
    if ticket.customer_id is not None:
        uow.outbox.enqueue(kind=kind, recipient_kind="customer", customer_id=ticket.customer_id,
                           ticket_id=ticket.id, payload=payload, dedupe_key=dedupe_key)
        return "customer"
    chat_id = await telegram_chat_of_request(uow, ticket.id)
    if chat_id is None:
        return None
    uow.outbox.enqueue(kind=kind, recipient_kind="chat", chat_id=chat_id, ticket_id=ticket.id, payload=payload,
                       dedupe_key=dedupe_key)
    return "chat"


async def telegram_chat_of_request(uow: UnitOfWork, ticket_id: int) -> int | None:
    sender = await uow.session.scalar(
        select(Interaction.sender)
        .where(Interaction.ticket_id == ticket_id, Interaction.channel == "telegram", Interaction.sender.is_not(None))
        .order_by(Interaction.id).limit(1))
    if sender and sender.lstrip("-").isdigit():
        return int(sender)
    return None
