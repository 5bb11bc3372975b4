"""Opening tickets: numbering, routing, priority, SLA deadlines, the opening event and the staff alert, in
one transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from handlers.context import AppContext
from handlers.dto import Attachment, ClientProfile, InvalidRequest, TicketSummary
from handlers.phones import normalize_phone
from handlers.tickets.common import (
    INTERACTION_TEXT_LIMIT,
    TICKET_TEXT_LIMIT,
    Departments,
    database_errors_as_unavailable,
    departments,
    make_subject,
    summarize,
    ticket_priority,
)
from handlers.tickets.notify import alert_department, alert_staff, department_staff_fallback
from handlers.tickets.routing import Route, route_ticket
from handlers.tickets.sla import sla_deadlines
from storage.models import Interaction, Ticket
from storage.repositories.tickets import insert_opened_postgres
from storage.uow import UnitOfWork


@dataclass(frozen=True)
class NewTicket:
    channel: str
    text: str
    language: str
    client: ClientProfile | None
    topic: str
    subject: str | None = None
    message_key: str | None = None
    priority: str | None = None
    urgent: bool = False
    confidence: float | None = None
    attachments: Sequence[Attachment] = ()
    contact_phone: str | None = None
    prefer_manager: bool = False
    sender: str | None = None


async def create_ticket(ctx: AppContext, uow: UnitOfWork, request: NewTicket, now: datetime,
                        interaction: Interaction | None = None) -> tuple[Ticket, str | None, Departments]:
    """Stage a new ticket, its events, attachments and alert in `uow` (the caller commits).

    Statements are ordered so the per-year counter row — the one point every opening shares — is locked
    as late as possible: reads first, then the number, the inserts and the commit.
    """
    config = ctx.config
    if request.topic not in config.topics:
        raise InvalidRequest(f"unknown topic {request.topic!r}")
    depts = await departments(ctx, uow)
    client = request.client
    route = await route_ticket(ctx, uow, depts, request.topic, client, prefer_manager=request.prefer_manager)
    priority = ticket_priority(config, request.topic, client, urgent=request.urgent, explicit=request.priority)
    first_due, resolution_due = sla_deadlines(config, request.topic, priority, route.department_code, now)
    language = request.language if request.language in ("ru", "en") else (
        client.language if client is not None else config.default_language)
    text = (request.text or "")[:TICKET_TEXT_LIMIT]
    title = config.topics[request.topic].title.get(language)
    contact = normalize_phone(request.contact_phone) if request.contact_phone else None
    year = now.astimezone(config.calendar_of(route.department_code).zone).year
    subject = (request.subject or make_subject(text, title))[:300]
    opened_payload = {
        "channel": request.channel, "topic": request.topic, "priority": priority, "route": route.reason,
        "assignee_id": route.assignee_id, "confidence": request.confidence, "urgent": request.urgent,
    }
    group_chat = config.department(route.department_code).telegram_chat_id
    if uow.tickets.dialect == "postgresql" and not request.attachments:
        if route.assignee_id is not None:
            recipients: list[tuple[str, int | None, int | None]] = [("staff", route.assignee_id, None)]
        elif group_chat:
            recipients = [("group", None, group_chat)]
        else:
            recipients = [("staff", staff_id, None) for staff_id in
                          await department_staff_fallback(uow, depts.id(route.department_code))]
        ticket = await _insert_postgres(uow, request, route, depts, now, year, priority, language, subject, text,
                                        contact, first_due, resolution_due, opened_payload, recipients, interaction)
        return ticket, route.assignee_name, depts
    number = await uow.tickets.next_number(year)
    ticket = Ticket(
        number=f"{year}-{number:06d}", customer_id=client.customer_id if client else None,
        channel=request.channel, source_key=request.message_key, topic=request.topic,
        department_id=depts.id(route.department_code), assignee_id=route.assignee_id, priority=priority,
        status="new", language=language, subject=subject, text=text,
        confidence=request.confidence, contact_phone=contact, created_at=now, updated_at=now,
        first_response_due=first_due, resolution_due=resolution_due,
        last_client_message_at=now,
    )
    uow.tickets.add(ticket)
    await uow.session.flush()
    uow.tickets.add_event(ticket.id, "opened", "client" if client else "system", at=now, payload=opened_payload)
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


async def _insert_postgres(uow: UnitOfWork, request: NewTicket, route: Route, depts: Departments, now: datetime,
                           year: int, priority: str, language: str, subject: str, text: str, contact: str | None,
                           first_due: datetime, resolution_due: datetime, opened_payload: dict[str, object],
                           recipients: list[tuple[str, int | None, int | None]],
                           interaction: Interaction | None) -> Ticket:
    """The same rows as the portable path, written by one statement (see `insert_opened_postgres`)."""
    client = request.client
    department_id = depts.id(route.department_code)
    alert = {"render": "ticket_alert", "event": "opened"}
    params = {
        "year": year, "customer_id": client.customer_id if client else None, "channel": request.channel,
        "source_key": request.message_key, "topic": request.topic, "department_id": department_id,
        "assignee_id": route.assignee_id, "priority": priority, "language": language, "subject": subject,
        "text": text, "confidence": request.confidence, "contact_phone": contact, "now": now,
        "first_due": first_due, "resolution_due": resolution_due,
        "opened_author": "client" if client else "system", "opened_payload": json.dumps(opened_payload),
        "assigned_payload": json.dumps({"assignee_id": route.assignee_id, "reason": route.reason})
        if route.assignee_id is not None else None,
        "alert_kinds": [r[0] for r in recipients], "alert_staff_ids": [r[1] for r in recipients],
        "alert_chat_ids": [r[2] for r in recipients],
        "alert_payload": json.dumps(alert), "with_interaction": interaction is not None,
        "sender": interaction.sender if interaction is not None else None,
        "external_id": interaction.external_id if interaction is not None else None,
        "interaction_text": interaction.text if interaction is not None else "",
        "outcome": interaction.outcome if interaction is not None else None,
    }
    ticket_id, number, interaction_id = await insert_opened_postgres(uow.session, params)
    if interaction is not None:
        interaction.id, interaction.ticket_id = interaction_id, ticket_id
    # A detached copy of what was written, for the summary the caller returns.
    return Ticket(id=ticket_id, number=number, customer_id=params["customer_id"], channel=request.channel,
                  source_key=request.message_key, topic=request.topic, department_id=department_id,
                  assignee_id=route.assignee_id, priority=priority, status="new", language=language,
                  subject=subject, text=text, confidence=request.confidence, contact_phone=contact, created_at=now,
                  updated_at=now, first_response_due=first_due, resolution_due=resolution_due,
                  last_client_message_at=now)


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
    if message_key:
        existing = await _by_source_key(ctx, message_key)
        if existing is not None:
            return existing
    now = ctx.clock()
    try:
        async with ctx.uow() as uow:
            interaction = new_interaction(request, now, "ticket_opened") if record_interaction else None
            if interaction is not None and message_key:
                # The interaction's key is the inbound message's; the ticket has its own unique source_key.
                interaction.external_id = f"ticket:{message_key}"[:200]
            ticket, assignee_name, depts = await create_ticket(ctx, uow, request, now, interaction)
            await uow.commit()
    except IntegrityError:
        # The same message opened a ticket concurrently: answer with that one.
        if message_key and (existing := await _by_source_key(ctx, message_key)) is not None:
            return existing
        raise
    await ctx.wake_dispatcher()
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
