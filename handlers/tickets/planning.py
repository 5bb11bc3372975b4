"""What a new ticket will be once it is routed: priority, SLA deadlines, language, subject, number year.

Pure (no database), shared by the portable opening (handlers.tickets.open) and the grouped one on
PostgreSQL (handlers.tickets.group_open), so both write the same ticket for the same request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from config.business import BusinessConfig
from handlers.dto import Attachment, ClientProfile, InvalidRequest
from handlers.phones import normalize_phone
from handlers.tickets.common import TICKET_TEXT_LIMIT, make_subject, ticket_priority
from handlers.tickets.routing import Route
from handlers.tickets.sla import sla_deadlines


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


@dataclass(frozen=True)
class TicketPlan:
    route: Route
    priority: str
    first_response_due: datetime
    resolution_due: datetime
    language: str
    text: str
    subject: str
    contact_phone: str | None
    year: int  # of the number, in the department's time zone
    opened_payload: dict[str, Any]


def check_topic(config: BusinessConfig, request: NewTicket) -> None:
    if request.topic not in config.topics:
        raise InvalidRequest(f"unknown topic {request.topic!r}")


def plan_ticket(config: BusinessConfig, request: NewTicket, route: Route, now: datetime) -> TicketPlan:
    client = request.client
    priority = ticket_priority(config, request.topic, client, urgent=request.urgent, explicit=request.priority)
    first_due, resolution_due = sla_deadlines(config, request.topic, priority, route.department_code, now)
    language = request.language if request.language in ("ru", "en") else (
        client.language if client is not None else config.default_language)
    text = (request.text or "")[:TICKET_TEXT_LIMIT]
    title = config.topics[request.topic].title.get(language)
    return TicketPlan(
        route=route, priority=priority, first_response_due=first_due, resolution_due=resolution_due,
        language=language, text=text, subject=(request.subject or make_subject(text, title))[:300],
        contact_phone=normalize_phone(request.contact_phone) if request.contact_phone else None,
        year=now.astimezone(config.calendar_of(route.department_code).zone).year,
        opened_payload={
            "channel": request.channel, "topic": request.topic, "priority": priority, "route": route.reason,
            "assignee_id": route.assignee_id, "confidence": request.confidence, "urgent": request.urgent,
        },
    )
