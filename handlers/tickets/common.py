"""Pieces every ticket use case shares: department ids, priorities, summaries, text limits."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime

from config.business import PRIORITIES, BusinessConfig
from handlers.context import AppContext
from handlers.dto import ClientProfile, InvalidRequest, TicketSummary
from storage.models import Ticket
from storage.uow import UnitOfWork

OPEN_STATUSES = ("new", "in_progress", "waiting_client")
ACTIVE_STATUSES = (*OPEN_STATUSES, "resolved")
# The ticket keeps the client's whole message; beyond this it is abuse, not a request.
TICKET_TEXT_LIMIT = 100_000
INTERACTION_TEXT_LIMIT = 4000
SUBJECT_LIMIT = 120
_DEPARTMENTS_KEY = "tickets.departments"


@dataclass(frozen=True)
class Departments:
    """Configured department codes <-> database ids (synced at start, so cached for the process)."""

    by_code: dict[str, int]
    by_id: dict[int, str]

    def id(self, code: str) -> int:
        try:
            return self.by_code[code]
        except KeyError:
            raise InvalidRequest(f"unknown department {code!r}") from None


async def departments(ctx: AppContext, uow: UnitOfWork) -> Departments:
    cached = ctx.extras.get(_DEPARTMENTS_KEY)
    if cached is None or any(d.code not in cached.by_code for d in ctx.config.departments):
        rows = await uow.departments.all()
        cached = Departments({d.code: d.id for d in rows}, {d.id: d.code for d in rows})
        ctx.extras[_DEPARTMENTS_KEY] = cached
    return cached


def raise_priority(base: str, steps: int) -> str:
    index = PRIORITIES.index(base) if base in PRIORITIES else PRIORITIES.index("normal")
    return PRIORITIES[max(0, min(len(PRIORITIES) - 1, index + steps))]


def ticket_priority(config: BusinessConfig, topic: str, client: ClientProfile | None, *, urgent: bool,
                    explicit: str | None) -> str:
    """The topic's default (or an explicit one), one step up when urgent, plus the segment's boost."""
    base = explicit if explicit in PRIORITIES else config.topics[topic].priority
    steps = 1 if urgent else 0
    if client is not None and client.segment in config.segments:
        steps += config.segments[client.segment].priority_boost
    return raise_priority(base, steps)


def is_account_management(config: BusinessConfig, topic: str, client: ClientProfile | None) -> bool:
    if config.topics[topic].account_management:
        return True
    segment = config.segments.get(client.segment) if client is not None else None
    return segment is not None and topic in segment.account_management_topics


def make_subject(text: str, fallback: str) -> str:
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not first_line:
        return fallback[:SUBJECT_LIMIT]
    return first_line if len(first_line) <= SUBJECT_LIMIT else first_line[: SUBJECT_LIMIT - 1] + "…"


def topic_title(config: BusinessConfig, topic: str, lang: str) -> str:
    item = config.topics.get(topic)
    return item.title.get(lang) if item is not None else topic


def department_name(config: BusinessConfig, code: str, lang: str) -> str:
    try:
        return config.department(code).name.get(lang)
    except KeyError:
        return code


def summarize(ctx: AppContext, depts: Departments, ticket: Ticket, *, assignee_name: str | None = None,
              customer_name: str | None = None) -> TicketSummary:
    lang = ticket.language or ctx.config.default_language
    code = depts.by_id.get(ticket.department_id, "")
    return TicketSummary(
        id=ticket.id, number=ticket.number, status=ticket.status, topic=ticket.topic,
        topic_title=topic_title(ctx.config, ticket.topic, lang), department_code=code,
        department_name=department_name(ctx.config, code, lang), priority=ticket.priority,
        subject=ticket.subject, created_at=ticket.created_at, first_response_due=ticket.first_response_due,
        resolution_due=ticket.resolution_due, assignee_id=ticket.assignee_id, assignee_name=assignee_name,
        customer_id=ticket.customer_id, channel=ticket.channel, language=lang, text=ticket.text,
        customer_name=customer_name, updated_at=ticket.updated_at, resolved_at=ticket.resolved_at,
        csat_score=ticket.csat_score, waiting_client=ticket.status == "waiting_client",
    )


def loaded_names(ticket: Ticket) -> tuple[str | None, str | None]:
    """(assignee name, customer name) when those relationships were loaded with the ticket."""
    state = ticket.__dict__
    assignee = state.get("assignee")
    customer = state.get("customer")
    return (assignee.name if assignee is not None else None, customer.name if customer is not None else None)


def summarize_loaded(ctx: AppContext, depts: Departments, ticket: Ticket) -> TicketSummary:
    assignee_name, customer_name = loaded_names(ticket)
    return summarize(ctx, depts, ticket, assignee_name=assignee_name, customer_name=customer_name)


def escape(text: str | None) -> str:
    return html.escape(text or "", quote=False)


def local_time(ctx: AppContext, at: datetime | None, department_code: str | None = None) -> str:
    """A deadline as staff and clients read it: local to the department's calendar, 'dd.mm HH:MM'."""
    if at is None:
        return "—"
    try:
        zone = ctx.config.calendar_of(department_code).zone if department_code else None
    except KeyError:
        zone = None
    if zone is None:
        zone = next(iter(ctx.config.calendars.values())).zone
    return at.astimezone(zone).strftime("%d.%m %H:%M")


def database_errors_as_unavailable(func):  # type: ignore[no-untyped-def]
    """A use case whose database is down raises ServiceUnavailable (adapters offer the operator), never a
    driver error; integrity errors are left to the use case (they mean "someone else did it first")."""
    import functools

    from sqlalchemy.exc import IntegrityError, SQLAlchemyError

    from handlers.dto import ServiceUnavailable

    @functools.wraps(func)
    async def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return await func(*args, **kwargs)
        except IntegrityError:
            raise
        except (SQLAlchemyError, OSError, ConnectionError, TimeoutError) as exc:
            raise ServiceUnavailable(f"database: {type(exc).__name__}") from exc

    return wrapper
