"""Opening tickets: numbering, routing, priority, SLA deadlines, the opening event and the staff alert, in
one transaction.

On PostgreSQL, openings go through handlers.tickets.group_open (concurrent openings share a read, a write
statement and a commit); on SQLite, whose single writer gains nothing from that, `create_ticket` stages the
rows through the ORM (the portable path).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from handlers.context import AppContext
from handlers.dto import Attachment, ClientProfile, TicketSummary
from handlers.phones import normalize_phone
from handlers.tickets.common import (
    INTERACTION_TEXT_LIMIT,
    Departments,
    database_errors_as_unavailable,
    departments,
    summarize,
)
from handlers.tickets.group_open import Opened, Opening, grouped_opener
from handlers.tickets.notify import alert_department, alert_staff
from handlers.tickets.planning import NewTicket, check_topic, plan_ticket
from handlers.tickets.routing import route_ticket
from storage.models import Interaction, Ticket
from storage.uow import UnitOfWork

__all__ = ["NewTicket", "create_ticket", "new_interaction", "open_callback_request", "open_ticket"]


async def create_ticket(ctx: AppContext, uow: UnitOfWork, request: NewTicket, now: datetime,
                        interaction: Interaction | None = None) -> tuple[Ticket, str | None, Departments]:
    """Stage a new ticket, its events, attachments and alert in `uow` (the caller commits): the portable path.

    Statements are ordered so the per-year counter row — the one point every opening shares — is locked
    as late as possible: reads first, then the number, the inserts and the commit.
    """
    config = ctx.config
    check_topic(config, request)
    depts = await departments(ctx, uow)
    client = request.client
    route = await route_ticket(ctx, uow, depts, request.topic, client, prefer_manager=request.prefer_manager)
    plan = plan_ticket(config, request, route, now)
    number = await uow.tickets.next_number(plan.year)
    ticket = Ticket(
        number=f"{plan.year}-{number:06d}", customer_id=client.customer_id if client else None,
        channel=request.channel, source_key=request.message_key, topic=request.topic,
        department_id=depts.id(route.department_code), assignee_id=route.assignee_id, priority=plan.priority,
        status="new", language=plan.language, subject=plan.subject, text=plan.text,
        confidence=request.confidence, contact_phone=plan.contact_phone, created_at=now, updated_at=now,
        first_response_due=plan.first_response_due, resolution_due=plan.resolution_due,
        last_client_message_at=now,
    )
    uow.tickets.add(ticket)
    await uow.session.flush()
    uow.tickets.add_event(ticket.id, "opened", "client" if client else "system", at=now,
                          payload=plan.opened_payload)
    if route.assignee_id is not None:
        uow.tickets.add_event(ticket.id, "assigned", "system", at=now,
                              payload={"assignee_id": route.assignee_id, "reason": route.reason})
    uow.tickets.add_attachments(ticket.id, request.attachments)
    if route.assignee_id is not None:
        await alert_staff(uow, ticket, route.assignee_id, event="opened")
    else:
        await alert_department(ctx, uow, depts, ticket, event="opened")
    if interaction is not None:
        interaction.ticket_id = ticket.id
        uow.interactions.add(interaction)
    return ticket, route.assignee_name, depts


def new_interaction(request: NewTicket, now: datetime, outcome: str, *, topic: str | None = None) -> Interaction:
    client = request.client
    return Interaction(
        channel=request.channel, customer_id=client.customer_id if client else None,
        sender=(request.sender or None) and request.sender[:100], external_id=request.message_key,
        text=(request.text or "")[:INTERACTION_TEXT_LIMIT], topic=topic or request.topic,
        confidence=request.confidence, outcome=outcome, created_at=now,
    )


@database_errors_as_unavailable
async def open_ticket(
    ctx: AppContext,
    *,
    channel: str,
    text: str,
    language: str,
    client: ClientProfile | None,
    topic: str,
    subject: str | None = None,
    message_key: str | None = None,
    priority: str | None = None,
    urgent: bool = False,
    confidence: float | None = None,
    attachments: Sequence[Attachment] = (),
    contact_phone: str | None = None,
    prefer_manager: bool = False,
    sender: str | None = None,
    record_interaction: bool = True,
) -> TicketSummary:
    """Open (or, for a repeated `message_key`, return the already opened) ticket.

    The inbound contact is recorded as an interaction too unless `record_interaction=False` (the IVR
    keeps its own call record).
    """
    request = NewTicket(channel=channel, text=text, language=language, client=client, topic=topic,
                        subject=subject, message_key=message_key, priority=priority, urgent=urgent,
                        confidence=confidence, attachments=attachments, contact_phone=contact_phone,
                        prefer_manager=prefer_manager, sender=sender)
    check_topic(ctx.config, request)
    # The interaction's key is the inbound message's; the ticket has its own unique source_key.
    interaction_key = f"ticket:{message_key}"[:200] if message_key and record_interaction else None
    try:
        opener = await grouped_opener(ctx)
        if opener is not None:
            # A used message key is found by the grouped opening's own read (no look-up first).
            opened = await opener.open(Opening(request, ctx.clock(), check_follow_up=False,
                                               record_interaction=record_interaction,
                                               interaction_key=interaction_key))
            assert isinstance(opened, Opened)  # no follow-up check was asked for
            return opened.summary
        return await _open_portable(ctx, request, record_interaction, interaction_key)
    except IntegrityError:
        # The same message opened a ticket before or concurrently: answer with that one.
        if message_key and (existing := await _by_source_key(ctx, message_key)) is not None:
            return existing
        raise


async def _open_portable(ctx: AppContext, request: NewTicket, record_interaction: bool,
                         interaction_key: str | None) -> TicketSummary:
    if request.message_key and (existing := await _by_source_key(ctx, request.message_key)) is not None:
        return existing
    now = ctx.clock()
    async with ctx.uow() as uow:
        interaction = None
        if record_interaction:
            interaction = new_interaction(request, now, "ticket_opened")
            interaction.external_id = interaction_key
        ticket, assignee_name, depts = await create_ticket(ctx, uow, request, now, interaction)
        await uow.commit()
    await ctx.wake_dispatcher()
    client = request.client
    return summarize(ctx, depts, ticket, assignee_name=assignee_name,
                     customer_name=client.name if client else None)


async def _by_source_key(ctx: AppContext, message_key: str) -> TicketSummary | None:
    from handlers.tickets.queries import summaries

    async with ctx.uow() as uow:
        ticket = await uow.tickets.by_source_key(message_key)
        if ticket is None:
            return None
        return (await summaries(ctx, uow, [ticket.id]))[0]


@database_errors_as_unavailable
async def open_callback_request(ctx: AppContext, client: ClientProfile | None, phone: str | None, language: str,
                                channel: str = "ivr", message_key: str | None = None) -> TicketSummary:
    """"Call me back": a `human` ticket for the personal manager when there is one, else the department."""
    contact = normalize_phone(phone) if phone else None
    if contact is None and client is not None and client.phones:
        contact = client.phones[0]
    text = ctx.t("ticket_callback_text", language, phone=contact or "—")
    topic = "human" if "human" in ctx.config.topics else ctx.config.out_of_scope_topic
    return await open_ticket(
        ctx, channel=channel, text=text, language=language, client=client, topic=topic,
        subject=ctx.t("ticket_callback_subject", language, phone=contact or "—"), message_key=message_key,
        contact_phone=contact, prefer_manager=True, sender=phone,
    )
