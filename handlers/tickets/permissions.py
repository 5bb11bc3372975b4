"""Who may see and change a ticket: decided on the server from the database, never from callback data.

agent      — tickets of their own department, and tickets assigned to them;
manager    — the same, plus the tickets of their own clients;
supervisor — their department's tickets, plus tickets escalated into or out of it;
admin      — every ticket.
Changing a ticket that a colleague is working on needs a take-over first (see `may_take_over`).
"""

from __future__ import annotations

from sqlalchemy import select

from handlers.dto import Actor, NotFound, PermissionDenied
from storage.models import Customer, Staff, Ticket
from storage.uow import UnitOfWork


async def acting_staff(uow: UnitOfWork, actor: Actor) -> Staff:
    """The actor's current staff record (roles and departments change; the Actor may be stale)."""
    if actor.kind != "staff" or actor.staff_id is None:
        raise PermissionDenied("staff only")
    staff = await uow.staff.get(actor.staff_id)
    if staff is None or not staff.is_active:
        raise PermissionDenied("not an active staff member")
    return staff


async def is_clients_manager(uow: UnitOfWork, staff: Staff, ticket: Ticket) -> bool:
    if ticket.customer_id is None:
        return False
    manager_id = await uow.session.scalar(select(Customer.manager_id).where(Customer.id == ticket.customer_id))
    return manager_id == staff.id


async def can_view(uow: UnitOfWork, staff: Staff, ticket: Ticket) -> bool:
    if staff.role == "admin":
        return True
    if ticket.department_id == staff.department_id or ticket.assignee_id == staff.id:
        return True
    if staff.role == "manager" and await is_clients_manager(uow, staff, ticket):
        return True
    if staff.role == "supervisor" and await uow.tickets.was_escalated_via(ticket.id, staff.department_id):
        return True
    return False


async def can_work_on(uow: UnitOfWork, staff: Staff, ticket: Ticket) -> bool:
    """Reply, resolve, wait for the client: the assignee, anyone permitted when unassigned, leads always."""
    if not await can_view(uow, staff, ticket):
        return False
    if staff.role in ("admin", "supervisor") or ticket.assignee_id in (None, staff.id):
        return True
    return staff.role == "manager" and await is_clients_manager(uow, staff, ticket)


async def may_take_over(uow: UnitOfWork, staff: Staff, ticket: Ticket) -> bool:
    if not await can_view(uow, staff, ticket):
        return False
    if ticket.assignee_id in (None, staff.id) or staff.role in ("admin", "supervisor"):
        return True
    if staff.role == "manager" and await is_clients_manager(uow, staff, ticket):
        return True
    # A colleague who went off duty (or left) no longer blocks their tickets.
    current = await uow.staff.get(ticket.assignee_id) if ticket.assignee_id else None
    return current is None or not current.is_active or not current.on_duty


async def require(allowed: bool, what: str) -> None:
    if not allowed:
        raise PermissionDenied(what)


async def staff_ticket(uow: UnitOfWork, actor: Actor, ticket_id: int, *, lock: bool = False) -> tuple[Staff, Ticket]:
    staff = await acting_staff(uow, actor)
    ticket = await uow.tickets.get(ticket_id, for_update=lock)
    if ticket is None:
        raise NotFound("ticket")
    return staff, ticket
