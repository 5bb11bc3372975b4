"""Tickets, their events and attachments, and the per-year number counter."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Select,
    and_,
    bindparam,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import joinedload

from storage.models import Staff, Ticket, TicketAttachment, TicketCounter, TicketEvent
from storage.repositories.base import Repository

OPEN_STATUSES = ("new", "in_progress", "waiting_client")
# A resolved ticket is still "the client's current conversation" until it closes: a message reopens it.
ACTIVE_STATUSES = (*OPEN_STATUSES, "resolved")
PRIORITY_RANK = {"urgent": 0, "high": 1, "normal": 2, "low": 3}


class TicketRepository(Repository):
    def _dialect(self) -> str:
        return self.session.bind.dialect.name  # type: ignore[union-attr]

    @property
    def dialect(self) -> str:
        return self._dialect()

    # ------------------------------------------------------------------ numbering

    async def next_number(self, year: int) -> int:
        """The next number of `year`, in one statement (upsert + RETURNING).

        The counter row stays locked until the transaction ends, so callers take the number as late as
        possible in their transaction: concurrent openings queue only for the last statements and the commit.
        """
        insert = postgresql.insert if self._dialect() == "postgresql" else sqlite.insert
        stmt = (
            insert(TicketCounter)
            .values(year=year, last=1)
            .on_conflict_do_update(index_elements=[TicketCounter.year], set_={"last": TicketCounter.last + 1})
            .returning(TicketCounter.last)
        )
        return int((await self.session.execute(stmt)).scalar_one())

    # ------------------------------------------------------------------ reading

    async def get(self, ticket_id: int, *, for_update: bool = False) -> Ticket | None:
        stmt = select(Ticket).where(Ticket.id == ticket_id)
        if for_update and self._dialect() == "postgresql":
            stmt = stmt.with_for_update()
        return await self.session.scalar(stmt)

    async def by_number(self, number: str) -> Ticket | None:
        return await self.session.scalar(select(Ticket).where(Ticket.number == number))

    async def by_source_key(self, key: str) -> Ticket | None:
        return await self.session.scalar(select(Ticket).where(Ticket.source_key == key))

    async def with_people(self, ticket_ids: Sequence[int]) -> list[Ticket]:
        """Tickets with customer and assignee loaded (for summaries and cards)."""
        if not ticket_ids:
            return []
        rows = await self.session.scalars(
            select(Ticket)
            .options(joinedload(Ticket.customer), joinedload(Ticket.assignee))
            .where(Ticket.id.in_(list(ticket_ids)))
        )
        return list(rows.unique())

    async def open_follow_up(self, customer_id: int, topic: str, since: datetime) -> Ticket | None:
        """The customer's open ticket on this topic with activity since `since` (a follow-up joins it)."""
        return await self.session.scalar(_OPEN_FOLLOW_UP, {"customer_id": customer_id, "topic": topic,
                                                           "since": since})

    async def latest_active(self, customer_id: int) -> Ticket | None:
        return await self.session.scalar(_LATEST_ACTIVE, {"customer_id": customer_id})

    async def for_customer(self, customer_id: int, limit: int = 10) -> list[Ticket]:
        """Open tickets first (newest first), then the most recent others."""
        open_first = func.coalesce(Ticket.status.in_(OPEN_STATUSES), False).desc()
        rows = await self.session.scalars(
            select(Ticket)
            .options(joinedload(Ticket.assignee))
            .where(Ticket.customer_id == customer_id)
            .order_by(open_first, Ticket.created_at.desc(), Ticket.id.desc())
            .limit(limit)
        )
        return list(rows.unique())

    async def queue(self, department_id: int, limit: int = 50) -> list[Ticket]:
        """A department's open tickets, most urgent and oldest first."""
        rank = _priority_rank_expr()
        rows = await self.session.scalars(
            select(Ticket)
            .options(joinedload(Ticket.assignee), joinedload(Ticket.customer))
            .where(Ticket.department_id == department_id, Ticket.status.in_(OPEN_STATUSES))
            .order_by(rank, Ticket.created_at, Ticket.id)
            .limit(limit)
        )
        return list(rows.unique())

    async def assigned_to(self, staff_id: int, limit: int = 50) -> list[Ticket]:
        rows = await self.session.scalars(
            select(Ticket)
            .options(joinedload(Ticket.assignee), joinedload(Ticket.customer))
            .where(Ticket.assignee_id == staff_id, Ticket.status.in_(OPEN_STATUSES))
            .order_by(_priority_rank_expr(), Ticket.created_at, Ticket.id)
            .limit(limit)
        )
        return list(rows.unique())

    async def open_for_customer(self, customer_id: int, limit: int = 10) -> list[Ticket]:
        rows = await self.session.scalars(
            select(Ticket)
            .where(Ticket.customer_id == customer_id, Ticket.status.in_(OPEN_STATUSES))
            .order_by(Ticket.created_at.desc())
            .limit(limit)
        )
        return list(rows)

    # ------------------------------------------------------------------ routing

    async def open_load(self, staff_ids: Sequence[int]) -> dict[int, int]:
        """Open tickets per staff member (zero for those without any)."""
        if not staff_ids:
            return {}
        rows = await self.session.execute(
            select(Ticket.assignee_id, func.count())
            .where(Ticket.assignee_id.in_(list(staff_ids)), Ticket.status.in_(OPEN_STATUSES))
            .group_by(Ticket.assignee_id)
        )
        load = {staff_id: 0 for staff_id in staff_ids}
        load.update({int(staff_id): int(count) for staff_id, count in rows})
        return load

    async def on_duty_candidates(self, department_id: int) -> list[tuple[int, str, int]]:
        """(id, name, open tickets) of the on-duty agents and managers of a department, in one query."""
        rows = await self.session.execute(_ON_DUTY_CANDIDATES, {"department_id": department_id})
        return [(int(i), str(n), int(c)) for i, n, c in rows]

    # ------------------------------------------------------------------ events and attachments

    def add_event(self, ticket_id: int, kind: str, author_kind: str, *, author_staff_id: int | None = None,
                  payload: dict[str, Any] | None = None, at: datetime | None = None) -> TicketEvent:
        event = TicketEvent(ticket_id=ticket_id, kind=kind, author_kind=author_kind,
                            author_staff_id=author_staff_id, payload=payload or {})
        if at is not None:
            event.created_at = at
        self.session.add(event)
        return event

    def add_attachments(self, ticket_id: int, attachments: Sequence[Any]) -> None:
        for item in attachments:
            self.session.add(TicketAttachment(ticket_id=ticket_id, kind=item.kind, ref=item.ref[:1000],
                                              content_type=item.content_type))

    async def events(self, ticket_id: int) -> list[tuple[TicketEvent, str | None]]:
        rows = await self.session.execute(
            select(TicketEvent, Staff.name)
            .outerjoin(Staff, Staff.id == TicketEvent.author_staff_id)
            .where(TicketEvent.ticket_id == ticket_id)
            .order_by(TicketEvent.created_at, TicketEvent.id)
        )
        return [(event, name) for event, name in rows]

    async def attachments(self, ticket_id: int) -> list[TicketAttachment]:
        rows = await self.session.scalars(
            select(TicketAttachment).where(TicketAttachment.ticket_id == ticket_id).order_by(TicketAttachment.id)
        )
        return list(rows)

    async def was_escalated_via(self, ticket_id: int, department_id: int) -> bool:
        """Whether the ticket passed through `department_id` by an escalation (its supervisor may follow it)."""
        rows = await self.session.scalars(
            select(TicketEvent.payload).where(TicketEvent.ticket_id == ticket_id, TicketEvent.kind == "escalated")
        )
        return any(department_id in (p.get("from_department_id"), p.get("to_department_id")) for p in rows)

    # ------------------------------------------------------------------ SLA watcher and auto-close

    async def sla_candidates(self, now: datetime, limit: int = 500) -> list[Ticket]:
        """Open, unpaused tickets with a deadline not yet breached or warned (warnings need business time)."""
        first = and_(Ticket.first_response_at.is_(None), Ticket.first_response_due.is_not(None),
                     or_(Ticket.first_response_warned_at.is_(None), Ticket.first_response_breached_at.is_(None)))
        resolution = and_(Ticket.resolution_due.is_not(None),
                          or_(Ticket.resolution_warned_at.is_(None), Ticket.resolution_breached_at.is_(None)))
        rows = await self.session.scalars(
            select(Ticket)
            .where(Ticket.status.in_(("new", "in_progress")), Ticket.sla_paused_at.is_(None), or_(first, resolution))
            .order_by(Ticket.resolution_due, Ticket.id)
            .limit(limit)
        )
        return list(rows)

    async def mark_once(self, ticket_id: int, column: str, at: datetime) -> bool:
        """Set a *_warned_at / *_breached_at column only if still empty: True for the one caller that did.

        A conditional UPDATE is atomic on both databases, so several watcher processes fire each event once.
        """
        col = getattr(Ticket, column)
        result = await self.session.execute(
            update(Ticket).where(Ticket.id == ticket_id, col.is_(None)).values({column: at})
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1  # type: ignore[attr-defined]

    async def due_for_auto_close(self, resolved_before: datetime, limit: int = 200) -> list[int]:
        rows = await self.session.scalars(
            select(Ticket.id)
            .where(Ticket.status == "resolved", Ticket.resolved_at <= resolved_before)
            .order_by(Ticket.resolved_at)
            .limit(limit)
        )
        return list(rows)

    async def close_if_resolved(self, ticket_id: int, resolved_before: datetime, at: datetime) -> bool:
        result = await self.session.execute(
            update(Ticket)
            .where(Ticket.id == ticket_id, Ticket.status == "resolved", Ticket.resolved_at <= resolved_before)
            .values(status="closed", closed_at=at, updated_at=at)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ statistics

    async def created_between(self, since: datetime, until: datetime) -> list[Ticket]:
        rows = await self.session.scalars(
            select(Ticket).where(Ticket.created_at >= since, Ticket.created_at < until)
        )
        return list(rows)

    async def resolved_between(self, since: datetime, until: datetime) -> list[Ticket]:
        rows = await self.session.scalars(
            select(Ticket).where(Ticket.resolved_at >= since, Ticket.resolved_at < until)
        )
        return list(rows)

    async def open_counts(self) -> list[tuple[int, int | None, int]]:
        """(department id, assignee id or None, open tickets)."""
        rows = await self.session.execute(
            select(Ticket.department_id, Ticket.assignee_id, func.count())
            .where(Ticket.status.in_(OPEN_STATUSES))
            .group_by(Ticket.department_id, Ticket.assignee_id)
        )
        return [(int(d), None if a is None else int(a), int(c)) for d, a, c in rows]


# Statements that run on every inbound message are built once: composing a select costs more Python than
# executing its cached compiled form.
_OPEN_FOLLOW_UP = (
    select(Ticket)
    .where(Ticket.customer_id == bindparam("customer_id"), Ticket.topic == bindparam("topic"),
           Ticket.status.in_(OPEN_STATUSES), Ticket.updated_at >= bindparam("since"))
    .order_by(Ticket.updated_at.desc(), Ticket.id.desc())
    .limit(1)
)


def latest_active_of(customer_id: Any, *columns: Any) -> Select[Any]:
    """The customer's current ticket (`columns` of it, the entity by default); `customer_id` may be a bound
    parameter or a column of an enclosing query (handlers.identification asks for its status that way)."""
    return (
        select(*(columns or (Ticket,)))
        .where(Ticket.customer_id == customer_id, Ticket.status.in_(ACTIVE_STATUSES))
        # An open ticket wins over a just-resolved one; among equals, the most recently active.
        .order_by(func.coalesce(Ticket.status.in_(OPEN_STATUSES), False).desc(), Ticket.updated_at.desc(),
                  Ticket.id.desc())
        .limit(1)
    )


_LATEST_ACTIVE = latest_active_of(bindparam("customer_id"))
_ON_DUTY_CANDIDATES = (
    select(Staff.id, Staff.name,
           select(func.count())
           .where(Ticket.assignee_id == Staff.id, Ticket.status.in_(OPEN_STATUSES))
           .correlate(Staff)
           .scalar_subquery())
    .where(Staff.department_id == bindparam("department_id"), Staff.is_active.is_(True),
           Staff.on_duty.is_(True), Staff.role.in_(("agent", "manager")))
    .order_by(Staff.id)
)


def _priority_rank_expr() -> Any:
    from sqlalchemy import case

    return case(PRIORITY_RANK, value=Ticket.priority, else_=9)
