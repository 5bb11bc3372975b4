"""Reading tickets: a client's own, a staff member's queue and tickets, and a ticket's history."""

from __future__ import annotations

import re
from collections.abc import Sequence

from handlers.context import AppContext
from handlers.dto import Actor, ClientProfile, NotFound, PermissionDenied, TicketEventView, TicketSummary
from handlers.tickets.common import database_errors_as_unavailable, departments, summarize_loaded
from handlers.tickets.permissions import acting_staff, can_view
from storage.models import Ticket
from storage.uow import UnitOfWork

# What a client sees of a ticket's history: no internal notes, SLA alarms or internal routing.
CLIENT_VISIBLE_EVENTS = frozenset({"opened", "message", "reply", "taken", "waiting_client", "resolved", "reopened",
                                   "closed", "rated"})
_NUMBER = re.compile(r"^#?\s*(\d{4})-(\d{1,9})$")


async def summaries(ctx: AppContext, uow: UnitOfWork, ticket_ids: Sequence[int]) -> list[TicketSummary]:
    """Summaries in the order of `ticket_ids`, with assignee and customer names."""
    depts = await departments(ctx, uow)
    by_id = {t.id: t for t in await uow.tickets.with_people(ticket_ids)}
    return [summarize_loaded(ctx, depts, by_id[i]) for i in ticket_ids if i in by_id]


async def find_ticket(uow: UnitOfWork, ticket_ref: int | str) -> Ticket | None:
    """By id (123) or number ("2026-000123", "#2026-123")."""
    if isinstance(ticket_ref, int):
        return await uow.tickets.get(ticket_ref)
    ref = str(ticket_ref).strip()
    if ref.isdigit() and len(ref) < 19:
        return await uow.tickets.get(int(ref))
    match = _NUMBER.match(ref)
    if match is None:
        return None
    return await uow.tickets.by_number(f"{match.group(1)}-{int(match.group(2)):06d}")


@database_errors_as_unavailable
async def list_client_tickets(ctx: AppContext, client: ClientProfile, *, limit: int = 10) -> list[TicketSummary]:
    """The client's open tickets first, then the most recent others."""
    async with ctx.uow() as uow:
        tickets = await uow.tickets.for_customer(client.customer_id, limit=max(1, min(limit, 100)))
        return await summaries(ctx, uow, [t.id for t in tickets])


@database_errors_as_unavailable
async def get_client_ticket(ctx: AppContext, client: ClientProfile, ticket_ref: int | str) -> TicketSummary:
    """One of the client's tickets; NotFound for anyone else's (the client may not learn it exists)."""
    async with ctx.uow() as uow:
        ticket = await find_ticket(uow, ticket_ref)
        if ticket is None or ticket.customer_id != client.customer_id:
            raise NotFound("ticket")
        return (await summaries(ctx, uow, [ticket.id]))[0]


@database_errors_as_unavailable
async def client_open_ticket(ctx: AppContext, client: ClientProfile) -> TicketSummary | None:
    """The client's current conversation: the most recently active open (or just resolved) ticket.

    Asked for every text a client sends, usually answered "none": read-only (on PostgreSQL one round trip
    for that answer instead of BEGIN, SELECT, ROLLBACK)."""
    async with ctx.read() as uow:
        ticket = await uow.tickets.latest_active(client.customer_id)
        if ticket is None:
            return None
        return (await summaries(ctx, uow, [ticket.id]))[0]


@database_errors_as_unavailable
async def ticket_history(ctx: AppContext, actor: Actor, ticket_id: int) -> list[TicketEventView]:
    async with ctx.uow() as uow:
        ticket = await uow.tickets.get(ticket_id)
        if ticket is None:
            raise NotFound("ticket")
        if actor.kind == "client":
            if actor.customer_id is None or ticket.customer_id != actor.customer_id:
                raise NotFound("ticket")
            visible = CLIENT_VISIBLE_EVENTS
        elif actor.kind == "staff":
            staff = await acting_staff(uow, actor)
            if not await can_view(uow, staff, ticket):
                raise PermissionDenied("ticket of another department")
            visible = None
        else:
            visible = None
        views = []
        for event, author_name in await uow.tickets.events(ticket.id):
            if visible is not None and event.kind not in visible:
                continue
            payload = event.payload or {}
            text = payload.get("text")
            if event.kind in ("opened",) and text is None:
                text = ticket.text
            views.append(TicketEventView(created_at=event.created_at, kind=event.kind, author_kind=event.author_kind,
                                         author_name=author_name, text=text))
        return views


@database_errors_as_unavailable
async def staff_queue(ctx: AppContext, actor: Actor, *, limit: int = 50) -> list[TicketSummary]:
    """The actor's department's open tickets, most urgent and oldest first."""
    async with ctx.uow() as uow:
        staff = await acting_staff(uow, actor)
        tickets = await uow.tickets.queue(staff.department_id, limit=limit)
        depts = await departments(ctx, uow)
        return [summarize_loaded(ctx, depts, t) for t in tickets]


@database_errors_as_unavailable
async def staff_tickets(ctx: AppContext, actor: Actor, *, limit: int = 50) -> list[TicketSummary]:
    """Open tickets assigned to the actor (/my)."""
    async with ctx.uow() as uow:
        staff = await acting_staff(uow, actor)
        tickets = await uow.tickets.assigned_to(staff.id, limit=limit)
        depts = await departments(ctx, uow)
        return [summarize_loaded(ctx, depts, t) for t in tickets]


@database_errors_as_unavailable
async def get_staff_ticket(ctx: AppContext, actor: Actor, ticket_ref: int | str) -> TicketSummary:
    async with ctx.uow() as uow:
        staff = await acting_staff(uow, actor)
        ticket = await find_ticket(uow, ticket_ref)
        if ticket is None:
            raise NotFound("ticket")
        if not await can_view(uow, staff, ticket):
            raise PermissionDenied("ticket of another department")
        return (await summaries(ctx, uow, [ticket.id]))[0]


@database_errors_as_unavailable
async def ticket_for_alert_reply(ctx: AppContext, chat_id: int, message_id: int) -> int | None:
    """The ticket an alert message was about, so a staff reply to that message reaches the ticket."""
    async with ctx.uow() as uow:
        return await uow.outbox.ticket_for_alert(chat_id, message_id)
