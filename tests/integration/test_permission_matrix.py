"""Every staff action and client request against every role (issue 9): only what the policy allows happens.

Policy (handlers/tickets/permissions.py): an agent works on their department's tickets and those assigned to
them; a manager also on their own clients' tickets; a supervisor on their department's; an admin on all.
Changing a ticket a colleague on duty is working on needs a lead or the client's manager. A client sees
only their own tickets. A refused action raises NotFound or PermissionDenied and changes nothing.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from handlers.dto import Actor, NotFound, PermissionDenied
from handlers.identification import client_profile
from handlers.tickets import (
    escalate_ticket,
    get_client_ticket,
    get_staff_ticket,
    open_ticket,
    reassign_ticket,
    reply_to_ticket,
    resolve_ticket,
    take_ticket,
    ticket_history,
)
from storage.models import Customer, CustomerPhone, Staff, Ticket, TicketEvent

ROLES = ("assignee", "colleague", "outsider", "clients_manager", "other_manager", "lead", "other_lead", "admin",
         "owner", "stranger")
_VIEWERS = {"assignee", "colleague", "clients_manager", "lead", "admin"}
_WORKERS = {"assignee", "clients_manager", "lead", "admin"}
EXPECTED = {
    "view": _VIEWERS | {"owner"},
    "history": _VIEWERS | {"owner"},
    "take": _WORKERS,
    "reply": _WORKERS,
    "resolve": _WORKERS,
    "reassign": _WORKERS,
    "escalate": _VIEWERS,
}


async def _staff(uow, email: str, role: str, department: str) -> Staff:
    dept = await uow.departments.by_code(department)
    person = Staff(email=email, name=email.split("@")[0], role=role, department_id=dept.id, on_duty=True)
    uow.session.add(person)
    await uow.session.flush()
    return person


@pytest.fixture
async def world(services):
    """A tech-support ticket of `owner`, assigned to `assignee`; everyone else around it."""
    ctx = services.ctx
    async with ctx.uow() as uow:
        people = {
            "assignee": await _staff(uow, "assignee@x.example", "agent", "tech_support"),
            "colleague": await _staff(uow, "colleague@x.example", "agent", "tech_support"),
            "outsider": await _staff(uow, "outsider@x.example", "agent", "sales"),
            "clients_manager": await _staff(uow, "cm@x.example", "manager", "subscriber_service"),
            "other_manager": await _staff(uow, "om@x.example", "manager", "subscriber_service"),
            "lead": await _staff(uow, "lead@x.example", "supervisor", "tech_support"),
            "other_lead": await _staff(uow, "olead@x.example", "supervisor", "sales"),
            "admin": await _staff(uow, "admin@x.example", "admin", "call_center"),
        }
        owner = Customer(name="Владелец", manager_id=people["clients_manager"].id, consent_at=ctx.clock(),
                         phones=[CustomerPhone(phone="+79990000001")])
        stranger = Customer(name="Посторонний", consent_at=ctx.clock(), phones=[CustomerPhone(phone="+79990000002")])
        uow.session.add_all([owner, stranger])
        await uow.commit()
    actors = {name: Actor(kind="staff", staff_id=s.id, role=s.role, department_id=s.department_id)
              for name, s in people.items()}
    clients = {"owner": await client_profile(ctx, owner.id), "stranger": await client_profile(ctx, stranger.id)}
    actors.update({name: profile.actor for name, profile in clients.items()})
    return {"actors": actors, "clients": clients, "assignee_id": people["assignee"].id}


async def _new_ticket(services, world) -> int:
    ctx = services.ctx
    ticket = await open_ticket(ctx, channel="telegram", text="нет интернета", language="ru",
                               client=world["clients"]["owner"], topic="no_connection")
    async with ctx.uow() as uow:
        row = await uow.session.get(Ticket, ticket.id)
        row.assignee_id, row.status = world["assignee_id"], "in_progress"
        await uow.commit()
    return ticket.id


async def _state(services, ticket_id: int) -> tuple:
    async with services.uow() as uow:
        row = await uow.session.get(Ticket, ticket_id)
        events = await uow.session.scalar(select(func.count()).select_from(TicketEvent)
                                          .where(TicketEvent.ticket_id == ticket_id))
        return row.status, row.assignee_id, row.department_id, row.priority, events


async def _attempt(services, world, role: str, action: str, ticket_id: int):
    ctx, actor = services.ctx, world["actors"][role]
    client = world["clients"].get(role)
    if action == "view":
        if client is not None:
            return await get_client_ticket(ctx, client, ticket_id)
        return await get_staff_ticket(ctx, actor, ticket_id)
    if action == "history":
        return await ticket_history(ctx, actor, ticket_id)
    if action == "take":
        return await take_ticket(ctx, actor, ticket_id)
    if action == "reply":
        return await reply_to_ticket(ctx, actor, ticket_id, "Проверили линию, всё в порядке.")
    if action == "resolve":
        return await resolve_ticket(ctx, actor, ticket_id, "Решено")
    if action == "reassign":
        return await reassign_ticket(ctx, actor, ticket_id, department_code="field_service")
    if action == "escalate":
        return await escalate_ticket(ctx, actor, ticket_id)
    raise AssertionError(action)


@pytest.mark.parametrize("action", list(EXPECTED))
async def test_permission_matrix(services, world, action):
    outcomes = {}
    for role in ROLES:
        ticket_id = await _new_ticket(services, world)
        before = await _state(services, ticket_id)
        try:
            await _attempt(services, world, role, action, ticket_id)
            outcomes[role] = True
        except (PermissionDenied, NotFound):
            outcomes[role] = False
            assert await _state(services, ticket_id) == before, f"{role} was refused {action} but changed the ticket"
    allowed = {role for role, ok in outcomes.items() if ok}
    assert allowed == EXPECTED[action], f"{action}: allowed {sorted(allowed)}, expected {sorted(EXPECTED[action])}"


async def test_client_history_hides_internal_notes_and_other_clients(services, world):
    from handlers.tickets import add_internal_note

    ticket_id = await _new_ticket(services, world)
    await add_internal_note(services.ctx, world["actors"]["lead"], ticket_id, "клиент грубит, внутренняя заметка")
    owner_view = await ticket_history(services.ctx, world["actors"]["owner"], ticket_id)
    assert all("внутренняя" not in (event.text or "") for event in owner_view)
    staff_view = await ticket_history(services.ctx, world["actors"]["lead"], ticket_id)
    assert any("внутренняя" in (event.text or "") for event in staff_view)
    with pytest.raises((NotFound, PermissionDenied)):
        await ticket_history(services.ctx, world["actors"]["stranger"], ticket_id)
