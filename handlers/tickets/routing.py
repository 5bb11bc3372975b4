"""Who gets a new ticket: the personal manager, the least-loaded agent on duty, or the department queue."""

from __future__ import annotations

from dataclasses import dataclass

from handlers.context import AppContext
from handlers.dto import ClientProfile
from handlers.tickets.common import Departments, is_account_management
from storage.uow import UnitOfWork


@dataclass(frozen=True)
class Route:
    department_code: str
    assignee_id: int | None
    assignee_name: str | None
    reason: str  # personal_manager|least_loaded|queue


async def route_ticket(ctx: AppContext, uow: UnitOfWork, depts: Departments, topic: str,
                       client: ClientProfile | None, *, prefer_manager: bool = False) -> Route:
    config = ctx.config
    department_code = config.topics[topic].department
    if client is not None and client.manager_id is not None and (
        prefer_manager or is_account_management(config, topic, client)
    ):
        manager = await uow.staff.get(client.manager_id)
        if manager is not None and manager.is_active and manager.on_duty:
            # The ticket follows the manager into their department: their supervisor and calendar apply.
            code = depts.by_id.get(manager.department_id, department_code)
            return Route(code, manager.id, manager.name, "personal_manager")
    return await least_loaded(ctx, uow, depts, department_code)


async def least_loaded(ctx: AppContext, uow: UnitOfWork, depts: Departments, department_code: str,
                       *, exclude: int | None = None) -> Route:
    """The on-duty agent or manager with the fewest open tickets, under the department's per-agent cap."""
    cap = ctx.config.department(department_code).max_open_per_agent
    candidates = [
        c for c in await uow.tickets.on_duty_candidates(depts.id(department_code))
        if c[2] < cap and c[0] != exclude
    ]
    if not candidates:
        return Route(department_code, None, None, "queue")
    staff_id, name, _load = min(candidates, key=lambda c: (c[2], c[0]))
    return Route(department_code, staff_id, name, "least_loaded")
