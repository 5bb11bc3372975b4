"""State changes shared by client and staff use cases: pausing and resuming the SLA clock, reopening."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from handlers.context import AppContext
from handlers.dto import Attachment, ClientProfile, InvalidRequest, NotFound, TicketSummary
from handlers.tickets.common import (
    INTERACTION_TEXT_LIMIT,
    TICKET_TEXT_LIMIT,
    Departments,
    database_errors_as_unavailable,
    departments,
)
from handlers.tickets.notify import alert_department, alert_staff
from handlers.tickets.sla import extend_after_pause
from storage.models import Interaction, Ticket
from storage.uow import UnitOfWork


def resume_sla(ctx: AppContext, depts: Departments, ticket: Ticket, now: datetime) -> None:
    """The client answered: restart the clock, moving the deadline by the business time spent waiting."""
    if ticket.sla_paused_at is None:
        return
    calendar = ctx.config.calendar_of(depts.by_id[ticket.department_id])
    if ticket.resolution_due is not None and ticket.resolution_breached_at is None:
        ticket.resolution_due = extend_after_pause(calendar, ticket.resolution_due, ticket.sla_paused_at, now)
    ticket.sla_paused_at = None


def working_status(ticket: Ticket) -> str:
    return "in_progress" if ticket.assignee_id is not None else "new"


@database_errors_as_unavailable
async def add_client_message(ctx: AppContext, client: ClientProfile, ticket_id: int, text: str, *,
                             message_key: str | None = None, attachments: Sequence[Attachment] = (),
                             channel: str = "telegram") -> TicketSummary:
    """A client's message on their ticket: recorded, relayed to the assignee (or department), and it
    reopens a resolved ticket and restarts a paused SLA clock. Idempotent on `message_key`."""
    from handlers.tickets.queries import summaries

    text = (text or "").strip()
    if not text and not attachments:
        raise InvalidRequest("empty message")
    now = ctx.clock()
    try:
        async with ctx.uow() as uow:
            ticket = await uow.tickets.get(ticket_id, for_update=True)
            if ticket is None or ticket.customer_id != client.customer_id:
                raise NotFound("ticket")
            if message_key and await uow.interactions.by_external_id(message_key) is not None:
                return (await summaries(ctx, uow, [ticket.id]))[0]
            if ticket.status == "closed":
                raise InvalidRequest("ticket closed")
            depts = await departments(ctx, uow)
            await _record_client_message(ctx, uow, depts, ticket, text, attachments, now)
            uow.interactions.add(Interaction(
                channel=channel, customer_id=client.customer_id, external_id=message_key,
                text=text[:INTERACTION_TEXT_LIMIT], topic=ticket.topic, outcome="ticket_message",
                ticket_id=ticket.id, created_at=now))
            await uow.commit()
            result = (await summaries(ctx, uow, [ticket.id]))[0]
    except IntegrityError:
        if message_key:  # the same message arrived twice at once
            async with ctx.uow() as uow:
                return (await summaries(ctx, uow, [ticket_id]))[0]
        raise
    await ctx.wake_dispatcher()
    return result


async def _record_client_message(ctx: AppContext, uow: UnitOfWork, depts: Departments, ticket: Ticket, text: str,
                                 attachments: Sequence[Attachment], now: datetime) -> None:
    files = [{"kind": a.kind, "ref": a.ref} for a in attachments]
    uow.tickets.add_event(ticket.id, "message", "client", at=now,
                          payload={"text": text[:TICKET_TEXT_LIMIT], "attachments": files})
    uow.tickets.add_attachments(ticket.id, attachments)
    if ticket.status == "resolved":
        ticket.status = working_status(ticket)
        ticket.resolved_at = None
        uow.tickets.add_event(ticket.id, "reopened", "client", at=now)
    elif ticket.status == "waiting_client":
        resume_sla(ctx, depts, ticket, now)
        ticket.status = working_status(ticket)
        uow.tickets.add_event(ticket.id, "status", "client", at=now,
                              payload={"from": "waiting_client", "to": ticket.status})
    ticket.last_client_message_at = now
    ticket.updated_at = now
    extra = {"text": text[:3000], "attachments": files}
    if ticket.assignee_id is not None:
        await alert_staff(uow, ticket, ticket.assignee_id, event="client_message", kind="client_message", extra=extra)
    else:
        await alert_department(ctx, uow, depts, ticket, event="client_message", kind="client_message", extra=extra)
