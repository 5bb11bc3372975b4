"""What staff do with a ticket: take, reply, wait for the client, resolve, reassign, escalate, note.

Every action re-reads the acting staff member and the ticket inside its transaction and checks permission
there (callback data can be forged, roles change). Each change is a ticket event; the client is told of
the changes that matter to them (taken, answered, resolved) through the outbox, in the ticket's language.
"""

from __future__ import annotations

from sqlalchemy import select

from handlers.context import AppContext
from handlers.dto import Actor, InvalidRequest, PermissionDenied, TicketSummary
from handlers.tickets.common import (
    TICKET_TEXT_LIMIT,
    Departments,
    database_errors_as_unavailable,
    departments,
    escape,
    raise_priority,
)
from handlers.tickets.csat import rating_buttons
from handlers.tickets.lifecycle import resume_sla
from handlers.tickets.notify import alert_department, alert_staff, notify_client
from handlers.tickets.permissions import can_view, can_work_on, may_take_over, staff_ticket
from handlers.tickets.routing import least_loaded
from storage.models import Customer, Staff, Ticket
from storage.uow import UnitOfWork

REPLY_LIMIT = 3500  # leaves room for the header within Telegram's 4,096 characters


async def _finish(ctx: AppContext, uow: UnitOfWork, ticket: Ticket) -> TicketSummary:
    from handlers.tickets.queries import summaries

    await uow.commit()
    summary = (await summaries(ctx, uow, [ticket.id]))[0]
    return summary


def _not_final(ticket: Ticket) -> None:
    if ticket.status == "closed":
        raise InvalidRequest("ticket closed")


async def _client_email(uow: UnitOfWork, ticket: Ticket, subject: str, text: str) -> dict[str, str] | None:
    """An e-mail copy for clients without Telegram (used only when an e-mail sender is configured)."""
    if ticket.customer_id is None:
        return None
    email = await uow.session.scalar(select(Customer.email).where(Customer.id == ticket.customer_id))
    return {"email": email, "subject": subject, "text": text} if email else None


@database_errors_as_unavailable
async def take_ticket(ctx: AppContext, actor: Actor, ticket_id: int) -> TicketSummary:
    now = ctx.clock()
    async with ctx.uow() as uow:
        staff, ticket = await staff_ticket(uow, actor, ticket_id, lock=True)
        if not await may_take_over(uow, staff, ticket):
            raise PermissionDenied("cannot take this ticket")
        _not_final(ticket)
        if ticket.status == "resolved":
            raise InvalidRequest("ticket resolved")
        if ticket.assignee_id == staff.id and ticket.status != "new":
            return await _finish(ctx, uow, ticket)
        previous = ticket.assignee_id
        first_take = ticket.status == "new"
        ticket.assignee_id = staff.id
        if ticket.status == "new":
            ticket.status = "in_progress"
        ticket.updated_at = now
        uow.tickets.add_event(ticket.id, "taken", "staff", author_staff_id=staff.id, at=now,
                              payload={"previous_assignee_id": previous})
        if previous is not None and previous != staff.id:
            await alert_staff(uow, ticket, previous, event="taken_over", extra={"by": staff.name})
        if first_take:
            lang = ticket.language
            await notify_client(uow, ticket, ctx.t("ticket_taken_client", lang, number=ticket.number,
                                                   name=escape(staff.name)))
        summary = await _finish(ctx, uow, ticket)
    await ctx.wake_dispatcher()
    return summary


@database_errors_as_unavailable
async def reply_to_ticket(ctx: AppContext, actor: Actor, ticket_id: int, text: str) -> TicketSummary:
    text = (text or "").strip()
    if not text:
        raise InvalidRequest("empty reply")
    now = ctx.clock()
    async with ctx.uow() as uow:
        staff, ticket = await staff_ticket(uow, actor, ticket_id, lock=True)
        if not await can_work_on(uow, staff, ticket):
            raise PermissionDenied("cannot answer this ticket")
        _not_final(ticket)
        depts = await departments(ctx, uow)
        if ticket.assignee_id is None:
            ticket.assignee_id = staff.id
            uow.tickets.add_event(ticket.id, "taken", "staff", author_staff_id=staff.id, at=now,
                                  payload={"previous_assignee_id": None})
        if ticket.first_response_at is None:
            ticket.first_response_at = now
        if ticket.status == "waiting_client":
            resume_sla(ctx, depts, ticket, now)
        if ticket.status in ("new", "waiting_client"):
            ticket.status = "in_progress"
        ticket.updated_at = now
        uow.tickets.add_event(ticket.id, "reply", "staff", author_staff_id=staff.id, at=now,
                              payload={"text": text[:TICKET_TEXT_LIMIT]})
        lang = ticket.language
        body = ctx.t("ticket_reply_client", lang, number=ticket.number, name=escape(staff.name),
                     text=escape(_cut(text, REPLY_LIMIT)))
        route = await notify_client(uow, ticket, body, email=await _client_email(
            uow, ticket, ctx.t("ticket_email_subject", lang, number=ticket.number), text))
        if route is None:
            uow.tickets.add_event(ticket.id, "client_unreachable", "system", at=now,
                                  payload={"contact_phone": ticket.contact_phone})
        summary = await _finish(ctx, uow, ticket)
    await ctx.wake_dispatcher()
    return summary


@database_errors_as_unavailable
async def set_waiting_client(ctx: AppContext, actor: Actor, ticket_id: int) -> TicketSummary:
    """Waiting for the client stops the SLA clock (resumed by the client's next message or a reply)."""
    now = ctx.clock()
    async with ctx.uow() as uow:
        staff, ticket = await staff_ticket(uow, actor, ticket_id, lock=True)
        if not await can_work_on(uow, staff, ticket):
            raise PermissionDenied("cannot change this ticket")
        if ticket.status not in ("new", "in_progress"):
            raise InvalidRequest(f"ticket is {ticket.status}")
        if ticket.assignee_id is None:
            ticket.assignee_id = staff.id
        if ticket.first_response_at is None:
            ticket.first_response_at = now  # asking the client is a response
        previous = ticket.status
        ticket.status = "waiting_client"
        ticket.sla_paused_at = now
        ticket.updated_at = now
        uow.tickets.add_event(ticket.id, "waiting_client", "staff", author_staff_id=staff.id, at=now,
                              payload={"from": previous})
        return await _finish(ctx, uow, ticket)


@database_errors_as_unavailable
async def resolve_ticket(ctx: AppContext, actor: Actor, ticket_id: int, text: str | None = None) -> TicketSummary:
    """Resolved: the client is told (with the resolution text) and asked for a 1–5 rating."""
    text = (text or "").strip() or None
    now = ctx.clock()
    async with ctx.uow() as uow:
        staff, ticket = await staff_ticket(uow, actor, ticket_id, lock=True)
        if not await can_work_on(uow, staff, ticket):
            raise PermissionDenied("cannot resolve this ticket")
        _not_final(ticket)
        if ticket.status == "resolved":
            return await _finish(ctx, uow, ticket)
        if ticket.assignee_id is None:
            ticket.assignee_id = staff.id
        if ticket.first_response_at is None:
            ticket.first_response_at = now
        ticket.status = "resolved"
        ticket.resolved_at = now
        ticket.sla_paused_at = None
        ticket.updated_at = now
        uow.tickets.add_event(ticket.id, "resolved", "staff", author_staff_id=staff.id, at=now,
                              payload={"text": text} if text else {})
        lang = ticket.language
        body = ctx.t("ticket_resolved_client", lang, number=ticket.number)
        if text:
            body += "\n\n" + escape(_cut(text, REPLY_LIMIT))
        body += "\n\n" + ctx.t("csat_question", lang)
        await notify_client(uow, ticket, body, kind="csat", buttons=rating_buttons(ticket.id),
                            email=await _client_email(uow, ticket, ctx.t("ticket_email_subject", lang,
                                                                         number=ticket.number), body))
        summary = await _finish(ctx, uow, ticket)
    await ctx.wake_dispatcher()
    return summary


@database_errors_as_unavailable
async def reassign_ticket(ctx: AppContext, actor: Actor, ticket_id: int, *, department_code: str | None = None,
                          staff_id: int | None = None) -> TicketSummary:
    """Hand a ticket to a person (who must be active) or to a department (its least-loaded agent on duty,
    or its queue). The assignee, supervisors, admins and the client's manager may; an agent may route an
    unassigned ticket of their own department."""
    if department_code is None and staff_id is None:
        raise InvalidRequest("reassign to whom?")
    now = ctx.clock()
    async with ctx.uow() as uow:
        staff, ticket = await staff_ticket(uow, actor, ticket_id, lock=True)
        if not await can_work_on(uow, staff, ticket):
            raise PermissionDenied("cannot reassign this ticket")
        _not_final(ticket)
        depts = await departments(ctx, uow)
        previous_assignee, previous_department = ticket.assignee_id, ticket.department_id
        if staff_id is not None:
            target = await uow.staff.get(staff_id)
            if target is None or not target.is_active:
                raise InvalidRequest("no such staff member")
            if department_code is not None and depts.id(department_code) != target.department_id:
                raise InvalidRequest("that person is not in that department")
            ticket.assignee_id, ticket.department_id = target.id, target.department_id
        else:
            route = await least_loaded(ctx, uow, depts, department_code or "", exclude=None) \
                if department_code in depts.by_code else None
            if route is None:
                raise InvalidRequest(f"unknown department {department_code!r}")
            ticket.department_id = depts.id(route.department_code)
            ticket.assignee_id = route.assignee_id
        if ticket.assignee_id is None:
            ticket.status = "new" if ticket.status == "in_progress" else ticket.status
        ticket.updated_at = now
        uow.tickets.add_event(ticket.id, "assigned", "staff", author_staff_id=staff.id, at=now, payload={
            "from_assignee_id": previous_assignee, "assignee_id": ticket.assignee_id,
            "from_department_id": previous_department, "department_id": ticket.department_id})
        await _alert_new_owner(ctx, uow, depts, ticket, event="reassigned", by=staff)
        summary = await _finish(ctx, uow, ticket)
    await ctx.wake_dispatcher()
    return summary


@database_errors_as_unavailable
async def escalate_ticket(ctx: AppContext, actor: Actor, ticket_id: int) -> TicketSummary:
    """Up one level: to the department's `escalates_to` department when configured (priority one step up),
    else to the department's supervisors; both with an alert."""
    now = ctx.clock()
    async with ctx.uow() as uow:
        staff, ticket = await staff_ticket(uow, actor, ticket_id, lock=True)
        if not await can_view(uow, staff, ticket):
            raise PermissionDenied("cannot escalate this ticket")
        _not_final(ticket)
        if ticket.status == "resolved":
            raise InvalidRequest("ticket resolved")
        depts = await departments(ctx, uow)
        current = depts.by_id[ticket.department_id]
        target_code = ctx.config.department(current).escalates_to
        previous_department = ticket.department_id
        ticket.priority = raise_priority(ticket.priority, 1)
        ticket.updated_at = now
        if target_code:
            route = await least_loaded(ctx, uow, depts, target_code)
            ticket.department_id = depts.id(target_code)
            ticket.assignee_id = route.assignee_id
            if ticket.assignee_id is None and ticket.status == "in_progress":
                ticket.status = "new"
        uow.tickets.add_event(ticket.id, "escalated", "staff", author_staff_id=staff.id, at=now, payload={
            "from_department_id": previous_department, "to_department_id": ticket.department_id,
            "priority": ticket.priority})
        await _alert_new_owner(ctx, uow, depts, ticket, event="escalated", by=staff, supervisors_too=True)
        summary = await _finish(ctx, uow, ticket)
    await ctx.wake_dispatcher()
    return summary


@database_errors_as_unavailable
async def add_internal_note(ctx: AppContext, actor: Actor, ticket_id: int, text: str) -> TicketSummary:
    """A note for colleagues only: never shown to the client."""
    text = (text or "").strip()
    if not text:
        raise InvalidRequest("empty note")
    async with ctx.uow() as uow:
        staff, ticket = await staff_ticket(uow, actor, ticket_id)
        if not await can_view(uow, staff, ticket):
            raise PermissionDenied("cannot see this ticket")
        uow.tickets.add_event(ticket.id, "note", "staff", author_staff_id=staff.id, at=ctx.clock(),
                              payload={"text": text[:TICKET_TEXT_LIMIT]})
        return await _finish(ctx, uow, ticket)


async def _alert_new_owner(ctx: AppContext, uow: UnitOfWork, depts: Departments, ticket: Ticket, *, event: str,
                           by: Staff, supervisors_too: bool = False) -> None:
    extra = {"by": by.name}
    if ticket.assignee_id is not None and ticket.assignee_id != by.id:
        await alert_staff(uow, ticket, ticket.assignee_id, event=event, extra=extra)
        if supervisors_too:
            await alert_department(ctx, uow, depts, ticket, event=event, extra=extra, supervisors_too=True)
    elif ticket.assignee_id is None:
        await alert_department(ctx, uow, depts, ticket, event=event, extra=extra, supervisors_too=supervisors_too)
    elif supervisors_too:
        await alert_department(ctx, uow, depts, ticket, event=event, extra=extra, supervisors_too=True)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"

